"""How the CLI changes things: through the running daemon's HTTP API, or, when no
daemon runs, directly in the database while holding the data directory's lock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from dagd.authoring.loader import load_folder
from dagd.config import Settings
from dagd.errors import DaemonUnavailable, DagdError, NotFound
from dagd.lock import DataDirLock, Holder, daemon_running
from dagd.store import Store


async def api(holder: Holder, method: str, path: str, body: Any = None) -> Any:
    host = "127.0.0.1" if holder.host in ("0.0.0.0", "") else holder.host
    url = f"http://{host}:{holder.port}{path}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(
                method,
                url,
                data=orjson.dumps(body) if body is not None else None,
                headers={"Content-Type": "application/json", "X-Dagd-Source": "cli"},
            ) as resp,
        ):
            data = await resp.read()
            payload = orjson.loads(data) if data else {}
            if resp.status >= 400:
                error = DagdError(payload.get("message", f"HTTP {resp.status}"))
                error.status = resp.status
                raise error
            return payload
    except aiohttp.ClientError as exc:
        raise DaemonUnavailable(
            f"the daemon (pid {holder.pid}) holds the data directory but its API at {url} "
            f"does not answer: {exc}"
        ) from None


async def trigger(settings: Settings, dag_id: str, conf: dict[str, Any]) -> tuple[int, bool]:
    """Queue a run; returns (run id, whether a daemon took it)."""
    holder = daemon_running(settings.lock_path)
    if holder is not None:
        data = await api(holder, "POST", f"/api/v1/dags/{dag_id}/runs", {"conf": conf})
        return int(data["run_id"]), True
    bag = load_folder(settings.dags_folder)
    if dag_id not in bag.dags:
        raise NotFound(f"no such DAG in {settings.dags_folder}", dag_id=dag_id)
    with DataDirLock(settings.lock_path):
        store = await Store.open(settings.db_path, synchronous=settings.synchronous)
        try:
            batch = store.batch()
            event_id = batch.record_event(kind="manual", source="cli", dag_id=dag_id,
                                          payload=conf, outcome="run_created")
            run_id = batch.create_run(dag_id=dag_id, run_type="manual", conf=conf,
                                      event_id=event_id,
                                      logical_date=datetime.now(UTC).isoformat())
            await store.commit(batch)
        finally:
            await store.close()
    return run_id, False


async def set_paused(settings: Settings, dag_id: str, paused: bool) -> bool:
    holder = daemon_running(settings.lock_path)
    verb = "pause" if paused else "unpause"
    if holder is not None:
        await api(holder, "POST", f"/api/v1/dags/{dag_id}/{verb}")
        return True
    with DataDirLock(settings.lock_path):
        store = await Store.open(settings.db_path, synchronous=settings.synchronous)
        try:
            await store.set_paused(dag_id, paused)
        finally:
            await store.close()
    return False
