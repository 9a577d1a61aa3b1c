"""`dagd doctor`'s check of the Dask cluster (`[executors.dask]`): configured where a DAG
asks for it, `distributed` installed, the scheduler reached and its workers counted.
A check never raises for what it finds: a broken thing is a FAIL result."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import anyio

from dagd.config import Settings
from dagd.config_dask import LOCAL, security_args
from dagd.doctor import FAIL, OK, WARN, Result

MAX_LISTED = 5


def dask_dags(dags: Sequence[Any]) -> list[str]:
    """The loaded DAGs with a task that asks for executor="dask"."""
    return sorted(dag.dag_id for dag in dags if dag.tasks_on_dask)


async def check_dask(settings: Settings, dags: Sequence[Any], *, wait: float = 5.0) -> Result:
    users = dask_dags(dags)
    named = ", ".join(users[:MAX_LISTED]) + (" ..." if len(users) > MAX_LISTED else "")
    address = settings.dask_address
    if not address:
        if users:
            return Result("dask", FAIL, f"DAG(s) {named} have tasks with executor=\"dask\", "
                          "and no cluster is configured: their attempts fail",
                          "set [executors.dask] address (\"tcp://scheduler:8786\", or "
                          "\"local\")")
        return Result("dask", OK, "not used: no [executors.dask], no task with "
                      "executor=\"dask\"")
    if importlib.util.find_spec("distributed") is None:
        return Result("dask", FAIL, f"[executors.dask] address = {address!r}, and Dask's "
                      "distributed package is not installed", "pip install 'dagd[dask]'")
    why = f" (for {named})" if users else " (no DAG uses it yet)"
    if address == LOCAL:
        return Result("dask", OK, f"a LocalCluster the daemon starts itself{why}")
    return await _reach(settings, why, wait)


async def _reach(settings: Settings, why: str, wait: float) -> Result:
    import distributed

    args = security_args(settings)
    address = settings.dask_address
    try:
        with anyio.fail_after(wait * 2):
            client = await distributed.Client(
                address, asynchronous=True, timeout=wait, set_as_default=False,
                security=distributed.Security(**args) if args else None)
            try:
                info = await client.scheduler.identity()
            finally:
                await client.close()
    except Exception as exc:
        return Result("dask", FAIL, f"the Dask scheduler at {address}{why} cannot be "
                      f"reached: {type(exc).__name__}: {exc}",
                      "start it (`dask scheduler`), or check [executors.dask] address and "
                      "TLS settings; meanwhile tasks with executor=\"dask\" wait queued")
    workers = len(info.get("workers") or {})
    if not workers:
        return Result("dask", WARN, f"the Dask scheduler at {address} answers{why}, with "
                      "no worker connected: tasks with executor=\"dask\" wait",
                      f"start workers: dask worker {address}")
    return Result("dask", OK, f"the Dask scheduler at {address} answers{why}, with "
                  f"{workers} worker(s)")
