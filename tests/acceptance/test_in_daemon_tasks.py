"""Tasks that run inside the daemon's own process, seen from outside `dagd run`: a thread
task that segfaults (the next start names the cause), one that outlives the stop (the
lock is held until the process is gone, and the exit keeps to the grace period), an
async task that blocks the loop (the log names it); and the config's memory limit."""

from __future__ import annotations

import fcntl
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import Daemon, Dagd, process_gone

pytestmark = pytest.mark.slow

GRACE = 2.0


def trigger(daemon: Daemon, dag_id: str) -> int:
    status, body = daemon.request("POST", f"/api/v1/dags/{dag_id}/runs", {"conf": {}})
    assert status == 201, body
    return int(body["run_id"])


def log_has(path: str | None, text: str) -> bool:
    return bool(path) and Path(str(path)).exists() and text in Path(str(path)).read_text()


SEGFAULT_DAG = """
    import ctypes

    from dagd import DAG, task

    with DAG("crashy", default_args={"retries": 1, "retry_delay": 0}):
        @task(isolation="thread")
        def segfaults(try_number):
            if try_number == 1:
                ctypes.string_at(0)  # reads address 0: SIGSEGV, in the daemon's process
            return "survived"

        segfaults()

    with DAG("crashy_async", default_args={"retries": 1, "retry_delay": 0}):
        @task
        async def segfaults_in_the_loop(try_number):
            if try_number == 1:
                ctypes.string_at(0)
            return "survived"

        segfaults_in_the_loop()
"""
IN_A_THREAD = ("the daemon died while this attempt was running in the daemon's own process "
               "(isolation=thread): run it with isolation=\"process\"")
IN_THE_LOOP = ("the daemon died while this attempt was running in the daemon's own process "
               "(in its event loop, an async task): make it a plain def, which runs in a "
               "worker process")


@pytest.mark.parametrize(("dag_id", "task_id", "error"), [
    ("crashy", "segfaults", IN_A_THREAD),
    ("crashy_async", "segfaults_in_the_loop", IN_THE_LOOP),
], ids=["thread", "async"])
def test_a_task_that_kills_the_daemon_is_named_at_the_next_start(
    dagd: Dagd, write_dag: Callable[..., Path], dag_id: str, task_id: str, error: str
) -> None:
    write_dag("crashy.py", SEGFAULT_DAG)
    first = dagd.start()
    run = trigger(first, dag_id)
    assert first.wait_exit(20) == -signal.SIGSEGV

    second = dagd.start()
    dagd.wait_runs({run: "success"}, timeout=20)
    attempts = dagd.attempts(dag_id, task_id)
    assert [(a["try_number"], a["state"], a["error"]) for a in attempts] == [
        (1, "failed", error), (2, "success", None),
    ]
    log = second.log()
    assert "the previous daemon crashed; its crash report:" in log
    assert "Segmentation fault" in log
    assert "crashy.py" in log  # the crash report's traceback reaches the task's line
    assert not (dagd.data_dir / "crash.txt").read_text()  # the new daemon's, still empty


STUCK_THREAD_DAG = """
    import time

    from dagd import DAG, task

    with DAG("stuck"):
        @task(isolation="thread")
        def sleeps():
            print("sleeping", flush=True)
            time.sleep(30)

        sleeps()
"""


def lock_taken_by_someone(lock: Path) -> bool:
    """True if another process holds the data directory's lock (tried, never kept)."""
    with open(lock, "a+b") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
        return False


def test_a_thread_task_still_running_at_the_stop_neither_delays_the_exit_nor_outlives_the_lock(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("stuck.py", STUCK_THREAD_DAG)
    daemon = dagd.start()
    run = trigger(daemon, "stuck")
    dagd.wait(lambda: any(a["state"] == "running" and log_has(a["log_path"], "sleeping")
                          for a in dagd.attempts("stuck", "sleeps")),
              timeout=20, what="the thread task running")
    lock = dagd.data_dir / "dagd.lock"
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    # Until the process is gone nobody else may take the lock: look all along.
    while not process_gone(daemon.pid):
        if lock_taken_by_someone(lock):
            time.sleep(0.02)
            continue
        assert process_gone(daemon.pid), "the lock was free while the daemon still ran"
        break
    assert daemon.wait_exit(GRACE + 3.0) == 0
    took = time.monotonic() - sent
    assert GRACE - 0.1 <= took <= GRACE + 3.0, f"exited {took:.2f}s after SIGTERM"
    assert not lock_taken_by_someone(lock)
    log = daemon.log()
    assert "exiting with 1 thread task(s) still running, abandoned" in log
    assert f"stuck.sleeps[run {run} #1]" in log
    [attempt] = dagd.attempts("stuck", "sleeps")
    assert (attempt["state"], attempt["error"]) == ("failed", "interrupted: the daemon stopped")


BLOCKING_DAG = """
    import time

    from dagd import DAG, task

    with DAG("blocker"):
        @task
        async def naps():
            time.sleep(2)  # blocks the event loop: what the watchdog is for

        naps()
"""


def test_an_async_task_that_blocks_the_loop_is_named_in_the_daemon_log(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("blocker.py", BLOCKING_DAG)
    daemon = dagd.start()
    run = trigger(daemon, "blocker")
    dagd.wait_runs({run: "success"}, timeout=20)
    dagd.wait(lambda: "the event loop was blocked for" in daemon.log(), timeout=5,
              what="the watchdog's second line")
    warnings = [line for line in daemon.log().splitlines()
                if " WARNING " in line and "event loop" in line]
    assert len(warnings) == 2, warnings
    assert all(f"blocker.naps[run {run} #1]" in line for line in warnings), warnings
    assert "has not answered for 1.0s" in warnings[0]
    blocked = float(warnings[1].split("blocked for ", 1)[1].split("s", 1)[0])
    assert 1.5 <= blocked <= 3.0, warnings[1]


MEMORY_DAG = """
    from dagd import DAG, task

    with DAG("hungry"):
        @task
        def allocates():
            return len(bytearray(2 * 1024**3))

        allocates()
"""


def test_the_configured_default_memory_limit_applies_to_every_task(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    dagd.config.write_text(f'[core]\nshutdown_grace_period = {GRACE}\n'
                           'default_memory_limit = "256MB"\n\n'
                           '[database]\nsynchronous = "normal"\n')
    write_dag("hungry.py", MEMORY_DAG)
    daemon = dagd.start()
    run = trigger(daemon, "hungry")
    dagd.wait_runs({run: "failed"}, timeout=30)
    [attempt] = dagd.attempts("hungry", "allocates")
    assert attempt["error"] == "MemoryError: memory limit of 256 MB exceeded"
    assert log_has(attempt["log_path"], "memory limit of 256 MB exceeded")
