"""Retention on a real SQLite file: pruning by age and by count, in batches, never a run
that is not finished, logs deleted, nothing left pointing at a pruned row."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from dagd.changes import Changes
from dagd.config import Settings
from dagd.errors import NotFound
from dagd.scheduler.pruner import Pruner
from dagd.scheduler.retention import DAY, Holds
from dagd.states import RunState
from dagd.store import Store
from dagd.store.retention import RunsPruned
from integration.harness import StartEngine, wait_until
from integration.retention_rows import count, dangling, finished_runs, running_run

pytestmark = pytest.mark.anyio

NOW = 1_900_000_000.0  # a fixed "now": the rows' times are set relative to it


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    s = await Store.open(settings.db_path, synchronous="normal")
    try:
        yield s
    finally:
        await s.close()


def pruner(store: Store, settings: Settings, **retention: Any) -> Pruner:
    configured = replace(settings, **{f"retention_{k}": v for k, v in retention.items()})
    return Pruner(store, configured, holds=Holds(), changes=Changes(), clock=lambda: NOW)


def runs_of(path: Path, dag_id: str) -> list[tuple[int, str]]:
    import sqlite3
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id, state FROM run WHERE dag_id = ? ORDER BY id",
                          (dag_id,)).fetchall()
    finally:
        db.close()


def log_files(logs_dir: Path) -> set[Path]:
    return set(logs_dir.rglob("*.log")) if logs_dir.exists() else set()


async def test_finished_runs_older_than_the_age_go_with_everything_they_own(
    store: Store, settings: Settings,
) -> None:
    logs = settings.logs_dir
    old = await finished_runs(store, logs, dag_id="etl", n=30, ended_at=NOW - 10 * DAY)
    failed = await finished_runs(store, logs, dag_id="etl", n=5, ended_at=NOW - 9 * DAY,
                                 state=RunState.FAILED)
    stuck = await running_run(store, dag_id="etl", at=NOW - 20 * DAY)  # old, still running
    recent = await finished_runs(store, logs, dag_id="etl", n=5, ended_at=NOW - 1 * DAY)
    kept_logs = {p for p in log_files(logs) if any(f"/run_{r}/" in str(p) for r in recent)}
    assert len(log_files(logs)) == (30 + 5 + 5) * 2

    report = await pruner(store, settings, max_age_days=5).prune()

    assert report.rows["runs"] == 35
    assert report.rows["task_instances"] == report.rows["attempts"] == 35 * 2
    assert report.rows["xcoms"] == 35 * 2
    assert report.rows["log_files"] == 35 * 2
    assert [r for r, _ in runs_of(settings.db_path, "etl")] == [stuck, *recent]
    assert log_files(logs) == kept_logs
    # The pruned runs' folders are gone too, not left empty.
    assert not any((logs / "etl" / f"run_{r}").exists() for r in old + failed)
    assert dangling(settings.db_path) == dict.fromkeys(dangling(settings.db_path), 0)
    # Their events went with them (older than the age, their runs gone), but for the
    # webhook's newest key; the recent runs' events stay.
    assert count(settings.db_path, "SELECT count(*) FROM event") == 1 + 5
    assert "35 runs" in report.line() and "70 log files" in report.line()

    again = await pruner(store, settings, max_age_days=5).prune()
    assert not again  # nothing more: a second pass prunes nothing


async def test_each_dag_keeps_its_newest_runs_and_never_a_running_one(
    store: Store, settings: Settings,
) -> None:
    logs = settings.logs_dir
    stuck = await running_run(store, dag_id="a", at=NOW - 3600)  # oldest of "a"
    for dag_id in ("a", "b", "c"):
        await finished_runs(store, logs, dag_id=dag_id, n=12, ended_at=NOW - 60)
    few = await finished_runs(store, logs, dag_id="d", n=3, ended_at=NOW - 60)

    report = await pruner(store, settings, max_runs_per_dag=5).prune()

    assert report.rows["runs"] == (13 - 5 - 1) + 7 + 7  # "a": its running run stays
    a = runs_of(settings.db_path, "a")
    assert a[0] == (stuck, "running") and len(a) == 1 + 5
    for dag_id in ("b", "c"):
        assert len(runs_of(settings.db_path, dag_id)) == 5
    assert [r for r, _ in runs_of(settings.db_path, "d")] == few
    assert dangling(settings.db_path) == dict.fromkeys(dangling(settings.db_path), 0)
    # Events are pruned by age only (they deduplicate deliveries): all stay here.
    assert count(settings.db_path, "SELECT count(*) FROM event") == 3 * 12 + 3


async def test_a_transaction_deletes_at_most_batch_size_rows(
    store: Store, settings: Settings,
) -> None:
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=40, ended_at=NOW - 10 * DAY,
                        tasks=3)
    big = await finished_runs(store, settings.logs_dir, dag_id="etl", n=1,
                              ended_at=NOW - 10 * DAY, tasks=40)
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=1, ended_at=NOW)
    p = pruner(store, settings, max_age_days=1, batch_size=50)
    sizes: list[tuple[list[int], int]] = []
    prune_runs = p.retention.prune_runs

    async def counted(ids: list[int]) -> RunsPruned:
        done = await prune_runs(ids)
        sizes.append((sorted(done.runs), sum(done.counts.values())))
        return done

    p.retention.prune_runs = counted  # type: ignore[method-assign]
    report = await p.prune()

    assert report.rows["runs"] == 41
    # A 3-task run is 1 + 3 + 3 + 3 rows (it, its instances, attempts, XComs) plus its
    # 3 history rows (created, started, ended): 13, so 3 runs to a transaction (39).
    assert [n for ids, n in sizes if big[0] not in ids] == [39] * 13 + [13]
    assert all(n <= 50 for ids, n in sizes if big[0] not in ids)
    [(alone, rows)] = [(ids, n) for ids, n in sizes if big[0] in ids]
    assert alone == big and rows > 50  # bigger than a batch: it goes alone
    assert report.transactions == 13 + 1 + 1 + 1  # and one for the events
    assert report.longest > 0


async def test_a_run_that_owes_a_notification_waits_until_it_is_sent(
    store: Store, settings: Settings,
) -> None:
    [owing] = await finished_runs(store, settings.logs_dir, dag_id="etl", n=1,
                                  ended_at=NOW - 10 * DAY)
    batch = store.batch()
    batch.now = NOW - 10 * DAY
    batch.queue_notification(dag_id="etl", run_id=owing, ti_id=None, notifier="ops",
                             event="run_failed", payload={})
    await store.commit(batch)
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=1, ended_at=NOW)

    p = pruner(store, settings, max_age_days=1)
    assert not await p.prune()
    [note] = await store.list_notifications("etl")
    await store.notification_sent(note.id)  # sent now: a run's notification goes with it
    report = await p.prune()
    assert (report.rows["runs"], report.rows["notifications"]) == (1, 1)
    assert await store.list_notifications("etl") == []


async def test_old_events_and_sent_notifications_go_but_not_what_a_trigger_still_asks(
    store: Store, settings: Settings,
) -> None:
    old = NOW - 10 * DAY
    batch = store.batch()
    batch.now = old
    for minute in range(3):  # a timer fired three times; it resumes from the newest
        batch.record_event(kind="cron", source="cron:0 * * * *", dag_id="etl", payload={},
                           outcome="dag_paused", dedup_key=f"2030-01-01T0{minute}:00+00:00")
    batch.record_event(kind="file", source="file:/in", dag_id="etl", payload={},
                       outcome="dag_paused", dedup_key="/in/a.csv|1|2")  # a file seen
    batch.record_event(kind="manual", source="cli", dag_id="etl", payload={},
                       outcome="dag_paused")
    for i in range(2):
        batch.queue_notification(dag_id="etl", run_id=None, ti_id=None, notifier="ops",
                                 event="x", payload={"i": i})
    await store.commit(batch)
    for _ in range(300):  # a flood of refusals, ten days ago
        await store.record_refusal(kind="webhook", source="webhook:h", dag_id=None,
                                   outcome="unauthorized", detail="bad signature",
                                   payload={}, run_id=None, at=old)
    sent, failed = await store.list_notifications("etl")
    await store.notification_sent(sent.id)
    await store.notification_failed(failed.id, "refused", None)
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=1, ended_at=NOW)

    report = await pruner(store, settings, max_age_days=5).prune()

    assert (report.rows["events"], report.rows["notifications"]) == (2 + 1 + 1, 1)
    kinds = [(e.kind, e.dedup_key) for e in await store.list_events(limit=100)]
    assert ("cron", "2030-01-01T02:00+00:00") in kinds  # the timer's newest
    assert ("file", "/in/a.csv|1|2") in kinds
    assert not any(k in ("manual", "cron") for k, key in kinds
                   if key != "2030-01-01T02:00+00:00")
    assert not any(e.outcome == "unauthorized" for e in await store.list_events(limit=100))
    assert [n.state for n in await store.list_notifications("etl")] == ["failed"]


async def test_a_run_a_person_is_acting_on_is_not_pruned_and_the_other_way_round(
    store: Store, settings: Settings,
) -> None:
    a, b = await finished_runs(store, settings.logs_dir, dag_id="etl", n=2,
                               ended_at=NOW - 10 * DAY)
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=1, ended_at=NOW)
    p = pruner(store, settings, max_age_days=1)
    with p.holds.acting_on(a):
        report = await p.prune()
    assert report.rows["runs"] == 1
    assert next(r for r, _ in runs_of(settings.db_path, "etl")) == a
    with p.holds.pruning_runs([a]) as free, pytest.raises(NotFound, match="being pruned"):
        assert free == [a]
        with p.holds.acting_on(a):
            pass
    assert b not in [r for r, _ in runs_of(settings.db_path, "etl")]


async def test_a_pass_prunes_ten_thousand_runs_in_short_transactions(
    store: Store, settings: Settings,
) -> None:
    n = 10_000
    started = time.perf_counter()
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=n, ended_at=NOW - 10 * DAY,
                        tasks=1, per_batch=2000)
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=1, ended_at=NOW)
    filled = time.perf_counter() - started
    report = await pruner(store, settings, max_age_days=1).prune()
    rows = sum(v for k, v in report.rows.items() if k != "log_files")
    print(f"\n{n} runs written in {filled:.1f} s; pruned {rows:,} rows and "
          f"{report.rows['log_files']:,} log files in {report.seconds:.1f} s "
          f"({rows / report.seconds:,.0f} rows/s), {report.transactions} transactions, "
          f"the longest {report.longest * 1000:.1f} ms")
    assert report.rows["runs"] == n
    assert report.longest < 2.0  # generous: a 500-row transaction takes milliseconds
    assert dangling(settings.db_path) == dict.fromkeys(dangling(settings.db_path), 0)


PAIR = """
from dagd import DAG, task

