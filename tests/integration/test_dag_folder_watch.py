"""The daemon's DAG folder watcher, on a real folder, store and engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from dagd.config import Settings
from dagd.daemon import DagFolder
from dagd.scheduler.loop import Engine
from dagd.store import Store
from integration.harness import wait_until

pytestmark = pytest.mark.anyio

ONE = """
from dagd import DAG, task


@task
async def work():
    return None


with DAG("{dag_id}"):
    work()
"""


async def test_a_dag_file_written_before_the_watcher_is_armed_is_loaded(
    write_dag: Callable[[str, str], Path], settings: Settings
) -> None:
    """A file that lands between a load and the moment the watch starts makes no event:
    the watcher, once armed, compares the folder with what the load found."""
    write_dag("first.py", ONE.format(dag_id="first"))
    store = await Store.open(settings.db_path, synchronous="normal")
    try:
        engine = Engine(store, settings)
        folder = DagFolder(settings, store, engine)
        await folder.load()
        assert set(engine.dags) == {"first"}
        write_dag("second.py", ONE.format(dag_id="second"))  # no watcher yet
        async with anyio.create_task_group() as tg:
            tg.start_soon(folder.watch)
            await wait_until(lambda: set(engine.dags) == {"first", "second"}, deadline=10,
                             what="the DAG written before the watch to be loaded")
            # Armed and caught up: a file written now is seen as a change.
            write_dag("third.py", ONE.format(dag_id="third"))
            await wait_until(lambda: "third" in engine.dags, deadline=10,
                             what="the DAG written while watching to be loaded")
            folder.stop_watching.set()
    finally:
        await engine.executor.aclose()
        await store.close()
