"""DAG files checked without a daemon: `dagd dags list/errors/show` load the folder
themselves when no daemon runs, and `dagd dags check` finds what the daemon would record."""

from __future__ import annotations

import re
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import CliResult, Dagd, table_rows

pytestmark = pytest.mark.slow

NOTE = "no daemon running: loaded"

GOOD = """
    from dagd import DAG, PythonTask


    async def noop():
        return None


    with DAG("good", description="two steps"):
        PythonTask(task_id="one", python_callable=noop) >> PythonTask(
            task_id="two", python_callable=noop
        )
"""

GOOD_THREE = """
    from dagd import DAG, PythonTask


    async def noop():
        return None


    with DAG("good", description="three steps"):
        one = PythonTask(task_id="one", python_callable=noop)
        two = PythonTask(task_id="two", python_callable=noop)
        three = PythonTask(task_id="three", python_callable=noop)
        one >> two >> three
"""

LATER = """
    from dagd import DAG, PythonTask


    async def noop():
        return None


    with DAG("later"):
        PythonTask(task_id="only", python_callable=noop)
"""

MISSING_IMPORT = """
    from dagd import DAG
    import no_such_module_here

    with DAG("missing"):
        pass
"""

# One file per way a DAG file goes wrong; each error's line is the one marked.
BROKEN = {
    "cycle.py": """
        from dagd import DAG, PythonTask


        async def noop():
            return None


        with DAG("cyclic"):
            a = PythonTask(task_id="a", python_callable=noop)
            b = PythonTask(task_id="b", python_callable=noop)
            a >> b
            b >> a
    """,
    "syntax.py": """
        from dagd import DAG

        with DAG("broken")
            pass
    """,
    "missing.py": MISSING_IMPORT,
    "dup_task.py": """
        from dagd import DAG, PythonTask


        async def noop():
            return None


        with DAG("dup_task"):
            PythonTask(task_id="same", python_callable=noop)
            PythonTask(task_id="same", python_callable=noop)
    """,
    # The same DAG id as good.py: a folder-wide error, after good.py in file order.
    "good_again.py": """
        from dagd import DAG

        with DAG("good"):
            pass
    """,
}

ERROR_LINE = re.compile(r"^(?P<file>\S.*?):(?:(?P<line>\d+):)? error: (?P<message>.*)$")
DAG_LINE = re.compile(r"^(?P<file>\S.*?):(?P<line>\d+): ok: DAG '(?P<dag>[^']+)', "
                      r"(?P<tasks>\d+) tasks?$")


def checked(result: CliResult, cwd: Path) -> tuple[dict[str, int], set[tuple[str, int | None,
                                                                              str]]]:
    """`dags check` output as ({dag: task count}, {(absolute file, line, message)})."""
    dags: dict[str, int] = {}
    errors: set[tuple[str, int | None, str]] = set()
    for text in result.stdout.splitlines():
        if m := DAG_LINE.match(text):
            dags[m["dag"]] = int(m["tasks"])
        elif m := ERROR_LINE.match(text):
            file = str((cwd / m["file"]).resolve())
            errors.add((file, int(m["line"]) if m["line"] else None, m["message"]))
    return dags, errors


