"""A database that cannot be written (SQLite's SQLITE_FULL, as on a full disk; made
here with `PRAGMA max_page_count`, a real limit of the real file): the daemon says so,
refuses new events with a 503 and Retry-After instead of accepting what it cannot keep,
retries the tick it could not commit, and carries on by itself once it can write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from dagd.errors import StorageUnavailable
from integration.harness import Harness, StartEngine, wait_until, web_server

pytestmark = pytest.mark.anyio

DAGS = """
from dagd import DAG, task

with DAG("etl"):
    @task
    async def load():
        return "loaded"

    load()
"""


@asynccontextmanager
async def api(h: Harness) -> AsyncIterator[Callable[..., Any]]:
    async with web_server(h) as (http, root):
        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
            async with http.request(method, f"{root}/api/v1{path}", json=body) as resp:
                return resp.status, await resp.json(), resp.headers
        yield call


async def pages(h: Harness, limit: int | None = None) -> int:
    """Set the database's page limit (None: to what it holds now); return the count."""
    writer = h.store._writer
    assert writer is not None

    def pragma() -> int:
        count = int(writer.execute("PRAGMA page_count").fetchone()[0])
        writer.execute(f"PRAGMA max_page_count = {limit or count}")
        return count

    result: int = await h.store._run(pragma)
    return result


async def test_a_full_database_refuses_new_events_and_recovers_by_itself(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("etl.py", DAGS)
    async with start_engine() as h, api(h) as call:
        status, health, _ = await call("GET", "/health")
        assert (status, health["status"]) == (200, "ok")
        await pages(h)  # no new page from now on: the runs below soon fill the last ones
        accepted: list[tuple[int, Any, Any]] = []
        room = anyio.Event()
        async with anyio.create_task_group() as tg:
            async def keep_triggering() -> None:
                while not room.is_set():  # until one waits on a tick that cannot commit
                    accepted.append(await call("POST", "/dags/etl/runs", {"conf": {}}))

            tg.start_soon(keep_triggering)
            seen: list[tuple[int, Any, Any]] = []

            async def unavailable() -> bool:
                seen.append(await call("GET", "/health"))
                return seen[-1][0] == 503

            await wait_until(unavailable, deadline=30, what="health 503")
            status, health, headers = seen[-1]
            assert health["status"] == "unavailable"
            assert headers["Retry-After"] == "5"
            assert "database or disk is full" in health["reason"]
            assert "bytes free on" in health["reason"]
            # A new event now gets a clear refusal at once, not a promise.
            status, refused, headers = await call("POST", "/dags/etl/runs", {"conf": {}})
            assert (status, refused["error"]) == (503, "storage_unavailable"), refused
            assert "not accepting events now" in refused["message"]
            assert headers["Retry-After"] == "5"
            with pytest.raises(StorageUnavailable, match="not accepting events now"):
                await h.engine.trigger("etl")
            waiting = len(accepted)
            room.set()
            await pages(h, 1_000_000)  # room again: the waiting tick commits
        assert len(accepted) == waiting + 1  # the one that waited got its answer
        assert all(status == 201 for status, _, _ in accepted), accepted
        run_ids = [created["run_id"] for _, created, _ in accepted]
        for run_id in run_ids:
            assert await h.wait(run_id) == "success"
        status, health, _ = await call("GET", "/health")
        assert (status, health["status"]) == (200, "ok")
        runs = await h.store.list_runs("etl", limit=10_000)
        assert sorted(r.id for r in runs) == sorted(run_ids)  # the refused ones never existed


async def test_a_delivery_waiting_on_an_unwritable_tick_is_told_so_within_bounds(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its tick is retried, so it may still be recorded: the answer says "not recorded
    yet", never a promise, and once the disk has room the run exists once."""
    from dagd.scheduler import intake

    monkeypatch.setattr(intake, "UNWRITABLE_WAIT", 0.3)
    write_dag("etl.py", DAGS)
    async with start_engine() as h:
        await pages(h)
        refused: list[StorageUnavailable] = []
        with anyio.fail_after(30):
            while not refused:  # until one lands in a tick that cannot be committed
                try:
                    await h.engine.trigger("etl")
                except StorageUnavailable as exc:
                    refused.append(exc)
        assert "not recorded yet" in str(refused[0])
        before = {r.id for r in await h.store.list_runs("etl", limit=10_000)}
        await pages(h, 1_000_000)

        async def settled() -> bool:
            return h.engine.unhealthy is None

        await wait_until(settled, what="the tick committed")
        runs = await h.store.list_runs("etl", limit=10_000)
        for run in runs:
            assert await h.wait(run.id) == "success"
        assert len(runs) - len(before) == 1  # the one that waited, recorded once


async def test_a_stop_while_the_database_cannot_be_written_keeps_to_the_grace_period(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    """The tick that cannot be committed is given up at the end of the grace period:
    no hang, no crash; what it held was not recorded, and the rows say so."""
    write_dag("etl.py", DAGS)
    async with start_engine() as h:
        await pages(h)

        async def stuck() -> bool:
            if h.engine.unhealthy is None:  # one more run, until a tick cannot commit
                with anyio.move_on_after(0.05):
                    try:
                        await h.engine.trigger("etl")
                    except StorageUnavailable:
                        pass
            return h.engine.unhealthy is not None

        await wait_until(stuck, deadline=30, what="a tick that cannot be committed")
        started = anyio.current_time()
        with anyio.fail_after(10):
            await h.engine.stop(1.0)
        took = anyio.current_time() - started
        assert took < 1.0 + 1.5, took
        await pages(h, 1_000_000)
        runs = await h.store.list_runs("etl", limit=10_000)
    assert all(r.state in ("queued", "running", "success") for r in runs)
