"""Where a DAG's tasks run and last ran, for `dagd dags show`: the executor each task
asks for (local, or Dask with its worker resources) and, from the database, where the
last attempt of each in the DAG's newest run ran (a Dask worker's address, a pid)."""

from __future__ import annotations

from typing import Any

import anyio

from dagd.config import Settings
from dagd.errors import DagdError


def executor_of(task: dict[str, Any]) -> str:
    """"local", or "dask" with the resources the task needs there ("dask GPU=1")."""
    if task.get("executor") != "dask":
        return "local"
    resources = task.get("resources") or {}
    wanted = " ".join(f"{name}={amount:g}" for name, amount in sorted(resources.items()))
    return f"dask {wanted}".strip()


async def last_ran_on(settings: Settings, dag_id: str) -> tuple[int | None, dict[str, str]]:
    """The DAG's newest run, and task id -> where its last attempt in it ran; (None, {})
    without a database or a run."""
    if not await anyio.Path(settings.db_path).exists():
        return None, {}
    from dagd.store import Store

    try:
        store = await Store.open(settings.db_path, readonly=True)
    except DagdError:
        return None, {}
    try:
        runs = await store.list_runs(dag_id, limit=1)
        if not runs:
            return None, {}
        run_id = runs[0].id
        task_of = {ti.id: ti.task_id for ti in await store.list_tis(run_id)
                   if ti.map_index < 0}
        places: dict[str, str] = {}
        for attempt in await store.run_attempts(run_id):  # by try: the last one stays
            task_id = task_of.get(attempt.ti_id)
            if task_id is not None:
                places[task_id] = (attempt.worker or
                                   (f"pid {attempt.pid}" if attempt.pid else "daemon"))
        return run_id, places
    finally:
        await store.close()