with DAG("pair") as pair:
    @task
    async def first():
        return 1

    first()
"""


async def test_a_pruned_runs_event_replays_with_its_payload_and_a_clear_is_a_404(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", PAIR)
    async with start_engine() as h:
        first, _ = await h.run("pair", {"n": 1})
        await h.run("pair", {"n": 2})
        event_id = (await h.store.get_run(first)).event_id
        assert event_id is not None
        p = Pruner(h.store, replace(h.settings, retention_max_runs_per_dag=1),
                   holds=h.engine.holds, changes=h.engine.changes)
        assert (await p.prune()).rows["runs"] == 1
        with pytest.raises(NotFound, match=f"no run {first}"):
            await h.engine.clear(first, "first")
        again = await h.engine.intake.replay(event_id)
        assert await h.wait(again) == "success"
        assert (await h.store.get_run(again)).conf == {"n": 1}
        assert h.engine.changes.pruned.rows["runs"] == 1
        assert h.engine.changes.pruned.through > 0  # a stream from before it reloads


async def test_a_reload_that_turns_retention_on_starts_pruning_at_once(
    store: Store, settings: Settings,
) -> None:
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=3, ended_at=NOW - 10 * DAY)
    await finished_runs(store, settings.logs_dir, dag_id="etl", n=1, ended_at=NOW)
    p = pruner(store, settings)  # [retention] keeps everything: the task waits
    assert not p.enabled
    async with anyio.create_task_group() as tg:
        tg.start_soon(p.run)
        await anyio.lowlevel.checkpoint()
        assert p.changes.pruned.passes == 0
        p.configure(replace(settings, retention_max_age_days=1.0, retention_interval=3600.0))
        await wait_until(lambda: p.changes.pruned.rows.get("runs") == 3, what="a pass")
        tg.cancel_scope.cancel()
    assert p.changes.pruned.through >= NOW  # a stream from before the reload reloads
