"""The `dagd` command as a user types it: with and without a daemon, and when it refuses."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from acceptance.harness import (
    CliResult,
    Dagd,
    LineReader,
    process_gone,
    table_rows,
    wait_until,
)

pytestmark = pytest.mark.slow

# A sync task (in a worker process) that writes the run's conf where the test reads it.
CONF_DAG = """
    import json
    from pathlib import Path

    from dagd import DAG, PythonTask

    OUT = Path({out!r})


    def record(conf, run_id):
        OUT.joinpath(f"conf-{{run_id}}.json").write_text(json.dumps(conf))
        print(f"recorded conf {{json.dumps(conf, sort_keys=True)}} for run {{run_id}}")


    with DAG({dag_id!r}):
        PythonTask(task_id="record", python_callable=record)
"""

OTHER_DAG = """
    from dagd import DAG, PythonTask


    async def hello(run_id):
        print(f"hello from run {run_id}")


    with DAG("other"):
        PythonTask(task_id="hello", python_callable=hello)
"""

# Talks, then waits for the test to let it finish.
CHATTY_DAG = """
    import time
    from pathlib import Path

    from dagd import DAG, PythonTask

    RELEASE = Path({release!r})


    def talk():
        print("chatty: waiting for release", flush=True)
        deadline = time.monotonic() + 30
        while not RELEASE.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        print("chatty: released", flush=True)


    with DAG("chatty"):
        PythonTask(task_id="talk", python_callable=talk)
"""

TEST_DAGS = """
    from dagd import DAG, task


    @task
    def extract():
        print("extracting rows")
        return [1, 2, 3]


    @task
    async def total(rows):
        print(f"total is {sum(rows)}")


    @task
    def explode():
        print("about to fail: boom")
        raise ValueError("boom")


    with DAG("passing"):
        total(extract())

    with DAG("failing"):
        explode()
