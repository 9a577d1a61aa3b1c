"""Helpers shared by the integration tests: the Harness over a running engine, and
condition waits with deadlines."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from dagd.accounts import read_cli_token
from dagd.authoring.loader import DagBag
from dagd.config import Settings
from dagd.errors import NotFound
from dagd.notify.outbox import Outbox
from dagd.scheduler.loop import Engine
from dagd.store import Store
from dagd.store.rows import AttemptRow, HistoryRow, TaskInstanceRow
from dagd.web.app import create_app

RUN_DEADLINE = 10.0  # seconds: far above any run in this tier, far below pytest's timeout


@dataclass
class Harness:
    """A running engine and its store, with the reads the tests share."""

    settings: Settings
    store: Store
    engine: Engine
    bag: DagBag

    async def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> int:
        return await self.engine.trigger(dag_id, conf=conf)

    async def wait(self, run_id: int, deadline: float = RUN_DEADLINE) -> str:
        with anyio.fail_after(deadline):
            return await self.engine.wait_for_run(run_id)

    async def run(
        self, dag_id: str, conf: dict[str, Any] | None = None, deadline: float = RUN_DEADLINE
    ) -> tuple[int, str]:
        """Trigger a run and wait, with a deadline, for its final state."""
        run_id = await self.trigger(dag_id, conf)
        return run_id, await self.wait(run_id, deadline)

    async def tis(self, run_id: int) -> dict[str, TaskInstanceRow]:
        return {ti.task_id: ti for ti in await self.store.list_tis(run_id)}

    async def states(self, run_id: int) -> dict[str, str]:
        return {task_id: ti.state for task_id, ti in (await self.tis(run_id)).items()}

    async def attempts(self, run_id: int, task_id: str) -> list[AttemptRow]:
        """The task instance's attempts; none while the run has not created it yet."""
        try:
            ti = await self.store.get_ti(run_id, task_id)
        except NotFound:
            return []
        return await self.store.list_attempts(ti.id)

    async def ti_history(self, run_id: int, task_id: str) -> list[HistoryRow]:
        ti = await self.store.get_ti(run_id, task_id)
        return [h for h in await self.store.run_history(run_id) if h.ti_id == ti.id]

    async def xcom(self, run_id: int, task_id: str) -> Any:
        ti = await self.store.get_ti(run_id, task_id)
        return await self.store.get_xcom(ti.id)

    def module_global(self, dag_id: str, name: str) -> Any:
        """A global of the DAG file as this process imported it (e.g. an Event to set)."""
        task = next(iter(self.bag.dags[dag_id].tasks.values()))
        return task.python_callable.__globals__[name]  # type: ignore[attr-defined]


def cli_headers(settings: Settings) -> dict[str, str]:
    """The header `dagd` commands send: the CLI token that create_app (auth on) wrote in
    the data directory. Call it once the app is made."""
    token = read_cli_token(settings.data_dir)
    assert token is not None, f"no CLI token file in {settings.data_dir}"
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def web_server(h: Harness) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """The daemon's web app (create_app over a read-only store) on 127.0.0.1, port 0:
    a client session that sends the CLI's token, and the server's root URL."""
    reader = await Store.open(h.settings.db_path, readonly=True)
    runner = web.AppRunner(create_app(h.engine, reader), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                         headers=cli_headers(h.settings)) as session:
            yield session, f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        await reader.close()


async def read_text(path: str | Path) -> str:
    """A log file's text; empty if the attempt never wrote one."""
    file = anyio.Path(path)
    return await file.read_text(errors="replace") if await file.exists() else ""


StartEngine = Callable[..., AbstractAsyncContextManager[Harness]]


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool], deadline: float = 10.0, what: str = "condition"
) -> None:
    """Poll a condition (sync or async) every 20 ms until it holds; fail after `deadline`."""
    try:
        with anyio.fail_after(deadline):
            # The rows and /proc have no change notification: poll, within the deadline.
            while True:
                held = check()
                if inspect.isawaitable(held):
                    held = await held
                if held:
                    return
                await anyio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out after {deadline}s waiting for {what}")


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_children() -> list[int]:
    """Pids of live `dagd.executors.worker` processes of this process's pools: the fork
    server (a child), the workers it forked (its children) and anything they forked, at
    any depth; and any of them orphaned since (re-parented to init): their command line
    is the fork server's, whose `--parent` is this process."""
    me = str(os.getpid()).encode()
    children: dict[int, list[int]] = {}
    workers: set[int] = set()
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        if b"dagd.executors.worker" in cmdline:
            workers.add(pid)
            argv = cmdline.split(b"\0")
            if b"--parent" in argv[:-1] and argv[argv.index(b"--parent") + 1] == me:
                found.add(pid)
    below = list(children.get(os.getpid(), []))
    while below:
        pid = below.pop()
        if pid in workers:
            found.add(pid)
        below.extend(children.get(pid, []))
    return sorted(found)


@asynccontextmanager
async def watching(
    start_engine: StartEngine, settings: Settings | None = None, *, capture: bool = False
) -> AsyncIterator[Harness]:
    """An engine over the DAGs folder, with the trigger service watching its drops."""
    from dagd.triggers.service import TriggerService

    async with start_engine(settings, capture=capture) as h:
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(TriggerService(h.engine.intake, h.engine.changes).run)
                try:
                    yield h
                finally:
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # show the test's own error unwrapped
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


@contextlib.contextmanager
def killed_at_exit(pids: list[int]) -> Iterator[list[int]]:
    """Whatever the test finds alive is killed at the end, pass or fail."""
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


@asynccontextmanager
async def outbox_running(h: Harness) -> AsyncIterator[Outbox]:
    """The outbox sending what the engine's commits queue, while the block runs."""
    outbox = Outbox(h.store, lambda: h.engine.dags)
    h.engine.notification_listeners.append(outbox.wake)
    async with anyio.create_task_group() as tg:
        await tg.start(outbox.run)
        try:
            yield outbox
        finally:
            tg.cancel_scope.cancel()
