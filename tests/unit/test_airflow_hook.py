"""The `airflow` import hook: Airflow 2 and 3 import paths load while dagd imports a DAG
file and nowhere else; a name outside the subset fails at load with the file, the line,
the Airflow name and what dagd offers instead; a real `airflow` package wins."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

from dagd.authoring.loader import load_file, load_folder
from dagd.compat import hook
from dagd.compat.airflow.names import MODULES

WriteDag = Callable[[str, str], Path]

EVERY_PATH = """\
import airflow
from airflow import DAG
from airflow.models import DAG as ModelsDAG, BaseOperator, Param
from airflow.models.dag import DAG as DAG2
from airflow.models.baseoperator import BaseOperator as BO, chain, cross_downstream
from airflow.models.param import Param as P
from airflow.models.xcom_arg import XComArg
from airflow.decorators import dag, task, task_group, setup, teardown
from airflow.operators.bash import BashOperator
from airflow.operators.bash_operator import BashOperator as OldBash
from airflow.operators.python import PythonOperator, BranchPythonOperator, ShortCircuitOperator
from airflow.operators.python_operator import PythonOperator as OldPython
from airflow.operators.empty import EmptyOperator
from airflow.operators.dummy import DummyOperator
from airflow.operators.dummy_operator import DummyOperator as OldDummy
from airflow.operators.latest_only import LatestOnlyOperator
from airflow.utils.dates import days_ago
from airflow.utils.trigger_rule import TriggerRule
from airflow.utils.task_group import TaskGroup
from airflow.utils.edgemodifier import Label
from airflow.utils import timezone
from airflow.exceptions import AirflowException, AirflowSkipException, AirflowFailException
from airflow.sdk import (DAG as DAG3, dag as dag3, task as task3, task_group as tg3, chain as c3,
    cross_downstream as cd3, Label as L3, TaskGroup as TG3, BaseOperator as BO3, Param as P3,
    get_current_context, setup as s3, teardown as t3, TriggerRule as TR3)
from airflow.providers.standard.operators.bash import BashOperator as StdBash
from airflow.providers.standard.operators.python import PythonOperator as StdPython
from airflow.providers.standard.operators.empty import EmptyOperator as StdEmpty
from airflow.providers.standard.operators.latest_only import LatestOnlyOperator as StdLatest
import airflow.operators.bash as bash_module

assert DAG is ModelsDAG is DAG2 and DAG3 is not DAG and issubclass(DAG3, DAG)
assert OldBash is BashOperator is StdBash is bash_module.BashOperator
assert DummyOperator is EmptyOperator is OldDummy is StdEmpty
assert BO is BaseOperator is BO3 and P is Param is P3 and TG3 is TaskGroup
assert timezone.datetime(2024, 1, 1).tzinfo is not None

with DAG("every_path", schedule=None, start_date=days_ago(1)) as d:
    EmptyOperator(task_id="a") >> BashOperator(task_id="b", bash_command="true")
