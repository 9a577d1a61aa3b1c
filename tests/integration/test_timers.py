"""Timers end to end: a seconds-level cron, a wall clock set forward and back (no
duplicate, no miss), restarts, catch-up, and backfill; with the real engine and the
event ledger, and the clock injected where the test moves it."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from dagd.config import Settings
from dagd.errors import InvalidInput
from dagd.triggers import service as trigger_service
from dagd.triggers.service import TriggerService
from integration.harness import Harness, StartEngine, wait_until

pytestmark = pytest.mark.anyio

EVERY_SECOND = """
    from dagd import DAG, Cron, task

    @task
    async def tick(conf):
        return conf["logical_date"]

    with DAG("ticking", triggers=[Cron("* * * * * *")]):
        tick()
"""

QUARTERLY = """
    from dagd import DAG, Interval, task

    @task
    async def tick(conf):
        return conf["data_interval_end"]

    with DAG("quarter", triggers=[Interval(minutes=15)], catchup={catchup}):
        tick()
"""

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class FakeClock:
    """The wall clock, as the trigger service reads it; counts its reads."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.now

    async def passes(self, n: int = 4) -> None:
        """Wait until the service has looked at the clock `n` more times."""
        target = self.reads + n
        await wait_until(lambda: self.reads >= target, what="the timers to look again")


@pytest.fixture(autouse=True)
def quick_clock_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    # The service looks at the (fake) clock every 20 ms instead of every 30 s.
    monkeypatch.setattr(trigger_service, "CLOCK_CHECK", 0.02)


async def logical_dates(h: Harness, dag_id: str) -> list[str]:
    return sorted(r.logical_date or "" for r in await h.store.list_runs(dag_id, limit=1000))


async def test_a_seconds_level_cron_fires_every_second_without_duplicates(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trigger_service, "CLOCK_CHECK", 30.0)  # the real clock, real sleeps
    write_dag("ticking.py", EVERY_SECOND)
    async with start_engine() as h, anyio.create_task_group() as tg:
        await tg.start(TriggerService(h.engine.intake, h.engine.changes).run)

        async def three_runs() -> bool:
            return len(await h.store.list_runs("ticking")) >= 3

        await wait_until(three_runs, deadline=10, what="three runs")
        dates = [datetime.fromisoformat(d) for d in await logical_dates(h, "ticking")]
        events = await h.store.list_events("ticking")
        tg.cancel_scope.cancel()
    assert len(dates) == len(set(dates))
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(dates)} == {1.0}
    assert {e.kind for e in events} == {"cron"}
    assert all(e.outcome == "run_created" for e in events)


