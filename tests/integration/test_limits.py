"""Concurrency limits, read back from the attempt and run rows (never from sleeps)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from dagd.config import Settings
from dagd.store.rows import AttemptRow
from integration.harness import Harness, StartEngine, wait_until

pytestmark = pytest.mark.anyio

WIDE = """
import anyio
from dagd import DAG, task


async def work():
    await anyio.sleep(0.15)  # the work itself: long enough for attempts to overlap


def fan_out(dag_id, width=4, **limits):
    with DAG(dag_id, **limits) as d:
        for i in range(width):
            task(task_id=f"t{i}")(work)()
    return d


left = fan_out("left")
right = fan_out("right")
narrow = fan_out("narrow", max_active_tasks=1)
# One task: one result, one wake-up of the loop, so no stray tick hides a missing wake.
one_run = fan_out("one_run", width=1, max_active_runs=1)
"""


def peak(attempts: Iterable[AttemptRow]) -> int:
    """Most attempts running at one instant; an attempt that ends as another starts (in
    the same scheduler tick) does not overlap it."""
    events: list[tuple[float, int]] = []
    for a in attempts:
        assert a.ended_at is not None
        events += [(a.started_at, 1), (a.ended_at, -1)]
    running = highest = 0
    for _, delta in sorted(events):  # at equal times, ends (-1) sort before starts
        running += delta
        highest = max(highest, running)
    return highest


async def all_attempts(h: Harness, run_id: int) -> list[AttemptRow]:
    found: list[AttemptRow] = []
    for task_id in await h.tis(run_id):
        found += await h.attempts(run_id, task_id)
    return found


async def test_parallelism_caps_running_attempts_across_dags(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("wide.py", WIDE)
    async with start_engine(replace(settings, parallelism=2)) as h:
        left = await h.trigger("left")
        right = await h.trigger("right")
        assert await h.wait(left) == "success"
        assert await h.wait(right) == "success"
        attempts = await all_attempts(h, left) + await all_attempts(h, right)
    assert len(attempts) == 8
    assert peak(attempts) == 2


async def test_max_active_tasks_caps_one_dag_only(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("wide.py", WIDE)
    async with start_engine() as h:
        narrow = await h.trigger("narrow")
        free = await h.trigger("left")
        assert await h.wait(narrow) == "success"
        assert await h.wait(free) == "success"
        narrow_attempts = await all_attempts(h, narrow)
        free_attempts = await all_attempts(h, free)
    assert peak(narrow_attempts) == 1
    assert peak(free_attempts) == 4
    ordered = sorted(narrow_attempts, key=lambda a: a.started_at)
    for before, after in itertools.pairwise(ordered):
        assert before.ended_at is not None
        assert after.started_at >= before.ended_at


async def test_max_active_runs_keeps_a_second_run_queued_until_the_first_ends(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("wide.py", WIDE)
    async with start_engine() as h:
        first = await h.trigger("one_run")
        second = await h.trigger("one_run")
        assert await h.wait(first) == "success"
        # Nothing else happens in this engine: the first run's end must start the second.
        assert await h.wait(second, deadline=2.0) == "success"
        runs = [await h.store.get_run(first), await h.store.get_run(second)]
        history = [
            [(r.from_state, r.to_state, r.at) for r in await h.store.run_history(run.id)
             if r.ti_id is None]
            for run in runs
        ]
        first_attempts = await all_attempts(h, first)
        second_attempts = await all_attempts(h, second)
    assert runs[0].ended_at is not None and runs[1].started_at is not None
    # The second run was created while the first ran, and started only once it ended.
    assert runs[1].created_at <= runs[0].ended_at <= runs[1].started_at
    first_end = next(at for frm, to, at in history[0] if to == "success")
    second_start = next(at for frm, to, at in history[1] if to == "running")
    assert second_start >= first_end
    assert [(frm, to) for frm, to, _ in history[1]] == [
        (None, "queued"), ("queued", "running"), ("running", "success"),
    ]
    assert max(a.ended_at or 0.0 for a in first_attempts) <= min(
        a.started_at for a in second_attempts
    )


ORDERED = """
from dagd import DAG, task


async def work():
    return None


with DAG("ordered", max_active_tasks=3):
    start = task(task_id="start")(work)()
    # Names whose alphabetical order is not the written one.
    for name in ["zeta", "alpha", "t10", "t9", "mid", "b", "t100", "a2", "omega"]:
        start >> task(task_id=name)(work)()
"""


async def test_ready_tasks_start_in_the_order_the_dag_file_writes_them(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("ordered.py", ORDERED)
    async with start_engine() as h:
        run_id = await h.trigger("ordered")
        assert await h.wait(run_id) == "success"
        attempts = await all_attempts(h, run_id)
        tis = {ti.id: name for name, ti in (await h.tis(run_id)).items()}
    started = [tis[a.ti_id] for a in sorted(attempts, key=lambda a: a.id)]
    assert started == ["start", "zeta", "alpha", "t10", "t9", "mid", "b", "t100", "a2",
                       "omega"]


HELD = """
import anyio
from dagd import DAG, task

started = []
release = anyio.Event()


async def held():
    started.append(1)
    await release.wait()


with DAG("held", max_active_tasks=2_000):
    for i in range(700):
        task(task_id=f"t{i}")(held)()
"""


async def test_more_ready_tasks_than_a_tick_starts_all_start_while_none_ends(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    """A tick starts 500 attempts at most; with room for more, the next tick follows at
    once, not when something ends."""
    write_dag("held.py", HELD)
    async with start_engine(replace(settings, parallelism=2_000)) as h:
        run_id = await h.trigger("held")
        started = h.module_global("held", "started")
        try:
            await wait_until(lambda: len(started) == 700, deadline=20,
                             what="all 700 attempts to be running")
        finally:
            h.module_global("held", "release").set()
        assert await h.wait(run_id) == "success"
