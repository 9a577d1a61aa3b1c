"""execution_timeout stops the work (in the loop, in a worker process, in a thread), and a
worker that dies takes only its own attempt with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from integration.harness import StartEngine, pid_alive, read_text, wait_until

pytestmark = pytest.mark.anyio

HUNG_ASYNC = """
import anyio
from dagd import DAG, task

with DAG("hung_async") as hung_async:
    @task(execution_timeout=0.5)
    async def hangs():
        await anyio.sleep(3600)

    hangs()
"""


async def test_hung_async_task_is_cancelled_at_its_timeout(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("hung_async.py", HUNG_ASYNC)
    async with start_engine() as h:
        run_id, state = await h.run("hung_async")
        [attempt] = await h.attempts(run_id, "hangs")
    assert state == "failed"
    assert attempt.state == "failed"
    assert attempt.error is not None
    assert "execution_timeout of 0.5s exceeded" in attempt.error
    assert attempt.ended_at is not None
    assert 0.5 <= attempt.ended_at - attempt.started_at < 3.0
    assert "execution_timeout exceeded, cancelled" in await read_text(attempt.log_path)


HUNG_SYNC = """
import time
from dagd import DAG, task

with DAG("hung_sync") as hung_sync:
    # Long enough for a worker to start on a loaded machine, and for the other DAG to run.
    @task(execution_timeout=1.5)
    def hangs():
        print("started", flush=True)
        {body}

    hangs()

with DAG("quick") as quick:
    @task
    async def answer():
        return 42

    answer()
"""


@pytest.mark.parametrize(
    "body", ["time.sleep(3600)", "while True: pass"], ids=["sleeping", "cpu_bound"]
)
async def test_hung_sync_task_in_a_worker_is_killed_and_the_loop_stays_responsive(
    body: str, write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("hung_sync.py", HUNG_SYNC.replace("{body}", body))
    async with start_engine() as h:
        hung = await h.trigger("hung_sync")

        async def worker_is_hanging() -> bool:
            attempts = await h.attempts(hung, "hangs")
            if not attempts or attempts[0].pid is None:
                return False
            return "started" in await read_text(attempts[0].log_path)

        await wait_until(worker_is_hanging, what="the worker to start hanging")
        [attempt] = await h.attempts(hung, "hangs")
        assert attempt.pid is not None and pid_alive(attempt.pid)

        # While it hangs, another DAG's async task runs to the end.
        quick, quick_state = await h.run("quick")
        assert quick_state == "success"
        assert await h.xcom(quick, "answer") == 42
        assert (await h.store.get_run(hung)).state == "running"

        assert await h.wait(hung) == "failed"
        [attempt] = await h.attempts(hung, "hangs")
        quick_run = await h.store.get_run(quick)
    assert attempt.error is not None
    assert "execution_timeout of 1.5s exceeded" in attempt.error
    assert attempt.pid is not None and not pid_alive(attempt.pid)
    assert "execution_timeout exceeded, process killed" in await read_text(attempt.log_path)
    assert quick_run.ended_at is not None and attempt.ended_at is not None
    assert quick_run.ended_at < attempt.ended_at


STUCK_THREAD = """
import threading
from dagd import DAG, task

release = threading.Event()
finished = threading.Event()

with DAG("stuck_thread") as stuck_thread:
    @task(isolation="thread", execution_timeout=0.5)
    def stuck():
        print("waiting")
        release.wait(30)
        print("late output of an abandoned thread")
        finished.set()
        return "released"

    stuck()
"""


async def test_thread_isolation_timeout_fails_the_attempt(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("stuck_thread.py", STUCK_THREAD)
    async with start_engine(capture=True) as h:
        release = h.module_global("stuck_thread", "release")
        finished = h.module_global("stuck_thread", "finished")
        try:
            run_id, state = await h.run("stuck_thread")
            [attempt] = await h.attempts(run_id, "stuck")
            ti = (await h.tis(run_id))["stuck"]
            value = await h.xcom(run_id, "stuck")
        finally:
            release.set()  # let the abandoned thread end
            assert await anyio.to_thread.run_sync(finished.wait, 5.0)
        text = await read_text(attempt.log_path)
    assert state == "failed"
    assert ti.state == "failed"
    assert attempt.error is not None
    assert "execution_timeout of 0.5s exceeded" in attempt.error
    assert "waiting" in text
    assert "the thread is abandoned" in text
    assert value is None


CRASHES = """
import os
import signal
from dagd import DAG, task

with DAG("crashes") as crashes:
    @task
    def exits():
        os._exit(3)

    @task
    def killed():
        os.kill(os.getpid(), signal.SIGKILL)

    exits()
    killed()
"""


async def test_a_worker_that_dies_fails_only_its_attempt(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("crashes.py", CRASHES)
    async with start_engine() as h:
        run_id, state = await h.run("crashes")
        errors = {t: [a.error for a in await h.attempts(run_id, t)] for t in ("exits", "killed")}
    assert state == "failed"
    assert errors == {
        "exits": ["worker process exited with code 3 before reporting a result"],
        "killed": ["worker process killed by signal SIGKILL before reporting a result"],
    }


STUBBORN = """
import signal
import subprocess
import time
from dagd import DAG, task

with DAG("stubborn") as stubborn:
    @task(execution_timeout=1.5)  # time to start a worker and its child, even under load
    def ignores_sigterm():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "3600"])
        print(f"grandchild {child.pid}", flush=True)
        time.sleep(3600)

    ignores_sigterm()
"""


async def test_a_worker_ignoring_sigterm_is_killed_with_its_children(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("stubborn.py", STUBBORN)
    async with start_engine() as h:
        run_id, state = await h.run("stubborn")
        [attempt] = await h.attempts(run_id, "ignores_sigterm")
        text = await read_text(attempt.log_path)
    assert state == "failed"
    assert attempt.error is not None and "execution_timeout" in attempt.error
    grandchild = int(text.split("grandchild ", 1)[1].split()[0])
    assert attempt.pid is not None
    worker = attempt.pid
    await wait_until(
        lambda: not pid_alive(worker) and not pid_alive(grandchild),
        what="the worker and its child to die",
    )
