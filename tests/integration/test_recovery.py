"""Restart recovery: a new engine on the same database carries on from the rows."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from dagd.authoring.loader import load_folder
from dagd.config import Settings
from dagd.errors import NotFound
from dagd.scheduler.loop import Engine
from dagd.store import Store
from dagd.store.rows import AttemptRow
from integration.harness import StartEngine, pid_alive, read_text, wait_until, worker_children

pytestmark = pytest.mark.anyio

HANGS_ON_FIRST_TRY = """
import time
from dagd import DAG, task

with DAG("crashy") as crashy:
    @task(retries=1, retry_delay=0)
    def hangs(try_number):  # a worker process
        if try_number == 1:
            print("started", flush=True)
            time.sleep(3600)
        return f"done on try {try_number}"

    @task
    async def after(value):
        return value.upper()

    after(hangs())
"""

# A daemon that triggers one run and then runs until it is killed.
CRASHING_DAEMON = """
import sys
from pathlib import Path

import anyio

from dagd.authoring.loader import load_folder
from dagd.config import Settings
from dagd.errors import NotFound
from dagd.scheduler.loop import Engine
from dagd.store import Store


async def main(dags: str, data: str) -> None:
    settings = Settings(dags_folder=Path(dags), data_dir=Path(data), synchronous="normal")
    store = await Store.open(settings.db_path, synchronous="normal")
    engine = Engine(store, settings)
    engine.set_dags(load_folder(settings.dags_folder).dags, set())
    await engine.boot()
    async with anyio.create_task_group() as tg:
        await tg.start(engine.serve)
        print(await engine.trigger("crashy"), flush=True)
        await anyio.sleep_forever()


anyio.run(main, sys.argv[1], sys.argv[2])
"""


async def first_attempt_hanging(store: Store, run_id: int) -> AttemptRow | None:
    """The first attempt of `hangs`, once its worker has a recorded pid and has started."""
    try:
        ti = await store.get_ti(run_id, "hangs")
    except NotFound:  # the run has not created it yet
        return None
    attempts = await store.list_attempts(ti.id)
    if not attempts or attempts[0].pid is None:
        return None
    return attempts[0] if "started" in await read_text(attempts[0].log_path) else None


async def is_hanging(store: Store, run_id: int) -> bool:
    return await first_attempt_hanging(store, run_id) is not None


async def test_a_run_left_running_by_a_killed_daemon_finishes_after_restart(
    write_dag: Callable[[str, str], Path],
    start_engine: StartEngine,
    settings: Settings,
    tmp_path: Path,
) -> None:
    write_dag("crashy.py", HANGS_ON_FIRST_TRY)
    script = tmp_path / "crashing_daemon.py"
    script.write_text(CRASHING_DAEMON)
    daemon = await anyio.open_process(
        [sys.executable, str(script), str(settings.dags_folder), str(settings.data_dir)]
    )
    try:
        assert daemon.stdout is not None
        with anyio.fail_after(5):
            run_id = int((await daemon.stdout.receive()).decode())
        reader = await Store.open(settings.db_path, readonly=True)
        try:
            await wait_until(
                lambda: is_hanging(reader, run_id),
                what="the first attempt to hang",
            )
            hanging = await first_attempt_hanging(reader, run_id)
        finally:
            await reader.close()
        assert hanging is not None and hanging.pid is not None
        worker = hanging.pid
        assert pid_alive(worker)
    finally:
        daemon.kill()  # SIGKILL: no shutdown code of the daemon runs
        with anyio.CancelScope(shield=True):
            await daemon.wait()
            await daemon.aclose()
    # The killed daemon's worker dies with it.
    await wait_until(lambda: not pid_alive(worker), what="the orphaned worker to die")

    async with start_engine() as h:
        assert await h.wait(run_id) == "success"
        attempts = await h.attempts(run_id, "hangs")
        history = await h.ti_history(run_id, "hangs")
        values = (await h.xcom(run_id, "hangs"), await h.xcom(run_id, "after"))
    assert [(a.try_number, a.state, a.error) for a in attempts] == [
        (1, "failed", "daemon restarted"),
        (2, "success", None),
    ]
    assert attempts[0].pid == worker
    transitions = [(r.from_state, r.to_state, r.reason) for r in history]
    restarted = transitions.index(("running", "up_for_retry", "daemon restarted"))
    assert transitions[restarted + 1 :] == [
        ("up_for_retry", "queued", "retry delay passed"),
        ("queued", "running", None),
        ("running", "success", None),
    ]
    assert values == ("done on try 2", "DONE ON TRY 2")


async def test_an_engine_cancelled_from_outside_records_the_interrupted_attempt(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("crashy.py", HANGS_ON_FIRST_TRY)
    store = await Store.open(settings.db_path, synchronous=settings.synchronous)
    try:
        engine = Engine(store, settings)
        engine.set_dags(load_folder(settings.dags_folder).dags, set())
        await engine.boot()
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)
            run_id = await engine.trigger("crashy")
            await wait_until(
                lambda: is_hanging(store, run_id),
                what="the first attempt to hang",
            )
            hanging = await first_attempt_hanging(store, run_id)
            tg.cancel_scope.cancel()  # no engine.stop(): cancelled abruptly
        left = [(a.try_number, a.state, a.error) for a in await engine_attempts(store, run_id)]
    finally:
        await store.close()
        # Whatever the engine started must end before the test does.
        await wait_until(lambda: not worker_children(), what="workers to end")
    assert hanging is not None and hanging.pid is not None
    assert not pid_alive(hanging.pid)
    # The interrupted attempt is recorded as such, and nothing else was started.
    assert left == [(1, "failed", "interrupted: the daemon stopped")]

    async with start_engine() as h:
        assert await h.wait(run_id) == "success"
        attempts = await h.attempts(run_id, "hangs")
        value = await h.xcom(run_id, "after")
    assert [(a.try_number, a.state) for a in attempts] == [(1, "failed"), (2, "success")]
    assert value == "DONE ON TRY 2"


async def engine_attempts(store: Store, run_id: int) -> list[AttemptRow]:
    return await store.list_attempts((await store.get_ti(run_id, "hangs")).id)


PATIENT = """
from dagd import DAG, task

with DAG("patient") as patient:
    @task(retries=1, retry_delay=60)
    async def fails_once(try_number):
        if try_number == 1:
            raise ValueError("not yet")
        return "ok"

    fails_once()

with DAG("barrier") as barrier:
    @task
    async def noop():
        return None

    noop()
"""


async def test_a_retry_delay_survives_a_restart(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("patient.py", PATIENT)
    async with start_engine() as h:
        run_id = await h.trigger("patient")

        async def waiting_for_retry() -> bool:
            return (await h.states(run_id)).get("fails_once") == "up_for_retry"

        await wait_until(waiting_for_retry, what="the task to wait for its retry")
        due = (await h.tis(run_id))["fails_once"].next_attempt_at
    assert due is not None

    async with start_engine() as h:
        # A run of another DAG to its end: the restarted engine has ticked past boot.
        _, state = await h.run("barrier")
        assert state == "success"
        ti = (await h.tis(run_id))["fails_once"]
    # 60 s were asked for between the tries: a restart must not cut them short.
    assert (ti.state, ti.try_number, ti.next_attempt_at) == ("up_for_retry", 1, due)
