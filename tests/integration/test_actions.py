"""A person's actions on real runs: clear (with and without downstream), mark a task
instance or a run success or failed, stopping what runs; refusals write nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dagd.errors import InvalidInput, NotFound, StateError
from integration.harness import Harness, StartEngine, wait_until

pytestmark = pytest.mark.anyio

PIPELINE = """
import asyncio
from dagd import DAG, task

with DAG("pipe") as pipe:
    @task
    async def extract(try_number):
        if try_number == 1:
            raise ValueError("source not ready")
        return 7

    @task
    async def load(value):
        return value * 2

    @task(retries=1, retry_delay=0)
    async def always_fails():
        raise RuntimeError("broken")

    load(extract())
    always_fails()

with DAG("slow") as slow:
    @task
    async def wait_forever():
        await asyncio.Event().wait()

    @task
    def sleep_in_worker():
        import time
        time.sleep(600)

    @task
    async def after():
        return "after ran"

    wait_forever() >> after()
    sleep_in_worker()
"""


@pytest.fixture
def pipeline(write_dag: Callable[[str, str], Path]) -> None:
    write_dag("pipe.py", PIPELINE)


async def _history_count(h: Harness, run_id: int) -> int:
    return len(await h.store.run_history(run_id))


@pytest.mark.usefixtures("pipeline")
async def test_clear_with_downstream_runs_a_failed_task_and_what_follows_again(
    start_engine: StartEngine,
) -> None:
    async with start_engine() as h:
        run_id, state = await h.run("pipe")
        assert state == "failed"
        assert (await h.states(run_id))["load"] == "upstream_failed"
        cleared = await h.engine.clear(run_id, "extract", downstream=True)
        assert cleared == ["extract", "load"]
        assert await h.wait(run_id) == "failed"  # always_fails is still failed
        states = await h.states(run_id)
        tis = await h.tis(run_id)
        history = await h.ti_history(run_id, "extract")
        value = await h.xcom(run_id, "load")
    assert (states["extract"], states["load"], states["always_fails"]) == (
        "success", "success", "failed")
    assert (tis["extract"].try_number, tis["extract"].max_tries) == (2, 2)
    assert value == 14
    moves = [(r.from_state, r.to_state, r.reason) for r in history]
    cleared = moves.index(("failed", "scheduled", "cleared by a person"))
    # Queued again after the clear: a history row tells it (the row keeps the first time).
    assert moves[cleared + 1][:2] == ("scheduled", "queued")


@pytest.mark.usefixtures("pipeline")
async def test_clear_alone_leaves_the_tasks_after_it_as_they_were(
    start_engine: StartEngine,
) -> None:
    async with start_engine() as h:
        run_id, _ = await h.run("pipe")
        assert await h.engine.clear(run_id, "extract") == ["extract"]
        await h.wait(run_id)
        states = await h.states(run_id)
    assert (states["extract"], states["load"]) == ("success", "upstream_failed")


@pytest.mark.usefixtures("pipeline")
async def test_a_cleared_task_has_its_own_retries_again(start_engine: StartEngine) -> None:
    async with start_engine() as h:
        run_id, _ = await h.run("pipe")
        assert len(await h.attempts(run_id, "always_fails")) == 2  # try 1, its retry
        await h.engine.clear(run_id, "always_fails")
        assert await h.wait(run_id) == "failed"
        attempts = await h.attempts(run_id, "always_fails")
        ti = (await h.tis(run_id))["always_fails"]
    assert [a.try_number for a in attempts] == [1, 2, 3, 4]
    assert (ti.state, ti.max_tries) == ("failed", 4)


@pytest.mark.usefixtures("pipeline")
async def test_mark_success_stops_the_running_attempt_and_the_run_goes_on(
    start_engine: StartEngine,
) -> None:
    async with start_engine() as h:
        run_id = await h.trigger("slow")

        async def running() -> bool:
            return {a.state for a in await h.attempts(run_id, "wait_forever")} == {"running"}

        await wait_until(running, what="wait_forever running")
        await h.engine.mark_task(run_id, "wait_forever", "success")

        async def after_done() -> bool:
            return (await h.states(run_id))["after"] == "success"

        await wait_until(after_done, what="the task after it ran")
        attempts = await h.attempts(run_id, "wait_forever")
        await h.engine.mark_task(run_id, "sleep_in_worker", "failed")
        assert await h.wait(run_id) == "failed"

        async def worker_stopped() -> bool:
            # The TI is failed at once; its killed worker's attempt is recorded when the
            # worker's end is seen, which may come a moment after the run has ended.
            return all(a.state != "running" for a in await h.attempts(run_id,
                                                                       "sleep_in_worker"))

        await wait_until(worker_stopped, what="the marked task's attempt recorded")
        worker_attempts = await h.attempts(run_id, "sleep_in_worker")
        states = await h.states(run_id)
    assert [(a.state, a.error) for a in attempts] == [
        ("failed", "stopped: marked success by a person")]
    assert states["wait_forever"] == "success"
    assert [(a.state, a.error) for a in worker_attempts] == [
        ("failed", "stopped: marked failed by a person")]


@pytest.mark.usefixtures("pipeline")
async def test_mark_run_failed_fails_what_runs_and_skips_what_has_not_started(
    start_engine: StartEngine,
) -> None:
    async with start_engine() as h:
        run_id = await h.trigger("slow")

        async def running() -> bool:
            return bool(await h.attempts(run_id, "sleep_in_worker"))

        await wait_until(running, what="the worker task started")
        await h.engine.mark_run(run_id, "failed")
        assert await h.wait(run_id) == "failed"
        states = await h.states(run_id)
        notifications = await h.store.list_notifications(None, limit=10)
    assert states == {"wait_forever": "failed", "sleep_in_worker": "failed",
                      "after": "skipped"}
    assert notifications == []


@pytest.mark.usefixtures("pipeline")
async def test_marking_an_ended_run_and_a_task_in_it_changes_only_those_rows(
    start_engine: StartEngine,
) -> None:
    async with start_engine() as h:
        run_id, _ = await h.run("pipe")
        await h.engine.mark_task(run_id, "always_fails", "success")
        assert (await h.store.get_run(run_id)).state == "failed"
        await h.engine.mark_run(run_id, "success")
        run = await h.store.get_run(run_id)
        states = await h.states(run_id)
        history = await h.store.run_history(run_id)
    assert run.state == "success"
    assert states["always_fails"] == "success"
    assert ("failed", "success", "marked success by a person") in [
        (r.from_state, r.to_state, r.reason) for r in history if r.ti_id is None]


async def test_a_queued_run_of_a_paused_dag_can_be_marked(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    write_dag("pipe.py", PIPELINE)
    async with start_engine() as h:
        await h.engine.set_paused("pipe", True)
        run_id = await h.trigger("pipe")
        await h.engine.mark_run(run_id, "success")
        assert await h.wait(run_id) == "success"
        assert await h.tis(run_id) == {}


@pytest.mark.usefixtures("pipeline")
async def test_refused_actions_name_what_is_wrong_and_write_nothing(
    start_engine: StartEngine,
) -> None:
    async with start_engine() as h:
        done, _ = await h.run("pipe")
        running = await h.trigger("slow")

        async def started() -> bool:
            return bool(await h.attempts(running, "wait_forever"))

        await wait_until(started, what="wait_forever started")
        before = await _history_count(h, done), await _history_count(h, running)
        with pytest.raises(NotFound, match="no task 'nope'"):
            await h.engine.clear(done, "nope")
        with pytest.raises(NotFound, match="no run 999"):
            await h.engine.mark_run(999, "success")
        with pytest.raises(InvalidInput, match="state must be one of") as bad:
            await h.engine.mark_task(done, "extract", "running")
        assert bad.value.field == "state"
        with pytest.raises(StateError, match=r"'wait_forever' of run \d+ is running"):
            await h.engine.clear(running, "wait_forever", downstream=True)
        with pytest.raises(StateError, match="one mapped instance"):
            await h.engine.clear(done, "extract", map_index=0)
        after = await _history_count(h, done), await _history_count(h, running)
        assert (await h.states(running))["after"] == "scheduled"
        await h.engine.mark_run(running, "failed")
        await h.wait(running)
    assert before == after


TIMEOUT = """
import asyncio
from datetime import timedelta
from dagd import DAG, task