"""


def queued_run(result: CliResult, dag_id: str) -> int:
    assert result.code == 0, result
    match = re.search(rf"{dag_id}: run (\d+) queued", result.stdout)
    assert match, result
    return int(match.group(1))


def test_trigger_with_conf_list_logs_and_pause_through_the_daemon(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    write_dag("confdag.py", CONF_DAG.format(out=str(tmp_path), dag_id="confdag"))
    write_dag("other.py", OTHER_DAG)
    dagd.start()

    trig = dagd.cli("trigger", "confdag", "--conf", '{"k": 1}')
    run = queued_run(trig, "confdag")
    assert "no daemon" not in trig.stdout
    dagd.wait_runs({run: "success"}, timeout=20)
    assert json.loads((tmp_path / f"conf-{run}.json").read_text()) == {"k": 1}

    with ThreadPoolExecutor(max_workers=4) as pool:  # four independent reads at once
        runs, runs_of, tasks, logs = pool.map(
            lambda args: dagd.cli(*args),
            [("runs", "list"), ("runs", "list", "confdag"), ("tasks", "list", "confdag", str(run)),
             ("logs", "confdag", str(run), "record")],
        )
    for listing in (runs, runs_of):
        assert listing.code == 0, listing
        assert [row[:4] for row in table_rows(listing.stdout)] == [
            [str(run), "confdag", "success", "manual"]
        ]
    assert tasks.code == 0, tasks
    assert [row[:3] for row in table_rows(tasks.stdout)] == [["record", "success", "1/1"]]
    assert logs.code == 0, logs
    assert f'recorded conf {{"k": 1}} for run {run}' in logs.stdout

    pause = dagd.cli("dags", "pause", "confdag")
    assert (pause.code, pause.stdout.strip()) == (0, "confdag: paused"), pause
    held = queued_run(dagd.cli("trigger", "confdag"), "confdag")
    # Once a later run of another DAG has finished, the scheduler has had its chance.
    later = queued_run(dagd.cli("trigger", "other"), "other")
    dagd.wait_runs({later: "success"}, timeout=20)
    assert dagd.run_states()[held] == "queued"
    assert dagd.query("SELECT count(*) FROM task_instance WHERE run_id = ?", (held,)) == [(0,)]

    unpause = dagd.cli("dags", "unpause", "confdag")
    assert (unpause.code, unpause.stdout.strip()) == (0, "confdag: unpaused"), unpause
    dagd.wait_runs({held: "success"}, timeout=20)
    assert json.loads((tmp_path / f"conf-{held}.json").read_text()) == {}


def test_logs_follow_streams_until_the_task_ends(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    write_dag("chatty.py", CHATTY_DAG.format(release=str(release)))
    daemon = dagd.start()
    status, body = daemon.request("POST", "/api/v1/dags/chatty/runs", {})
    assert status == 201, body
    run = str(body["run_id"])
    dagd.wait(
        lambda: [a["state"] for a in dagd.attempts("chatty", "talk") if a["pid"]] == ["running"],
        timeout=20, what="talk running",
    )

    follow = dagd.popen_cli("logs", "chatty", run, "talk", "--follow")
    assert follow.stdout is not None
    out = LineReader(follow.stdout)
    dagd.wait(lambda: "chatty: waiting for release" in out.text(), timeout=15,
              what="the follower to print the first line")
    assert follow.poll() is None, "--follow ended while the task still runs"

    release.touch()
    assert follow.wait(timeout=15) == 0
    assert out.join(5).splitlines() == ["chatty: waiting for release", "chatty: released"]
    assert [a["state"] for a in dagd.attempts("chatty", "talk")] == ["success"]

    # Following an attempt that has ended prints it and returns, even with nothing left
    # to change in the data directory: no daemon.
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0
    again = dagd.cli("logs", "chatty", run, "talk", "--follow", timeout=15)
    assert again.code == 0, again
    assert again.stdout.splitlines() == ["chatty: waiting for release", "chatty: released"]


def test_trigger_without_a_daemon_is_run_when_the_daemon_starts(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    write_dag("offline.py", CONF_DAG.format(out=str(tmp_path), dag_id="offline"))
    trig = dagd.cli("trigger", "offline", "--conf", '{"x": 2}')
    run = queued_run(trig, "offline")
    assert "no daemon is running" in trig.stdout
    assert dagd.run_states() == {run: "queued"}
    runs = dagd.cli("runs", "list")
    assert [row[:3] for row in table_rows(runs.stdout)] == [[str(run), "offline", "queued"]]

    dagd.start()
    dagd.wait_runs({run: "success"}, timeout=20)
    assert json.loads((tmp_path / f"conf-{run}.json").read_text()) == {"x": 2}


def test_refusals_are_one_clear_line_without_a_traceback(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    write_dag("other.py", OTHER_DAG)
    daemon = dagd.start()
    empty = tmp_path / "empty-data-dir"
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[core]\nparalelism = 4\n")
    cases: list[tuple[tuple[str, ...], dict[str, Path], list[str]]] = [
        (("trigger", "nope"), {}, ["'nope'", "no such DAG"]),
        (("dags", "show", "nope"), {}, ["'nope'", "no such DAG"]),
        (("test", "nope"), {}, ["'nope'", "no such DAG"]),
        (("dags", "pause", "nope"), {}, ["'nope'", "no such DAG"]),
        (("trigger", "other", "--conf", "{k: 1}"), {}, ["--conf", "not valid JSON"]),
        (("trigger", "other", "--conf", "[1, 2]"), {}, ["--conf", "must be a JSON object"]),
        (("logs", "other", "999", "hello"), {}, ["no run 999"]),
        (("runs", "list"), {"data_dir": empty}, ["no database", str(empty)]),
        (("trigger", "nope"), {"data_dir": empty}, ["'nope'", "no such DAG"]),
        (("dags", "list"), {"config": bad_config}, [str(bad_config), "core.paralelism"]),
    ]
    # No COLUMNS: rich would wrap at 80 columns what must stay one line.
    env = {k: v for k, v in dagd.env().items() if k != "COLUMNS"}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: dagd.cli(*c[0], env=env, **c[1]), cases))

    problems: list[str] = []
    for (args, where, fragments), result in zip(cases, results, strict=True):
        lines = result.stderr.strip().splitlines()
        ok = (
            result.code == 1
            and result.stdout == ""
            and len(lines) == 1
            and lines[0].startswith("error: ")
            and all(f in lines[0] for f in fragments)
            and "Traceback" not in result.output
        )
        if not ok:
            problems.append(f"dagd {' '.join(args)} {where or ''}\n{result}")
    assert not problems, "\n\n".join(problems)
    assert not empty.exists(), "a refused command created the data directory"
    assert "Traceback" not in daemon.log()


def test_dagd_test_runs_a_dag_in_the_foreground_without_touching_the_data_dir(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("pipelines.py", TEST_DAGS)
    daemon = dagd.start()
    before = sorted(os.listdir(dagd.data_dir))

    passing = dagd.cli("test", "passing")
    assert passing.code == 0, passing
    assert "passing run 1: success" in passing.stdout

    failing = dagd.cli("test", "failing")
    assert failing.code == 1, failing
    assert "about to fail: boom" in failing.stdout
    assert "ValueError: boom" in failing.stdout
    assert "failing run 1: failed" in failing.stdout

    assert dagd.run_states() == {}
    assert dagd.query("SELECT count(*) FROM event") == [(0,)]
    assert sorted(os.listdir(dagd.data_dir)) == before
    assert not (dagd.data_dir / "logs").exists()
    assert daemon.healthy()


QUIET_DAG = """
    from dagd import DAG, PythonTask


    async def hush():
        return None


    with DAG("quiet"):
        PythonTask(task_id="hush", python_callable=hush)
