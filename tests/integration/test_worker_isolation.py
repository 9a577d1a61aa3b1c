"""What a worker process shares with the daemon, and what it leaves behind: its
environment (no daemon secrets unless inherit_env=True), the processes its task started
(none outlives the attempt, even one that left the process group), and its memory
(memory_limit fails the attempt and says so)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from integration.harness import StartEngine, killed_at_exit, pid_alive, read_text, wait_until

pytestmark = pytest.mark.anyio

SECRET = "DAGD_TEST_SECRET_X"

ENV_DAG = """
import os
from dagd import DAG, task

with DAG("env_clean") as env_clean:
    @task
    def clean():
        return {"secret": os.environ.get("DAGD_TEST_SECRET_X"), "path": "PATH" in os.environ}

    @task(inherit_env=True)
    def inherits():
        return os.environ.get("DAGD_TEST_SECRET_X")

    clean()
    inherits()

with DAG("env_default", default_args={"inherit_env": True}) as env_default:
    @task
    def by_default():
        return os.environ.get("DAGD_TEST_SECRET_X")

    by_default()
"""


async def test_a_worker_sees_no_daemon_secret_unless_the_task_inherits_the_environment(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET, "hunter2")  # in the daemon's environment
    write_dag("env.py", ENV_DAG)
    async with start_engine() as h:
        clean_run, clean_state = await h.run("env_clean")
        default_run, default_state = await h.run("env_default")
        assert (clean_state, default_state) == ("success", "success")
        assert await h.xcom(clean_run, "clean") == {"secret": None, "path": True}
        assert await h.xcom(clean_run, "inherits") == "hunter2"
        assert await h.xcom(default_run, "by_default") == "hunter2"


# Each task starts `sleep` processes and prints their pids; some leave the worker's
# process group (setsid), one is a daemon (double fork: orphaned, re-parented).
TREE_DAG = """
import os
import subprocess
import sys
import time
from dagd import DAG, task

IGNORES_TERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "time.sleep(3600)")


def spawn(*, setsid=False, ignore_term=False):
    argv = [sys.executable, "-c", IGNORES_TERM] if ignore_term else ["sleep", "3600"]
    child = subprocess.Popen(argv, start_new_session=setsid)
    print(f"pid {child.pid}", flush=True)


def daemonize():
    read, write = os.pipe()
    if os.fork() == 0:  # the child: a new session, a grandchild, then gone
        os.setsid()
        if os.fork() == 0:
            os.write(write, f"{os.getpid()}\\n".encode())
            time.sleep(3600)
        os._exit(0)
    print(f"pid {os.read(read, 64).decode().strip()}", flush=True)


with DAG("trees", max_active_tasks=16) as trees:
    @task
    def spawn_and_return():
        spawn()

    @task
    def setsid_and_return():
        spawn(setsid=True)

    @task
    def daemon_and_return():
        daemonize()

    @task
    def spawn_and_raise():
        spawn(setsid=True)
        raise RuntimeError("failed after starting a child")

    @task(execution_timeout=2)
    def spawn_and_hang():
        spawn()
        time.sleep(3600)

    @task(execution_timeout=2)
    def setsid_then_hang():
        spawn(setsid=True)
        spawn(setsid=True, ignore_term=True)
        daemonize()
        time.sleep(3600)

    for make in (spawn_and_return, setsid_and_return, daemon_and_return, spawn_and_raise,
                 spawn_and_hang, setsid_then_hang):
        make()
"""

OUTCOMES = {
    "spawn_and_return": ("success", 1),
    "setsid_and_return": ("success", 1),
    "daemon_and_return": ("success", 1),
    "spawn_and_raise": ("failed", 1),
    "spawn_and_hang": ("failed", 1),
    "setsid_then_hang": ("failed", 3),
}


async def test_no_process_a_task_started_outlives_its_attempt(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("trees.py", TREE_DAG)
    with killed_at_exit([]) as started:
        async with start_engine() as h:
            run_id, _ = await h.run("trees", deadline=30)
            found: dict[str, tuple[str, list[int], str]] = {}
            for task_id in OUTCOMES:
                [attempt] = await h.attempts(run_id, task_id)
                text = await read_text(attempt.log_path)
                pids = [int(line.split()[1]) for line in text.splitlines()
                        if line.startswith("pid ")]
                started.extend(pids)
                found[task_id] = (attempt.state, pids, text)
        for task_id, (state, expected) in OUTCOMES.items():
            got_state, pids, text = found[task_id]
            assert (got_state, len(pids)) == (state, expected), (task_id, text)
        # A worker that ended by itself has ended its task's processes before exiting.
        for task_id in ("spawn_and_return", "setsid_and_return", "daemon_and_return",
                        "spawn_and_raise"):
            _, pids, text = found[task_id]
            assert not any(pid_alive(pid) for pid in pids), (task_id, text)
            # daemon_and_return's intermediate process may not have exited yet: 1 or 2.
            assert re.search(r"\[dagd\] stopped [12] process\(es\) the task left running",
                             text), (task_id, text)
        # At a timeout, the daemon kills the worker's whole tree.
        await wait_until(lambda: not any(pid_alive(pid) for pid in started), deadline=5,
                         what=f"every process the tasks started to die: {started}")


MEMORY_DAG = """
from dagd import DAG, task

with DAG("memory", default_args={"retries": 0}) as memory:
    @task(memory_limit="256MB")
    def limited():
        data = bytearray(2 * 1024**3)
        return len(data)

    limited()

with DAG("memory_default", default_args={"memory_limit": 256 * 1024**2}) as memory_default:
    @task
    def by_default():
        return len(bytearray(2 * 1024**3))

    by_default()

with DAG("no_limit") as no_limit:
    @task
    def unlimited():
        return len(bytearray(2 * 1024**3))

    unlimited()
"""


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_a_task_over_its_memory_limit_fails_and_says_so(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("memory.py", MEMORY_DAG)
    async with start_engine() as h:
        run_id, _ = await h.run("memory", deadline=30)
        [limited] = await h.attempts(run_id, "limited")
        default_run, _ = await h.run("memory_default", deadline=30)
        [by_default] = await h.attempts(default_run, "by_default")
        limited_log = await read_text(limited.log_path)
        default_log = await read_text(by_default.log_path)
    assert limited.state == "failed"
    assert limited.error == "MemoryError: memory limit of 256 MB exceeded"
    assert limited_log.startswith("MemoryError: memory limit of 256 MB exceeded\n")
    assert "bytearray(2 * 1024**3)" in limited_log  # the user's line, in the traceback
    assert by_default.state == "failed"
    assert by_default.error == "MemoryError: memory limit of 256 MiB exceeded"
    assert "memory limit of 256 MiB exceeded" in default_log


@pytest.mark.skipif(available_memory() < 3 * 1024**3,
                    reason="needs 3 GB free to allocate 2 GB with no limit")
async def test_the_same_allocation_with_no_limit_succeeds(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("memory.py", MEMORY_DAG)
    async with start_engine() as h:
        run_id, state = await h.run("no_limit", deadline=30)
        assert state == "success"
        assert await h.xcom(run_id, "unlimited") == 2 * 1024**3
