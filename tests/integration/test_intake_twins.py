"""Deliveries of one key in flight together: the later one waits for the first one's
commit and repeats its outcome; it is never answered before the event is stored, and
never with a 500. Driven through the intake's `Desk` seam, with a real SQLite store,
so the tick that records them runs exactly when the test says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from dagd.config import Settings
from dagd.events import DUPLICATE, RUN_CREATED, Delivery, Outcome
from dagd.scheduler.intake import Intake, Pending
from dagd.store import Store
from dagd.store.rows import RunRow

pytestmark = pytest.mark.anyio


class HeldDesk:
    """An engine whose next tick runs only when `tick()` is called."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.serving = True
        self.unhealthy: str | None = None
        self.held: list[Pending] = []
        self.submitted = anyio.Event()

    @property
    def dags(self) -> dict[str, Any]:
        return {"twins": object()}

    @property
    def paused(self) -> set[str]:
        return set()

    def clock(self) -> float:
        return 1000.0

    def submit(self, items: list[Pending]) -> None:
        self.held.extend(items)
        self.submitted.set()

    def enqueue(self, row: RunRow) -> None:
        pass

    async def tick(self) -> None:
        batch = self.store.batch()
        items, self.held = self.held, []
        for item in items:
            item.record(batch, set())
        await self.store.commit(batch)
        for item in items:
            item.done.set()


async def test_a_twin_in_flight_waits_for_the_first_ones_commit(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "dagd.db", synchronous="normal")
    try:
        desk = HeldDesk(store, Settings(data_dir=tmp_path))
        intake = Intake(desk)
        delivery = Delivery(kind="webhook", source="webhook:twins", payload={"n": 1},
                            dedup_key="k-1", digest="d1")
        got: list[Outcome] = []

        async def send() -> None:
            [outcome] = await intake.deliver(delivery, ["twins"], {"n": 1})
            got.append(outcome)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await desk.submitted.wait()
            tg.start_soon(send)  # the same key while the first is not committed
            await anyio.wait_all_tasks_blocked()
            assert got == []  # neither answered before the commit
            await desk.tick()
        first, second = sorted(got, key=lambda o: o.outcome != RUN_CREATED)
        assert (first.outcome, second.outcome) == (RUN_CREATED, DUPLICATE)
        assert first.run_id == second.run_id is not None
        assert second.event_id == first.event_id  # it points at the first, stored
        events = sorted(await store.list_events("twins"), key=lambda e: e.id)
        assert (events[0].id, events[0].outcome) == (first.event_id, "run_created")
        assert [e.outcome for e in events] == ["run_created", "duplicate"]  # ledgered
    finally:
        await store.close()


async def test_a_retry_after_not_recorded_yet_finds_the_first_still_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Told "not recorded yet" (503) while the database could not be written, the
    sender retries with the same key: it must not queue the delivery a second time."""
    from dagd.errors import StorageUnavailable
    from dagd.scheduler import intake as intake_module

    monkeypatch.setattr(intake_module, "UNWRITABLE_WAIT", 0.1)
    store = await Store.open(tmp_path / "dagd.db", synchronous="normal")
    try:
        desk = HeldDesk(store, Settings(data_dir=tmp_path))
        intake = Intake(desk)
        delivery = Delivery(kind="webhook", source="webhook:twins", payload={"n": 1},
                            dedup_key="k-1", digest="d1")

        async def unwritable_for_a_moment() -> None:
            await desk.submitted.wait()
            desk.unhealthy = "disk full"

        async with anyio.create_task_group() as tg:
            tg.start_soon(unwritable_for_a_moment)
            with pytest.raises(StorageUnavailable, match="not recorded yet"):
                await intake.deliver(delivery, ["twins"], {"n": 1})
        desk.unhealthy = None  # writable again; the held tick has not run yet
        desk.submitted = anyio.Event()
        got: list[Outcome] = []
        async with anyio.create_task_group() as tg:
            async def retry() -> None:
                got.extend(await intake.deliver(delivery, ["twins"], {"n": 1}))

            tg.start_soon(retry)
            await desk.submitted.wait()  # the retry has been through the intake
            assert len(desk.held) == 1  # the first one only: not queued twice
            await desk.tick()
        [outcome] = got
        assert outcome.outcome == DUPLICATE and outcome.run_id is not None
        assert len(await store.list_runs("twins")) == 1
    finally:
        await store.close()
