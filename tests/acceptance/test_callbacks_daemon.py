"""Callbacks under `dagd run`: a DAG file added while the daemon runs gets its callbacks
called (sync and async, task and run), one that hangs is abandoned at `[core]
callback_timeout` with a note in the attempt's log, and SIGTERM while a sync one still
hangs stops the daemon within its grace period."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import Dagd

pytestmark = pytest.mark.slow

CALLBACKS = """
    import time
    from dagd import DAG, task

    OUT = OUTPATH

    def note(context):
        with open(OUT, "a") as f:
            f.write(f"{context['task_id']} {context['state']} try {context['try_number']}\\n")

    async def run_done(context):
        with open(OUT, "a") as f:
            f.write(f"run {context['run_id']} {context['state']}\\n")

    def hangs(context):
        time.sleep(60)

    with DAG("called", on_success_callback=run_done,
             default_args={"on_success_callback": note}):
        @task
        async def first():
            return 1

        @task(on_success_callback=[note, hangs])
        async def second():
            return 2

        first() >> second()
"""


def test_the_daemon_calls_callbacks_abandons_a_hanging_one_and_stops_in_time(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    dagd.config.write_text('[core]\nshutdown_grace_period = 2.0\ncallback_timeout = 1.0\n\n'
                           '[database]\nsynchronous = "normal"\n')
    daemon = dagd.start()
    out = tmp_path / "calls.txt"
    # Added while the daemon runs: the reload subscribes the callbacks.
    write_dag("called.py", CALLBACKS.replace("OUTPATH", repr(str(out))))

    def loaded() -> bool:
        status, body = daemon.request("GET", "/api/v1/dags")
        return status == 200 and any(d["dag_id"] == "called" for d in body["dags"])

    dagd.wait(loaded, timeout=10, what="the DAG to load")
    status, body = daemon.request("POST", "/api/v1/dags/called/runs", {"conf": {}})
    assert status == 201, body
    run_id = int(body["run_id"])
    dagd.wait_runs({run_id: "success"}, timeout=20)

    def called() -> bool:
        return out.exists() and len(out.read_text().splitlines()) == 3

    dagd.wait(called, timeout=10, what="three callbacks")
    assert sorted(out.read_text().splitlines()) == sorted(
        ["first success try 1", "second success try 1", f"run {run_id} success"])
    [attempt] = dagd.attempts("called", "second")

    def noted() -> bool:
        path = Path(attempt["log_path"])
        return path.exists() and "did not finish within 1s" in path.read_text()

    dagd.wait(noted, timeout=10, what="the abandoned callback noted in the attempt's log")
    assert "[dagd] on_success_callback hangs did not finish within 1s" in Path(
        attempt["log_path"]).read_text()

    # A second run: its hanging callback is still in its thread when SIGTERM comes.
    status, body = daemon.request("POST", "/api/v1/dags/called/runs", {"conf": {}})
    assert status == 201, body
    dagd.wait_runs({int(body["run_id"]): "success"}, timeout=20)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0
    assert time.monotonic() - started < 2.0 + 5.0


def test_dagd_test_calls_the_callbacks_before_it_exits(
    dagd: Dagd, write_dag: Callable[..., Path], tmp_path: Path
) -> None:
    dagd.config.write_text('[core]\ncallback_timeout = 1.0\n')
    out = tmp_path / "calls.txt"
    write_dag("called.py", CALLBACKS.replace("OUTPATH", repr(str(out))))
    result = dagd.cli("test", "called")
    assert result.code == 0, result
    assert sorted(out.read_text().splitlines()) == sorted(
        ["first success try 1", "second success try 1", "run 1 success"])
