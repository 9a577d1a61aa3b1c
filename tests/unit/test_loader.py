"""The DAG-file loader: good files load, each bad file becomes one clear ImportFailure."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from dagd import DAG
from dagd.authoring.loader import ImportFailure, load_file, load_folder

WriteDag = Callable[[str, str], Path]

GOOD = """\
from dagd import DAG, PythonTask

with DAG("good") as d:
    a = PythonTask(task_id="a", python_callable=print)
    b = PythonTask(task_id="b", python_callable=print)
    a >> b
"""

SYNTAX_ERROR = """\
from dagd import DAG

with DAG("broken") as d
    pass
"""

RAISES = """\
from dagd import DAG

settings = {}
with DAG("raises") as d:
    value = settings["missing"]
"""

CYCLIC = """\
from dagd import DAG, PythonTask

with DAG("cyclic") as d:
    a = PythonTask(task_id="a", python_callable=print)
    b = PythonTask(task_id="b", python_callable=print)
    a >> b >> a
"""

REDEFINES = """\
from dagd import DAG

other = DAG("other")
again = DAG("good")
"""


def failure_for(errors: list[ImportFailure], path: Path) -> ImportFailure:
    matches = [e for e in errors if e.file == str(path.resolve())]
    assert len(matches) == 1, f"expected one failure for {path.name}, got {errors}"
    return matches[0]


def test_good_dags_load_next_to_every_kind_of_broken_file(
    dags_folder: Path, write_dag: WriteDag
) -> None:
    syntax = write_dag("a_syntax.py", SYNTAX_ERROR)
    raises = write_dag("b_raises.py", RAISES)
    cyclic = write_dag("c_cyclic.py", CYCLIC)
    good = write_dag("d_good.py", GOOD)
    redefines = write_dag("e_redefines.py", REDEFINES)

    bag = load_folder(dags_folder)

    assert sorted(bag.dags) == ["good", "other"]
    assert bag.dags["good"].fileloc == str(good.resolve())
    assert bag.dags["good"].validate() == ["a", "b"]
    assert bag.files[str(good.resolve())] == ["good"]
    assert bag.files[str(redefines.resolve())] == ["other"]
    assert len(bag.errors) == 4

    failure = failure_for(bag.errors, syntax)
    assert failure.line == 3
    assert failure.message.startswith("SyntaxError: expected ':'")
    assert "SyntaxError" in failure.traceback

    failure = failure_for(bag.errors, raises)
    assert failure.line == 5
    assert failure.message == "KeyError: 'missing'"
    assert 'settings["missing"]' in failure.traceback

    failure = failure_for(bag.errors, cyclic)
    assert failure.line == 3  # where the DAG is defined
    assert "DAG 'cyclic'" in failure.message
    assert "cycle in dependencies: a -> b -> a" in failure.message

    failure = failure_for(bag.errors, redefines)
    assert failure.line == 4
    assert failure.message == f"DAG id 'good' is already defined in {good.resolve()}"


def test_failed_files_are_not_listed_as_loaded(dags_folder: Path, write_dag: WriteDag) -> None:
    raises = write_dag("raises.py", RAISES)
    bag = load_folder(dags_folder)
    assert bag.dags == {}
    assert str(raises.resolve()) not in bag.files


def test_a_task_setting_error_points_at_the_task_line(
    dags_folder: Path, write_dag: WriteDag
) -> None:
    path = write_dag(
        "rules.py",
        """\
        from dagd import DAG, PythonTask

        with DAG("ruled") as d:
            ok = PythonTask(task_id="ok", python_callable=print)
            bad = PythonTask(task_id="bad", python_callable=print, trigger_rule="bogus")
        """,
    )
    (failure,) = load_folder(dags_folder).errors
    assert failure.file == str(path.resolve())
    assert failure.line == 5
    assert "DAG 'ruled', task 'bad', field 'trigger_rule'" in failure.message
    assert "unknown trigger rule 'bogus'" in failure.message


def test_a_self_dependency_points_at_its_line(dags_folder: Path, write_dag: WriteDag) -> None:
    write_dag(
        "selfish.py",
        """\
        from dagd import DAG, PythonTask

        with DAG("selfish") as d:
            a = PythonTask(task_id="a", python_callable=print)

            a >> a
        """,
    )
    (failure,) = load_folder(dags_folder).errors
    assert failure.line == 6
    assert "DAG 'selfish', task 'a'" in failure.message
    assert "cannot depend on itself" in failure.message


def test_exit_in_a_dag_file_is_only_a_failure(dags_folder: Path, write_dag: WriteDag) -> None:
    write_dag("exits.py", "import sys\n\nsys.exit(3)\n")
    write_dag("good.py", GOOD)
    bag = load_folder(dags_folder)
    assert list(bag.dags) == ["good"]
    (failure,) = bag.errors
    assert failure.line == 3
    assert failure.message == "SystemExit: 3"


def test_a_file_failing_inside_a_dag_block_does_not_leak_into_the_next(
    dags_folder: Path, write_dag: WriteDag
) -> None:
    write_dag("a_raises.py", RAISES)
    orphan = write_dag(
        "b_orphan.py",
        """\
        from dagd import PythonTask

        t = PythonTask(task_id="t", python_callable=print)
        """,
    )
    bag = load_folder(dags_folder)
    failure = failure_for(bag.errors, orphan)
    assert failure.line == 3
    assert "created outside a DAG" in failure.message


def test_underscore_and_hidden_files_and_folders_are_skipped(
    dags_folder: Path, write_dag: WriteDag
) -> None:
    write_dag("_broken_helper.py", SYNTAX_ERROR)
    (dags_folder / "_private").mkdir()
    write_dag("_private/cyclic.py", CYCLIC)
    (dags_folder / ".cache").mkdir()
    write_dag(".cache/raises.py", RAISES)
    write_dag("notes.txt", SYNTAX_ERROR)
    (dags_folder / "team").mkdir()
    nested = write_dag("team/good.py", GOOD)
    bag = load_folder(dags_folder)
    assert bag.errors == []
    assert list(bag.dags) == ["good"]
    assert list(bag.files) == [str(nested.resolve())]


def test_a_dag_file_can_import_a_helper_module_next_to_it(
    dags_folder: Path, write_dag: WriteDag
) -> None:
    write_dag("_dagd_loader_test_helpers.py", "DEFAULTS = {'retries': 4}\n")
    write_dag(
        "uses_helper.py",
        """\
        from _dagd_loader_test_helpers import DEFAULTS
        from dagd import DAG, PythonTask

        with DAG("helped", default_args=DEFAULTS) as d:
            PythonTask(task_id="t", python_callable=print)
        """,
    )
    bag = load_folder(dags_folder)
    assert bag.errors == []
    assert bag.dags["helped"].tasks["t"].retry_policy.retries == 4


def test_load_file_returns_every_dag_of_a_file(write_dag: WriteDag) -> None:
    path = write_dag(
        "two.py",
        """\
        from dagd import DAG, dag, task

        with DAG("first") as first:
            @task
            def step():
                return 1
            step()

        @dag
        def second():
            step()

        second()
        """,
    )
    dags, failure = load_file(path)
    assert failure is None
    assert [d.dag_id for d in dags] == ["first", "second"]
    assert all(isinstance(d, DAG) for d in dags)
    assert [d.fileloc for d in dags] == [str(path.resolve())] * 2
    assert (dags[0].lineno, dags[1].lineno) == (3, 13)  # `with DAG`, `second()`


def test_load_file_reports_the_failure(write_dag: WriteDag) -> None:
    path = write_dag("raises.py", RAISES)
    dags, failure = load_file(path)
    assert dags == []
    assert failure is not None
    assert (failure.file, failure.line, failure.message) == (
        str(path.resolve()),
        5,
        "KeyError: 'missing'",
    )


def test_a_missing_folder_is_one_failure(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    bag = load_folder(missing)
    assert bag.dags == {}
    assert bag.errors == [ImportFailure(str(missing), None, "DAGs folder does not exist", "")]


def test_reloading_a_changed_file_sees_the_change(dags_folder: Path, write_dag: WriteDag) -> None:
    write_dag("etl.py", GOOD)
    assert sorted(load_folder(dags_folder).dags["good"].tasks) == ["a", "b"]
    write_dag("etl.py", GOOD.replace('task_id="b"', 'task_id="c"'))
    assert sorted(load_folder(dags_folder).dags["good"].tasks) == ["a", "c"]


def test_a_dag_file_named_like_a_standard_module_shadows_nothing(
    dags_folder: Path, write_dag: WriteDag
) -> None:
    import email.message

    write_dag("email.py", GOOD)
    bag = load_folder(dags_folder)
    assert bag.errors == []  # a DAG file: imported by dagd under its own name
    assert list(bag.dags) == ["good"]
    # The folder is on sys.path after the standard library and site-packages.
    folder = str(dags_folder.resolve())
    stdlib = str(Path(email.message.__file__).parents[1])
    assert sys.path.index(folder) > sys.path.index(stdlib)
    assert importlib.util.find_spec("email") is not None
    assert importlib.util.find_spec("email").origin == str(  # type: ignore[union-attr]
        Path(stdlib) / "email" / "__init__.py"
    )


def test_a_helper_named_like_an_installed_module_is_reported_and_the_dags_load(
    dags_folder: Path, write_dag: WriteDag
) -> None:
    import json

    import orjson

    write_dag("json.py", "def parse(text):\n    return text.split(',')\n")
    (dags_folder / "orjson").mkdir()
    write_dag("orjson/__init__.py", "LOADS = None\n")
    write_dag("helpers_for_the_loader_test.py", "X = 1\n")  # no module of that name: fine
    write_dag(
        "uses_json.py",
        """\
        import json
        import helpers_for_the_loader_test
        from dagd import DAG, PythonTask

        with DAG("uses_json", params={"dumped": json.dumps([1])}) as d:
            PythonTask(task_id="t", python_callable=print)
        """,
    )
    bag = load_folder(dags_folder)
    assert list(bag.dags) == ["uses_json"]
    assert bag.dags["uses_json"].params == {"dumped": "[1]"}  # the standard json
    by_file = {Path(e.file).name: e for e in bag.errors}
    assert sorted(by_file) == ["json.py", "orjson"]
    warning = by_file["json.py"]
    assert warning.file == str((dags_folder / "json.py").resolve())
    assert warning.message == (
        f"warning: json.py has the name of the standard library module 'json' "
        f"({json.__file__}), which comes first: `import json` in a DAG file gets that "
        f"module, not this file; rename it"
    )
    assert (warning.line, warning.traceback) == (None, "")
    assert by_file["orjson"].message.startswith(
        f"warning: orjson has the name of the installed module 'orjson' ({orjson.__file__})"
    )
