"""executor="dask" as a DAG file and the config say it, checked without a cluster: the
task settings and their errors, `[executors.dask]` from the file and the environment,
and the scheduler holding Dask tasks back, queued, while the cluster cannot be reached."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dagd import DAG, PythonTask, task
from dagd.config import Settings, load_settings
from dagd.config_dask import security_args
from dagd.errors import ConfigError, DagDefinitionError
from dagd.kinds.http import HttpTask
from dagd.kinds.shell import ShellTask
from dagd.scheduler.model import TI, ActiveRun
from dagd.scheduler.planner import Graph
from dagd.scheduler.runs import Runs
from dagd.states import TaskState


def noop() -> None:
    return None


def test_executor_and_resources_per_task_default_args_and_dag() -> None:
    with DAG("ml", executor="dask", default_args={"retries": 1}) as dag:
        train = PythonTask(task_id="train", python_callable=noop,
                           resources={"GPU": 1, "memory": "8GB"})
        report = PythonTask(task_id="report", python_callable=noop, executor="local")
        shell = ShellTask(task_id="fit", command="python fit.py")
    assert (train.executor, train.resources) == ("dask", {"GPU": 1.0, "memory": 8e9})
    assert (report.executor, report.resources) == ("local", {})
    assert shell.executor == "dask"
    assert train.describe()["executor"] == "dask"
    assert "executor" not in report.describe()
    assert dag.tasks_on_dask
    with DAG("etl", default_args={"executor": "dask"}) as etl:
        PythonTask(task_id="step", python_callable=noop)
    assert etl.tasks["step"].executor == "dask"


@pytest.mark.parametrize(("options", "field", "says"), [
    ({"executor": "spark"}, "executor", "must be 'local' or 'dask'"),
    ({"executor": "dask", "resources": {"GPU": 0}}, "resources", "more than 0"),
    ({"executor": "dask", "resources": {"GPU": "lots"}}, "resources", "number of bytes"),
    ({"executor": "dask", "resources": ["GPU"]}, "resources", "must be a dict"),
    ({"resources": {"GPU": 1}}, "resources", "set executor=\"dask\" too"),
    ({"executor": "dask", "isolation": "thread"}, "isolation", "drop isolation"),
])
def test_a_bad_setting_names_the_task_and_the_field(options: dict[str, Any], field: str,
                                                     says: str) -> None:
    with pytest.raises(DagDefinitionError) as caught, DAG("bad"):
        @task(**options)
        def step() -> None:
            return None

        step()
    assert caught.value.field == field and caught.value.task_id == "step"
    assert says in caught.value.message


def test_a_kind_that_needs_the_daemon_stays_local() -> None:
    with pytest.raises(DagDefinitionError) as caught, DAG("calls"):
        HttpTask(task_id="call", url="https://example.com", executor="dask")
    assert "runs in the daemon" in caught.value.message


def test_without_distributed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else found(name, *a))
    with pytest.raises(DagDefinitionError) as caught, DAG("nodask"):
        PythonTask(task_id="t", python_callable=noop, executor="dask")
    assert "pip install 'dagd[dask]'" in caught.value.message


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dagd.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_executors_dask_table_and_its_variables(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        [executors.dask]
        address = "tls://scheduler:8786"
        ca_file = "/etc/dask/ca.pem"
        cert = "/etc/dask/dagd.pem"
        key = "/etc/dask/dagd.key"
        """)
    settings = load_settings(path, environ={})
    assert settings.dask_address == "tls://scheduler:8786"
    assert settings.sources["dask_address"] == f"{path}:2"
    assert security_args(settings) == {
        "tls_ca_file": "/etc/dask/ca.pem", "require_encryption": True,
        "tls_client_cert": "/etc/dask/dagd.pem", "tls_client_key": "/etc/dask/dagd.key"}
    local = load_settings(None, environ={"DAGD_EXECUTORS__DASK__ADDRESS": "local",
                                         "DAGD_EXECUTORS__DASK__N_WORKERS": "3",
                                         "DAGD_EXECUTORS__DASK__MEMORY_LIMIT": "2GiB"})
    assert (local.dask_address, local.dask_n_workers, local.dask_memory_limit) == (
        "local", 3, 2 * 1024**3)
    assert local.sources["dask_address"] == "environment DAGD_EXECUTORS__DASK__ADDRESS"
    assert security_args(local) == {}


@pytest.mark.parametrize(("text", "key", "says"), [
    ('address = "scheduler:8786"', "executors.dask.address", "tcp://scheduler:8786"),
    ('address = "tls://s:8786"', "executors.dask.address", "set executors.dask.ca_file"),
    ('address = "tcp://s:8786"\nca_file = "ca.pem"', "executors.dask.ca_file",
     "the address is not one"),
    ('address = "tls://s:8786"\nca_file = "ca.pem"\ncert = "c.pem"',
     "executors.dask.cert", "set both or neither"),
    ('address = "local"\nthreads_per_worker = 0', "executors.dask.threads_per_worker",
     "at least 1"),
    ('adress = "local"', "executors.dask.adress", "unknown key"),
])
def test_a_bad_dask_key_is_named_with_its_line(tmp_path: Path, text: str, key: str,
                                               says: str) -> None:
    path = write(tmp_path, "[executors.dask]\n" + text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.field == key and says in caught.value.message
    assert caught.value.file == str(path)


def test_dask_tasks_wait_queued_while_the_cluster_cannot_be_reached(tmp_path: Path) -> None:
    with DAG("mixed") as dag:
        PythonTask(task_id="here", python_callable=noop)
        PythonTask(task_id="there", python_callable=noop, executor="dask")
    dag.validate()
    runs = Runs(Settings(data_dir=tmp_path), rand=lambda: 0.5, clock=lambda: 0.0,
                wake=lambda: None)
    runs.dags = {"mixed": dag}
    run = ActiveRun(1, dag, Graph.from_dag(dag), {}, None)
    runs.adopt(run)
    here = TI(1, 1, "here", TaskState.QUEUED, 0, 1)
    there = TI(2, 1, "there", TaskState.QUEUED, 0, 1)
    runs.ready["mixed"].extend([there, here])
    runs.park_dask(True)
    assert list(runs.ready["mixed"]) == [here] and runs.parked == [there]
    runs.park_dask(True)  # again, as each tick does while it lasts: nothing changes
    assert list(runs.ready["mixed"]) == [here] and runs.parked == [there]
    runs.park_dask(False)
    assert list(runs.ready["mixed"]) == [there, here] and runs.parked == []


def test_a_dag_default_of_thread_isolation_means_a_process_on_dask() -> None:
    with DAG("io", default_args={"isolation": "thread"}):
        fit = PythonTask(task_id="fit", python_callable=noop, executor="dask")
        here = PythonTask(task_id="here", python_callable=noop)
    assert fit.executor == "dask" and here.isolation == "thread"