with DAG("bounded", dagrun_timeout=timedelta(seconds=0.5)) as bounded:
    @task
    async def hangs():
        await asyncio.Event().wait()

    @task
    def sleeps_in_worker():
        import time
        time.sleep(600)

    @task
    async def never_starts():
        return 1

    hangs() >> never_starts()
    sleeps_in_worker()
"""


async def test_a_run_past_its_dagrun_timeout_fails_and_what_runs_is_stopped(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    write_dag("bounded.py", TIMEOUT)
    async with start_engine() as h:
        run_id = await h.trigger("bounded")
        assert await h.wait(run_id) == "failed"

        async def stopped() -> bool:  # the worker's end comes once its process is killed
            ends = [a.state for t in ("hangs", "sleeps_in_worker")
                    for a in await h.attempts(run_id, t)]
            return ends == ["failed", "failed"]

        await wait_until(stopped, what="both attempts ended")
        states = await h.states(run_id)
        hung = await h.attempts(run_id, "hangs")
        slept = await h.attempts(run_id, "sleeps_in_worker")
        history = await h.store.run_history(run_id)
    assert states == {"hangs": "failed", "sleeps_in_worker": "failed",
                      "never_starts": "skipped"}
    why = "the run took longer than its dagrun_timeout (0.5s)"
    assert [(a.state, a.error) for a in hung + slept] == [
        ("failed", f"stopped: {why}"), ("failed", f"stopped: {why}")]
    assert ("running", "failed", why) in [
        (r.from_state, r.to_state, r.reason) for r in history if r.ti_id is None]


def test_dagrun_timeout_must_be_a_positive_duration() -> None:
    from dagd import DAG
    from dagd.errors import DagDefinitionError

    with pytest.raises(DagDefinitionError, match="dagrun_timeout must be a positive") as bad:
        DAG("d", dagrun_timeout=-1)
    assert bad.value.field == "dagrun_timeout"


async def test_the_dagrun_timeout_holds_across_a_restart(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    write_dag("bounded.py", TIMEOUT.replace("seconds=0.5", "seconds=1.5"))
    async with start_engine() as h:
        run_id = await h.trigger("bounded")

        async def started() -> bool:
            return bool(await h.attempts(run_id, "hangs"))

        await wait_until(started, what="the run started")
    async with start_engine() as h:  # a new engine on the same rows: recovery
        assert await h.wait(run_id) == "failed"
        history = await h.store.run_history(run_id)
    assert ("running", "failed", "the run took longer than its dagrun_timeout (1.5s)") in [
        (r.from_state, r.to_state, r.reason) for r in history if r.ti_id is None]


@pytest.mark.usefixtures("pipeline")
async def test_a_mark_in_an_ended_run_reaches_the_changes_port_named(
    start_engine: StartEngine,
) -> None:
    from dagd.changes import TI

    async with start_engine() as h:
        run_id, _ = await h.run("pipe")
        with h.engine.changes.subscribe([TI]) as sub:
            await h.engine.mark_task(run_id, "always_fails", "success")
            changes = await sub.next()
    assert [(c.dag_id, c.state, dict(c.detail or {}).get("task_id")) for c in changes] == [
        ("pipe", "success", "always_fails")]