"""


def test_every_import_path_of_the_subset_loads(write_dag: WriteDag) -> None:
    path = write_dag("every_path.py", EVERY_PATH)
    dags, failure = load_file(path)
    assert failure is None, failure.message
    assert [d.dag_id for d in dags] == ["every_path"]
    assert sorted(dags[0].tasks) == ["a", "b"]


def test_every_mapped_name_resolves() -> None:
    with hook.airflow_imports() as on:
        assert on
        for module, names in MODULES.items():
            served = importlib.import_module(module)
            for name, target in names.items():
                if not target.startswith("unsupported:"):
                    assert getattr(served, name) is not None, f"{module}.{name}"


def test_airflow_is_gone_once_the_file_is_loaded(write_dag: WriteDag) -> None:
    load_file(write_dag("every_path.py", EVERY_PATH))
    assert not [m for m in sys.modules if m == "airflow" or m.startswith("airflow.")]
    assert hook._FINDER not in sys.meta_path
    assert importlib.util.find_spec("airflow") is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("airflow")


def _failure_of(write_dag: WriteDag, source: str) -> tuple[int | None, str]:
    path = write_dag("bad.py", source)
    dags, failure = load_file(path)
    assert failure is not None and not dags
    assert failure.file == str(path.resolve())
    return failure.line, failure.message


def test_an_unsupported_name_names_file_line_name_and_what_instead(write_dag: WriteDag) -> None:
    line, message = _failure_of(write_dag, (
        "from airflow import DAG\n"
        "\n"
        "from airflow.operators.python import PythonVirtualenvOperator\n"))
    assert line == 3
    assert "airflow.operators.python.PythonVirtualenvOperator is not supported" in message
    assert "instead: a PythonOperator" in message
    assert message.startswith(f"{write_dag('x.py', '').parent.resolve() / 'bad.py'}:3")


def test_an_unknown_provider_module_fails_where_its_name_is_used(write_dag: WriteDag) -> None:
    line, message = _failure_of(write_dag, (
        "import pendulum\n"
        "from airflow.providers.postgres.operators.postgres import PostgresOperator\n"))
    assert line == 2
    assert "airflow.providers.postgres.operators.postgres.PostgresOperator" in message
    assert "SqlTask" in message


def test_a_sensor_module_attribute_fails_at_its_line(write_dag: WriteDag) -> None:
    line, message = _failure_of(write_dag, (
        "import airflow.sensors.filesystem as fs\n"
        "x = 1\n"
        "sensor = fs.FileSensor\n"))
    assert line == 3
    assert "airflow.sensors.filesystem.FileSensor" in message
    assert "FileDrop" in message


def test_variables_and_timetables_are_refused_with_a_hint(write_dag: WriteDag) -> None:
    _, message = _failure_of(write_dag, "from airflow.models import Variable\n")
    assert "airflow.models.Variable" in message and "params=" in message
    _, message = _failure_of(write_dag, (
        "from airflow.sdk import DAG\n"
        "DAG('t', timetable=object())\n"))
    assert "timetable" in message


def test_a_dag_file_may_catch_the_refusal_as_an_import_error(write_dag: WriteDag) -> None:
    dags, failure = load_file(write_dag("fallback.py", """\
        try:
            from airflow.providers.http.operators.http import HttpOperator
        except ImportError:
            HttpOperator = None
        from airflow.sdk import DAG
        from airflow.providers.standard.operators.empty import EmptyOperator

        with DAG("fallback"):
            EmptyOperator(task_id="a")
        """))
    assert failure is None, failure.message
    assert dags[0].dag_id == "fallback"


def test_dags_errors_lists_every_refused_file(write_dag: WriteDag, dags_folder: Path) -> None:
    write_dag("one.py", "from airflow.sensors.base import BaseSensorOperator\n")
    write_dag("two.py", "from airflow.models import Variable\n")
    write_dag("fine.py", (
        "from airflow.sdk import DAG\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('fine'):\n"
        "    EmptyOperator(task_id='a')\n"))
    bag = load_folder(dags_folder)
    assert list(bag.dags) == ["fine"]
    failed = {Path(e.file).name: (e.line, e.message) for e in bag.errors}
    assert set(failed) == {"one.py", "two.py"}
    assert all(line == 1 and "not supported by dagd" in m for line, m in failed.values())


def test_a_real_airflow_on_the_path_wins(write_dag: WriteDag, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    stub = tmp_path / "site" / "airflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(stub.parent))
    dags, failure = load_file(write_dag("real.py", """\
        import airflow
        from dagd import DAG, task

        assert airflow.REAL
        with DAG("real"):
            @task
            def a():
                return 1
            a()
        """))
    assert failure is None, failure.message
    assert dags[0].dag_id == "real"
    with hook.airflow_imports() as on:
        assert not on
    sys.modules.pop("airflow", None)


def test_the_stub_without_dagd_names_fails_as_the_real_one_would(
        write_dag: WriteDag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = tmp_path / "site" / "airflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(stub.parent))
    _, failure = load_file(write_dag("needs_sdk.py", "from airflow.sdk import DAG\n"))
    sys.modules.pop("airflow", None)
    assert failure is not None and "ModuleNotFoundError" in failure.message


def test_nothing_named_airflow_is_installed() -> None:
    for key in ("purelib", "platlib"):
        folder = Path(sysconfig.get_paths()[key])
        assert not list(folder.glob("airflow*")), folder
    assert importlib.util.find_spec("airflow") is None


def test_a_fresh_interpreter_without_dagd_loading_has_no_airflow() -> None:
    code = "import dagd, dagd.authoring.loader, importlib.util; " \
           "print(importlib.util.find_spec('airflow'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "None"


def test_the_real_airflow_check_follows_sys_path(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert not hook.real_airflow()
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert hook.real_airflow()
    monkeypatch.undo()
    assert not hook.real_airflow()
