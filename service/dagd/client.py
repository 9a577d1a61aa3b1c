"""How the CLI changes things: through the running daemon's HTTP API, or, when no
daemon runs, directly in the database while holding the data directory's lock.

The HTTP client, the engine and the store are imported by the calls that use them, so
that importing this module (every `dagd` command does) costs next to nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from dagd.accounts import read_cli_token
from dagd.check import find, load_dags
from dagd.config import Settings
from dagd.errors import DaemonUnavailable, DagdError
from dagd.lock import DataDirLock, Holder, daemon_running

# Offline commands queue on the data directory's lock (another one holds it a moment).
OFFLINE_PATIENCE = 30.0

if TYPE_CHECKING:
    from dagd.scheduler.loop import Engine


async def api(holder: Holder, method: str, path: str, body: Any = None, *,
              raw: bool = False) -> Any:
    """The daemon's JSON answer (or, with `raw`, its body's bytes); its error, raised."""
    import aiohttp

    host = "127.0.0.1" if holder.host in ("0.0.0.0", "") else holder.host
    url = f"http://{host}:{holder.port}{path}"
    headers = {"Content-Type": "application/json", "X-Dagd-Source": "cli"}
    # The daemon's own token for this machine's commands: never a password to type.
    token = read_cli_token(holder.data_dir) if holder.data_dir is not None else None
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(
                method,
                url,
                data=orjson.dumps(body) if body is not None else None,
                headers=headers,
            ) as resp,
        ):
            data = await resp.read()
            if raw and resp.status < 400:
                return data
            payload = orjson.loads(data) if data else {}
            if resp.status >= 400:
                message = payload.get("message", f"HTTP {resp.status}")
                if resp.status == 401:
                    message += (f"; the CLI token file {holder.data_dir}/cli-token is "
                                "missing or stale: is this the daemon's data directory, "
                                "and may this user read it?")
                error = DagdError(message)
                error.status = resp.status
                raise error
            return payload
    except aiohttp.ClientError as exc:
        raise DaemonUnavailable(
            f"the daemon (pid {holder.pid}) holds the data directory but its API at {url} "
            f"does not answer: {exc}"
        ) from None


@asynccontextmanager
async def offline_engine(settings: Settings, dag_id: str | None = None) -> AsyncIterator[Engine]:
    """With no daemon running: the engine's intake on the database, under the data
    directory's lock, so an offline change takes the same path as a live one. The
    engine is not served: runs it queues start when `dagd run` starts. An unknown
    `dag_id` is refused before the data directory is touched."""
    from dagd.scheduler.loop import Engine
    from dagd.store import Store

    bag = await anyio.to_thread.run_sync(load_dags, settings)
    if dag_id is not None:
        find(bag, dag_id)
    with DataDirLock(settings.lock_path, patience=OFFLINE_PATIENCE):
        store = await Store.open(settings.db_path, synchronous=settings.synchronous)
        try:
            engine = Engine(store, settings)
            paused = {d.dag_id for d in await store.list_dags() if d.is_paused}
            engine.set_dags(bag.dags, paused)
            yield engine
        finally:
            await store.close()


async def trigger(settings: Settings, dag_id: str, conf: dict[str, Any]) -> tuple[int, bool]:
    """Queue a run; returns (run id, whether a daemon took it)."""
    holder = daemon_running(settings.lock_path)
    if holder is not None:
        data = await api(holder, "POST", f"/api/v1/dags/{dag_id}/runs", {"conf": conf})
        return int(data["run_id"]), True
    async with offline_engine(settings, dag_id) as engine:
        return await engine.intake.trigger(dag_id, conf=conf, source="cli"), False


async def replay(settings: Settings, event_id: int) -> tuple[int, bool]:
    holder = daemon_running(settings.lock_path)
    if holder is not None:
        data = await api(holder, "POST", f"/api/v1/events/{event_id}/replay")
        return int(data["run_id"]), True
    async with offline_engine(settings) as engine:
        return await engine.intake.replay(event_id, source="cli"), False


async def backfill(
    settings: Settings, dag_id: str, start: str, end: str
) -> tuple[dict[str, Any], bool]:
    """The API's answer (`run_ids` queued, `existing`, `logical_dates`) and whether a
    daemon gave it."""
    holder = daemon_running(settings.lock_path)
    if holder is not None:
        data = await api(holder, "POST", f"/api/v1/dags/{dag_id}/backfill",
                         {"start": start, "end": end})
        return data, True
    async with offline_engine(settings, dag_id) as engine:
        done = await engine.intake.backfill(dag_id, start=start, end=end)
        return done.describe(), False


async def set_paused(settings: Settings, dag_id: str, paused: bool) -> bool:
    holder = daemon_running(settings.lock_path)
    verb = "pause" if paused else "unpause"
    if holder is not None:
        await api(holder, "POST", f"/api/v1/dags/{dag_id}/{verb}")
        return True
    from dagd.store import Store

    with DataDirLock(settings.lock_path, patience=OFFLINE_PATIENCE):
        store = await Store.open(settings.db_path, synchronous=settings.synchronous)
        try:
            await store.set_paused(dag_id, paused)
        finally:
            await store.close()
    return False