async def test_the_wall_clock_set_forward_then_back_neither_misses_nor_repeats(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("quarter.py", QUARTERLY.replace("{catchup}", "False"))
    clock = FakeClock(T0)
    async with start_engine() as h, anyio.create_task_group() as tg:
        await tg.start(TriggerService(h.engine.intake, h.engine.changes, clock=clock).run)
        await clock.passes()
        assert await logical_dates(h, "quarter") == []  # a new timer does not run the past
        clock.now = T0 + timedelta(hours=1)  # set forward an hour, while running

        async def four() -> bool:
            return len(await h.store.list_runs("quarter")) == 4

        await wait_until(four, what="the four quarters the jump passed")
        clock.now = T0 + timedelta(minutes=5)  # and back: nothing fires again
        await clock.passes()
        clock.now = T0 + timedelta(hours=1, minutes=5)
        await clock.passes()
        assert len(await h.store.list_runs("quarter")) == 4
        clock.now = T0 + timedelta(hours=1, minutes=15)

        async def five() -> bool:
            return len(await h.store.list_runs("quarter")) == 5

        await wait_until(five, what="the next quarter")
        dates = await logical_dates(h, "quarter")
        tg.cancel_scope.cancel()
    starts = [T0 + timedelta(minutes=15 * k) for k in range(5)]
    assert dates == [s.isoformat() for s in starts]


@pytest.mark.parametrize(("catchup", "expected"), [(False, 1), (True, 4)])
async def test_after_a_restart_missed_fires_follow_catchup_and_none_repeats(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    catchup: bool, expected: int,
) -> None:
    write_dag("quarter.py", QUARTERLY.replace("{catchup}", str(catchup)))
    clock = FakeClock(T0 + timedelta(minutes=15))
    async with start_engine() as h, anyio.create_task_group() as tg:
        await tg.start(TriggerService(h.engine.intake, h.engine.changes, clock=clock).run)
        await clock.passes()
        clock.now = T0 + timedelta(minutes=30)  # one fire while running

        async def one() -> bool:
            return len(await h.store.list_runs("quarter")) == 1

        await wait_until(one, what="a first run")
        tg.cancel_scope.cancel()
    clock.now = T0 + timedelta(hours=1, minutes=30)  # down for an hour: four fires missed
    async with start_engine() as h, anyio.create_task_group() as tg:
        await tg.start(TriggerService(h.engine.intake, h.engine.changes, clock=clock).run)

        async def caught_up() -> bool:
            return len(await h.store.list_runs("quarter")) == 1 + expected

        await wait_until(caught_up, what="the missed runs")
        await clock.passes()
        assert len(await h.store.list_runs("quarter")) == 1 + expected
        dates = await logical_dates(h, "quarter")
        tg.cancel_scope.cancel()
    assert len(dates) == len(set(dates))
    assert dates[-1] == (T0 + timedelta(hours=1, minutes=15)).isoformat()  # the latest


async def test_backfill_queues_each_logical_date_in_range_once(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("quarter.py", QUARTERLY.replace("{catchup}", "False"))
    async with start_engine() as h:
        first = await h.engine.intake.backfill(
            "quarter", start="2026-11-01T00:00:00+00:00", end="2026-11-01T01:00:00+00:00")
        again = await h.engine.intake.backfill(
            "quarter", start="2026-11-01T00:00:00+00:00", end="2026-11-01T01:00:00+00:00")
        # 00:00 .. 01:00 inclusive; the second time, nothing new: the same five runs
        assert len(first.queued) == 5 and first.existing == []
        assert again.queued == [] and again.existing == first.queued
        for run_id in first.queued:
            assert await h.wait(run_id) == "success"
        runs = await h.store.list_runs("quarter")
        assert len(runs) == 5 and {r.run_type for r in runs} == {"backfill"}
        [earliest] = [r for r in runs if r.conf["data_interval_end"].startswith("2026-11-01T00:15")]
        assert earliest.logical_date == "2026-11-01T00:00:00+00:00"


NIGHTLY = """
    from dagd import DAG, Cron, task

    @task
    async def load(conf):
        return conf["logical_date"]

    with DAG("nightly", triggers=[Cron("0 2 * * *", timezone="Europe/Paris")]):
        load()
"""


async def test_a_backfill_of_dates_covers_whole_days_in_the_timers_timezone(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    """What an Airflow user means by `--start 2026-11-01 --end 2026-11-03` on a daily
    02:00 Paris cron: three runs, for Nov 1, 2 and 3 (each fires the next night)."""
    write_dag("nightly.py", NIGHTLY)
    async with start_engine() as h:
        done = await h.engine.intake.backfill("nightly", start="2026-11-01", end="2026-11-03")
        assert done.logical_dates == ["2026-11-01T01:00:00+00:00", "2026-11-02T01:00:00+00:00",
                                      "2026-11-03T01:00:00+00:00"]  # 02:00 CET
        assert len(done.queued) == 3
        runs = sorted(await h.store.list_runs("nightly"), key=lambda r: r.id)
        assert [r.conf["data_interval_end"] for r in runs] == [
            "2026-11-02T01:00:00+00:00", "2026-11-03T01:00:00+00:00",
            "2026-11-04T01:00:00+00:00"]
        # A naive time is the timer's too: 02:00 Paris on Nov 2 is one logical date.
        one = await h.engine.intake.backfill("nightly", start="2026-11-02T02:00",
                                             end="2026-11-02T02:00")
        assert (one.queued, one.existing) == ([], [runs[1].id])


@pytest.mark.parametrize(("start", "end", "message"), [
    ("0001-01-01", "2026-11-03", "start must be between the years 1970 and 9998"),
    ("2026-11-01", "9999-12-31", "end must be between the years 1970 and 9998"),
    ("2026-11-05", "2026-11-01", "end is before start"),
    ("1970-01-01", "2026-11-03",
     "the range holds more than 10000 runs of cron:0 2 * * * Europe/Paris "
     "([server] max_backfill_runs)"),
    ("yesterday", "2026-11-03", "start is not an ISO date or datetime: 'yesterday'"),
])
async def test_a_backfill_range_that_cannot_be_run_is_refused_by_name(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    start: str, end: str, message: str,
) -> None:
    write_dag("nightly.py", NIGHTLY)
    async with start_engine() as h:
        with pytest.raises(InvalidInput, match=re.escape(message)):
            await h.engine.intake.backfill("nightly", start=start, end=end)
        assert await h.store.list_runs("nightly") == []


async def test_the_most_runs_of_one_backfill_is_configured(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("nightly.py", NIGHTLY)
    async with start_engine(replace(settings, max_backfill_runs=2)) as h:
        with pytest.raises(InvalidInput, match=r"more than 2 runs"):
            await h.engine.intake.backfill("nightly", start="2026-11-01", end="2026-11-03")
        assert await h.store.list_runs("nightly") == []
        done = await h.engine.intake.backfill("nightly", start="2026-11-01", end="2026-11-02")
        assert len(done.queued) == 2


LEAP = """
    from dagd import DAG, Cron, task

    @task
    async def load():
        return None

    with DAG("leap", triggers=[Cron("0 2 29 2 *")]):
        load()
"""


async def test_a_backfill_whose_next_fire_is_past_year_9999_is_refused(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("leap.py", LEAP)
    async with start_engine() as h:
        with pytest.raises(InvalidInput, match=r"reaches past what cron:0 2 29 2 \* can fire"):
            await h.engine.intake.backfill("leap", start="9996-01-01", end="9998-12-31")
        assert await h.store.list_runs("leap") == []


ENDING_AIRFLOW = """
    from datetime import datetime, timedelta
    from airflow import DAG
    from airflow.operators.python import PythonOperator

    with DAG("ending", schedule=timedelta(minutes=15), start_date=datetime(2026, 11, 24, 12),
             end_date=datetime(2026, 11, 24, 12, 30), catchup=True):
        PythonOperator(task_id="tick", python_callable=lambda: None)
"""


async def test_an_airflow_end_date_stops_the_timer_and_bounds_a_backfill(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    """No run dated after end_date (12:30 UTC): neither from the timer, however far the
    clock jumps, nor from a backfill whose range passes it."""
    write_dag("ending.py", ENDING_AIRFLOW)
    clock = FakeClock(T0)
    ends = [(T0 + timedelta(minutes=m)).isoformat() for m in (0, 15, 30)]
    async with start_engine() as h, anyio.create_task_group() as tg:
        await tg.start(TriggerService(h.engine.intake, h.engine.changes, clock=clock).run)
        await clock.passes()
        clock.now = T0 + timedelta(hours=3)

        async def three() -> bool:
            return len(await h.store.list_runs("ending")) == 3

        await wait_until(three, what="the runs dated up to the end date")
        clock.now = T0 + timedelta(hours=5)
        await anyio.sleep(0.2)  # the ended timer sleeps: it neither reads nor fires
        assert await logical_dates(h, "ending") == ends
        back = await h.engine.intake.backfill(
            "ending", start="2026-11-24T11:00:00+00:00", end="2026-11-24T14:00:00+00:00")
        tg.cancel_scope.cancel()
    assert back.logical_dates == [(T0 + timedelta(minutes=m)).isoformat()
                                  for m in (-60, -45, -30, -15, 0, 15, 30)]