"""


def test_logs_of_an_attempt_that_printed_nothing_say_so(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("quiet.py", QUIET_DAG)
    daemon = dagd.start()
    status, body = daemon.request("POST", "/api/v1/dags/quiet/runs", {})
    assert status == 201, body
    run = body["run_id"]
    dagd.wait_runs({run: "success"}, timeout=20)

    for args in ((), ("--follow",), ("--try", "1")):
        logs = dagd.cli("logs", "quiet", str(run), "hush", *args, timeout=15)
        assert logs.code == 0, logs
        # The log itself stays byte for byte what the task printed: nothing.
        assert logs.stdout == "", logs
        assert logs.stderr.strip() == "(no output; try 1 success)", logs


# A DAG and a task whose ids are long, as real ones are.
LONG_IDS_DAG = """
    from dagd import DAG, PythonTask


    async def step():
        return None


    with DAG("nightly_warehouse_refresh"):
        PythonTask(task_id="extract_orders_from_the_crm", python_callable=step) >> PythonTask(
            task_id="load_orders_into_the_warehouse", python_callable=step
        )
"""

SHORT_TIME = re.compile(r"^(\d\d:\d\d:\d\d|\d\d-\d\d \d\d:\d\d)$")


def _header(text: str) -> list[str]:
    """The column names of the first rich table in `text` (a one-line header)."""
    for line in text.splitlines():
        if line.startswith("┃"):
            return [cell.strip() for cell in line.split("┃")[1:-1]]
    raise AssertionError(f"no table header in:\n{text}")


def test_runs_and_tasks_fit_an_80_column_terminal_with_ids_whole(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("long_ids.py", LONG_IDS_DAG)
    daemon = dagd.start()
    runs = []
    for _ in range(2):
        status, body = daemon.request("POST", "/api/v1/dags/nightly_warehouse_refresh/runs", {})
        assert status == 201, body
        runs.append(body["run_id"])
    dagd.wait_runs({run: "success" for run in runs}, timeout=30)
    env = {**dagd.env(), "COLUMNS": "80"}

    listing = dagd.cli("runs", "list", env=env)
    assert listing.code == 0, listing
    assert "…" not in listing.stdout, listing
    assert max(len(line) for line in listing.stdout.splitlines()) <= 80, listing
    columns = _header(listing.stdout)
    assert columns[:3] == ["run", "dag", "state"], listing
    assert {"started", "duration"} <= set(columns), listing
    rows = table_rows(listing.stdout)
    assert [row[:3] for row in rows] == [
        [str(run), "nightly_warehouse_refresh", "success"] for run in reversed(runs)
    ], listing
    for row in rows:
        assert SHORT_TIME.match(row[columns.index("started")]), listing

    tasks = dagd.cli("tasks", "list", "nightly_warehouse_refresh", str(runs[0]), env=env)
    assert tasks.code == 0, tasks
    assert "…" not in tasks.stdout, tasks
    assert max(len(line) for line in tasks.stdout.splitlines()) <= 80, tasks
    columns = _header(tasks.stdout)
    assert columns[:3] == ["task", "state", "try"], tasks
    assert "started" in columns, tasks
    rows = table_rows(tasks.stdout)
    assert [row[:2] for row in rows] == [
        ["extract_orders_from_the_crm", "success"], ["load_orders_into_the_warehouse", "success"]
    ], tasks
    for row in rows:
        assert SHORT_TIME.match(row[columns.index("started")]), tasks
    assert "nightly_warehouse_refresh" in tasks.stdout  # the title names the run's DAG

    for command in (("events", "list"), ("dags", "list")):
        shown = dagd.cli(*command, env=env)
        assert shown.code == 0, shown
        assert "…" not in shown.stdout, shown
        assert max(len(line) for line in shown.stdout.splitlines()) <= 80, shown
        assert "nightly_warehouse_refresh" in shown.stdout, shown


SLEEPER_DAG = """
    from dagd import DAG, ShellTask

    with DAG("sleeper"):
        ShellTask(task_id="nap", command="echo $$ > {pidfile}; exec sleep 300")
"""


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dagd_test_stopped_by_a_signal_stops_its_shell_commands(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path, signum: int
) -> None:
    pidfile = tmp_path / "nap.pid"
    write_dag("sleeper.py", SLEEPER_DAG.format(pidfile=str(pidfile)))
    proc = dagd.popen_cli("test", "sleeper")
    assert proc.stdout is not None and proc.stderr is not None
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    pid = dagd.wait(lambda: _pid_in(pidfile), timeout=30, what="the shell command's pid file")
    try:
        assert not process_gone(pid)
        proc.send_signal(signum)
        try:
            code = proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"dagd test still running 8s after {signum!r}") from None
        output = out.join(5) + err.join(5)
        wait_until(lambda: process_gone(pid), timeout=5, what=f"sleep (pid {pid}) to be gone")
        assert code == 128 + signum, output
        assert "interrupted" in output, output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
