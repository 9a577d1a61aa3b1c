"""Integration fixtures: a real engine on a real SQLite file, real worker processes.

`start_engine()` is an async context manager: it loads the DAG files written with
`write_dag`, opens the store on a copy of a schema built once per session, boots the
engine and serves it in a task group; on exit it stops the engine and closes the store.
Every test also checks that it left no worker process behind.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from pathlib import Path

import anyio
import pytest

from dagd.authoring.loader import load_folder
from dagd.config import Settings
from dagd.daemon import sync_dags
from dagd.executors import logs
from dagd.kinds.connections import set_connections
from dagd.scheduler.loop import Engine
from dagd.store import Store
from integration.harness import Harness, StartEngine, worker_children


@pytest.fixture(autouse=True)
def no_leftover_workers() -> Iterator[None]:
    """Each test must end every worker process it started."""
    before = set(worker_children())
    yield
    left = set(worker_children()) - before
    assert not left, f"worker process(es) left running: {sorted(left)}"


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the full schema, built once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "dagd.db"

    async def build() -> None:
        store = await Store.open(path, synchronous="normal")
        await store.close()

    anyio.run(build)
    return path


@contextmanager
def task_output_captured() -> Iterator[None]:
    """Route print/logging of in-loop and thread tasks into their attempt logs.

    The daemon calls `install_capture()` once. Under pytest, sys.stdout is swapped at
    the start of each test phase, so it is installed here, inside the test, and undone.
    """
    saved = sys.stdout, sys.stderr, logs._installed
    root = logging.getLogger()
    handlers = list(root.handlers)
    logs._installed = False
    logs.install_capture()
    try:
        yield
    finally:
        sys.stdout, sys.stderr, logs._installed = saved
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)


@pytest.fixture
def start_engine(settings: Settings, template_db: Path) -> StartEngine:
    """`async with start_engine(settings, capture=True) as h:` runs an engine over the
    DAG folder; `capture` routes in-loop and thread tasks' output to their logs."""

    @asynccontextmanager
    async def start(
        custom: Settings | None = None, *, capture: bool = False
    ) -> AsyncIterator[Harness]:
        s = custom or settings
        if not s.db_path.exists():
            s.db_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template_db, s.db_path)
        bag = load_folder(s.dags_folder)
        assert not bag.errors, [e.message for e in bag.errors]
        assert all(d.tasks for d in bag.dags.values()), "a DAG without tasks: forgot a call?"
        store = await Store.open(s.db_path, synchronous=s.synchronous)
        try:
            await sync_dags(store, bag, set())
            set_connections(s.connections)  # what the daemon does at start
            engine = Engine(store, s)
            engine.set_dags(bag.dags, set())
            await engine.boot()
            try:
                with task_output_captured() if capture else nullcontext():
                    async with anyio.create_task_group() as tg:
                        await tg.start(engine.serve)
                        try:
                            yield Harness(s, store, engine, bag)
                        finally:
                            await engine.stop(0.0)
                            tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # The test body runs inside the task group: show its error unwrapped.
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    return start