def test_dags_list_errors_and_show_load_the_folder_when_no_database_exists(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("good.py", GOOD)
    write_dag("missing.py", MISSING_IMPORT)

    listing = dagd.cli("dags", "list")
    assert listing.code == 0, listing
    assert [row[:4] for row in table_rows(listing.stdout)] == [["good", "2", "", ""]]
    assert f"{NOTE} {dagd.dags_folder} directly" in listing.stderr, listing
    assert "1 file(s) failed to import" in listing.stderr, listing

    errors = dagd.cli("dags", "errors")
    assert errors.code == 1, errors
    assert f"{dagd.dags_folder / 'missing.py'}:3" in errors.stdout, errors
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in errors.stdout
    assert NOTE in errors.stderr, errors
    traced = dagd.cli("dags", "errors", "--traceback")
    assert "Traceback (most recent call last)" in traced.stdout, traced

    show = dagd.cli("dags", "show", "good")
    assert show.code == 0, show
    assert [row[:3] for row in table_rows(show.stdout)] == [
        ["one", "python", ""], ["two", "python", "one"]
    ]
    assert "good: two steps" in show.stdout
    assert NOTE in show.stderr, show

    nope = dagd.cli("dags", "show", "nope")
    assert nope.code == 1, nope
    assert nope.stdout == ""
    assert "'nope'" in nope.stderr and "no such DAG" in nope.stderr, nope
    assert "1 file(s) failed to import" in nope.stderr, nope

    assert not dagd.data_dir.exists(), "a command that only reads created the data directory"


def test_with_a_stale_database_the_folder_is_the_truth_and_the_database_adds_runs(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("good.py", GOOD)
    write_dag("missing.py", MISSING_IMPORT)
    daemon = dagd.start()
    status, body = daemon.request("POST", "/api/v1/dags/good/runs", {})
    assert status == 201, body
    dagd.wait_runs({body["run_id"]: "success"}, timeout=20)
    assert dagd.cli("dags", "pause", "good").code == 0

    # With the daemon running, the commands answer from it and say nothing of loading.
    live = dagd.cli("dags", "list")
    assert live.code == 0, live
    assert [row[:4] for row in table_rows(live.stdout)] == [["good", "2", "yes", "1 success"]]
    assert NOTE not in live.output, live
    assert dagd.cli("dags", "errors").code == 1

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0
    # Edited while no daemon runs: the database still describes the old folder.
    write_dag("good.py", GOOD_THREE)
    write_dag("later.py", LATER)
    (dagd.dags_folder / "missing.py").unlink()

    listing = dagd.cli("dags", "list")
    assert listing.code == 0, listing
    assert [row[:4] for row in table_rows(listing.stdout)] == [
        ["good", "3", "yes", "1 success"], ["later", "1", "", ""]
    ]
    assert NOTE in listing.stderr, listing
    assert "failed to import" not in listing.output

    errors = dagd.cli("dags", "errors")
    assert (errors.code, errors.stdout.strip()) == (0, "no import errors"), errors

    show = dagd.cli("dags", "show", "good")
    assert show.code == 0, show
    assert [row[0] for row in table_rows(show.stdout)] == ["one", "two", "three"]
    assert "paused: yes" in show.stdout, show


def test_dags_check_finds_what_the_daemon_records(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    write_dag("good.py", GOOD)
    for name, source in BROKEN.items():
        write_dag(name, source)
    plugins = tmp_path / "plugins"  # the default plugins folder, from the cwd
    plugins.mkdir()
    (plugins / "broken_plugin.py").write_text(textwrap.dedent("""
        import os

        raise RuntimeError("this plugin is broken")
    """))

    check = dagd.cli("dags", "check")
    assert check.code == 1, check
    dags, found = checked(check, dagd.root)
    assert dags == {"good": 2}, check
    assert len(found) == len(BROKEN) + 1, check
    assert re.search(r"1 DAG, 6 errors\b", check.stdout), check
    assert not dagd.data_dir.exists(), "dags check touched the data directory"

    dagd.start()
    recorded = dagd.query("SELECT file, line, message FROM import_error")
    assert len(recorded) == len(found), recorded
    # The check does not repeat a location its line already starts with.
    expected = {
        (file, line, message.removeprefix(f"{file}:{line}, ")) for file, line, message in recorded
    }
    assert found == expected, f"dags check:\n{check.stdout}\nthe daemon recorded:\n{recorded}"
    by_file = {Path(file).name: line for file, line, _ in found}
    assert by_file == {"cycle.py": 9, "syntax.py": 4, "missing.py": 3, "dup_task.py": 11,
                       "good_again.py": 4, "broken_plugin.py": 4}


def test_dags_check_of_some_paths_and_of_a_clean_folder(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    good = write_dag("good.py", GOOD)
    nested = dagd.dags_folder / "team"
    nested.mkdir()
    (nested / "later.py").write_text(textwrap.dedent(LATER))

    clean = dagd.cli("dags", "check")
    assert clean.code == 0, clean
    assert checked(clean, dagd.root) == ({"good": 2, "later": 1}, set()), clean
    assert "2 DAGs, no errors" in clean.stdout, clean

    write_dag("missing.py", MISSING_IMPORT)
    one = dagd.cli("dags", "check", str(good))
    assert one.code == 0, one
    assert checked(one, dagd.root) == ({"good": 2}, set()), one

    folder = dagd.cli("dags", "check", str(nested), "dags/missing.py")
    assert folder.code == 1, folder
    dags, errors = checked(folder, dagd.root)
    assert dags == {"later": 1}, folder
    assert {(Path(f).name, line) for f, line, _ in errors} == {("missing.py", 3)}, folder

    absent = dagd.cli("dags", "check", "dags/nope.py")
    assert absent.code == 1, absent
    assert "dags/nope.py: error: no such file or folder" in absent.stdout, absent
    assert not dagd.data_dir.exists()


def test_a_shadowed_helper_is_a_warning_that_does_not_fail_the_check(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("good.py", GOOD)
    (dagd.dags_folder / "json.py").write_text("VALUE = 1\n")  # hidden by the stdlib's json
    result = dagd.cli("dags", "check")
    assert result.code == 0, result
    [line] = [row for row in result.stdout.splitlines() if "json.py" in row]
    assert re.match(r"^\S*json\.py: warning: json\.py has the name of the standard library "
                    r"module 'json'", line), line
    assert "1 DAG, no errors, 1 warning" in result.stdout, result
