"""The warm worker pool under a real `dagd run`: killed with -9, the daemon takes its
fork server and every worker with it; with every worker busy with CPU-bound tasks, its
HTTP API still answers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from acceptance.harness import Daemon, Dagd, process_gone, wait_until

pytestmark = pytest.mark.slow

WORKERS = "\n[workers]\nsize = 2\nmax_size = 2\n"

# Two sync tasks that run until they are killed: each prints once it is running.
SLEEPERS = """
    import os
    import time

    from dagd import DAG, task

    with DAG("sleepers", max_active_tasks=4):
        @task
        def sleeper(x):
            print(f"sleeper {x} running in {os.getpid()}", flush=True)
            time.sleep(3600)

        sleeper.expand(x=[0, 1])
"""

# Three CPU-bound sync tasks for a pool of two: both workers spin, one attempt waits.
SPINNERS = """
    from dagd import DAG, task

    with DAG("spinners", max_active_tasks=4):
        @task
        def spin(x):
            print(f"spin {x} running", flush=True)
            while True:
                pass

        spin.expand(x=[0, 1, 2])
"""


def pool_processes(root: int) -> set[int]:
    """Live processes below `root` running `dagd.executors.worker`: the fork server (the
    daemon's child) and the workers it forked (its children)."""
    children: dict[int, list[int]] = {}
    workers: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        if b"dagd.executors.worker" in cmdline:
            workers.add(int(entry.name))
    found: set[int] = set()
    below = list(children.get(root, []))
    while below:
        pid = below.pop()
        if pid in workers:
            found.add(pid)
        below.extend(children.get(pid, []))
    return found


@contextlib.contextmanager
def killed_at_exit(pids: set[int]) -> Iterator[set[int]]:
    """Whatever the test recorded is killed at the end, pass or fail."""
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if not process_gone(pid):
                    os.kill(pid, signal.SIGKILL)


def running(dagd: Dagd, dag_id: str, task_id: str, count: int) -> Callable[[], set[int]]:
    """`count` attempts of the task running in a worker that printed its first line."""

    def check() -> set[int]:
        pids = {
            int(a["pid"]) for a in dagd.attempts(dag_id, task_id)
            if a["state"] == "running" and a["pid"] and a["log_path"]
            and Path(a["log_path"]).exists() and "running" in Path(a["log_path"]).read_text()
        }
        return pids if len(pids) >= count else set()

    return check


def trigger(dagd: Dagd, dag_id: str) -> None:
    daemon = dagd.daemons[-1]
    status, body = daemon.request("POST", f"/api/v1/dags/{dag_id}/runs", {"conf": {}})
    assert status == 201, body


def test_kill_9_of_the_daemon_leaves_no_worker_behind(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    dagd.config.write_text(dagd.config.read_text() + WORKERS)
    write_dag("sleepers.py", SLEEPERS)
    daemon = dagd.start()
    with killed_at_exit(set()) as recorded:
        trigger(dagd, "sleepers")
        busy = dagd.wait(running(dagd, "sleepers", "sleeper", 2), timeout=20,
                         what="both sleepers running in workers")

        def server_and_workers() -> set[int]:
            # The fork server and the two workers (both busy): all below the daemon.
            found = pool_processes(daemon.pid)
            return found if busy < found and len(found) == 3 else set()

        found = dagd.wait(server_and_workers, timeout=10,
                          what=f"the fork server and the workers {busy} below the daemon")
        recorded.update(found)

        os.kill(daemon.pid, signal.SIGKILL)
        assert daemon.wait_exit(10) == -signal.SIGKILL
        wait_until(lambda: all(process_gone(pid) for pid in found), timeout=10,
                   what=f"the pool's processes {sorted(found)} to die with the daemon")


ANSWER_DEADLINE = 2.0  # seconds: an answer costs milliseconds; a stalled loop gets none


def get(daemon: Daemon, path: str) -> tuple[int, object]:
    req = urllib.request.Request(daemon.url(path), headers=daemon.auth_headers())
    with urllib.request.urlopen(req, timeout=ANSWER_DEADLINE) as resp:
        return resp.status, json.loads(resp.read())


def test_the_api_answers_while_every_worker_is_busy_with_cpu_bound_work(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    dagd.config.write_text(dagd.config.read_text() + WORKERS)
    write_dag("spinners.py", SPINNERS)
    daemon = dagd.start()
    with killed_at_exit(set()) as recorded:
        trigger(dagd, "spinners")
        spinning = dagd.wait(running(dagd, "spinners", "spin", 2), timeout=20,
                             what="two spinners running in workers")
        recorded.update(pool_processes(daemon.pid))
        assert spinning <= recorded
        for _ in range(5):
            status, health = get(daemon, "/api/v1/health")
            assert status == 200 and isinstance(health, dict), health
            assert health["status"] == "ok", health
            status, dags = get(daemon, "/api/v1/dags")
            assert status == 200 and isinstance(dags, dict)
            assert [d["dag_id"] for d in dags["dags"]] == ["spinners"]
        # Still spinning: the pool was full the whole time.
        assert all(not process_gone(pid) for pid in spinning)

        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(20) == 0
        wait_until(lambda: all(process_gone(pid) for pid in recorded), timeout=10,
                   what=f"the pool's processes {sorted(recorded)} to end with the daemon")


# A sync task that starts a child in its worker's process group, then waits on it.
LEAVER = """
    import subprocess

    from dagd import DAG, task

    with DAG("leaver", default_args={"retries": 0}):
        @task
        def leave():
            child = subprocess.Popen(["sleep", "3600"])
            print(f"child {child.pid} running", flush=True)
            child.wait()

        leave()
"""


def test_the_next_start_ends_what_a_task_left_when_the_daemon_was_killed(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    dagd.config.write_text(dagd.config.read_text() + WORKERS)
    write_dag("leaver.py", LEAVER)
    daemon = dagd.start()
    with killed_at_exit(set()) as recorded:
        trigger(dagd, "leaver")
        dagd.wait(running(dagd, "leaver", "leave", 1), timeout=20, what="the task running")
        [attempt] = dagd.attempts("leaver", "leave")
        text = Path(attempt["log_path"]).read_text()
        child = int(text.split("child ", 1)[1].split()[0])
        recorded.add(child)
        os.kill(daemon.pid, signal.SIGKILL)
        assert daemon.wait_exit(10) == -signal.SIGKILL
        wait_until(lambda: process_gone(int(attempt["pid"])), timeout=10,
                   what="the worker to die with the daemon")
        # The worker's child outlives it (only the worker gets the death signal) ...
        assert not process_gone(child)
        # ... until the next start's recovery ends the worker's process group.
        dagd.start()
        wait_until(lambda: process_gone(child), timeout=10,
                   what=f"the task's child {child} to be ended by the recovery")
