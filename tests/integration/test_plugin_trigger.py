"""A trigger added by a plugin: its events go through the ledger like any other, start
runs with their payload as conf, and count once by their dedup key, across restarts."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from dagd import plugins
from dagd.triggers.service import TriggerService
from integration.harness import StartEngine, cli_headers, wait_until

pytestmark = pytest.mark.anyio

PLUGIN = """
    import anyio
    from dagd.triggers.base import Trigger

    class CountdownTrigger(Trigger):
        kind = "countdown"

        def __init__(self, name, n):
            self.name, self.n = name, n

        @property
        def source(self):
            return f"countdown:{self.name}"

        async def watch(self, emit):
            for i in range(self.n):
                await emit({"i": i}, dedup_key=f"tick-{i}")
            await emit({"i": "done"})  # no key: each start adds one, to show it finished
            await anyio.sleep_forever()
"""

DAG_FILE = """
    from dagd import DAG, task
    from dagd.plugins import CountdownTrigger

    @task
    async def show(conf):
        return conf["i"]

    with DAG("counted", triggers=[CountdownTrigger("c", 3)]):
        show()
"""


@pytest.fixture
def plugin_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "countdown.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.setenv("DAGD_PLUGINS_FOLDER", str(folder))
    assert plugins.load(folder) == []
    return folder


async def test_a_plugin_trigger_starts_runs_once_per_event_across_restarts(
    plugin_folder: Path, write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("counted.py", DAG_FILE)
    for round_ in (1, 2):  # the second engine, on the same database, emits the same events
        async with start_engine() as h, anyio.create_task_group() as tg:
            await tg.start(TriggerService(h.engine.intake, h.engine.changes).run)

            async def finished(expected: int = 3 + round_) -> bool:
                return len(await h.store.list_events("counted")) == expected

            await wait_until(finished, what="the trigger's events")
            runs = await h.store.list_runs("counted")
            ticks = sorted(r.conf["i"] for r in runs if r.conf["i"] != "done")
            assert ticks == [0, 1, 2]  # keyed events counted once, across the restart
            assert {r.run_type for r in runs} == {"countdown"}
            for run in runs:
                assert await h.wait(run.id) == "success"
            tg.cancel_scope.cancel()


BROKEN_PLUGIN = """
    from dagd.triggers.base import Trigger

    class BrokenTrigger(Trigger):
        kind = "broken"
        starts = 0

        async def watch(self, emit):
            BrokenTrigger.starts += 1
            raise ConnectionError(f"queue unreachable (start {BrokenTrigger.starts})")
"""

BROKEN_DAG = """
    from dagd import DAG, task
    from dagd.plugins import BrokenTrigger

    @task
    async def never():
        return None

    with DAG("listens", triggers=[BrokenTrigger()]):
        never()
"""


async def test_a_failing_trigger_backs_off_and_the_api_health_says_why(
    tmp_path: Path, write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aiohttp
    from aiohttp import web

    from dagd.store import Store
    from dagd.supervise import Supervisor
    from dagd.web.app import create_app

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text(textwrap.dedent(BROKEN_PLUGIN))
    monkeypatch.setenv("DAGD_PLUGINS_FOLDER", str(folder))
    assert plugins.load(folder) == []
    write_dag("listens.py", BROKEN_DAG)
    waits: list[float] = []
    resume = anyio.Event()

    async def sleep(seconds: float) -> None:  # the backoff, held until the test looks
        waits.append(seconds)
        await resume.wait()

    supervisor = Supervisor(sleep=sleep)
    async with start_engine() as h, anyio.create_task_group() as tg:
        await tg.start(TriggerService(h.engine.intake, h.engine.changes,
                                      supervisor=supervisor).run)
        await wait_until(lambda: bool(waits), what="the first backoff")
        reader = await Store.open(h.settings.db_path, readonly=True)
        runner = web.AppRunner(create_app(h.engine, reader, supervisor=supervisor))
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            async with aiohttp.ClientSession(headers=cli_headers(h.settings)) as session, \
                    session.get(f"http://{host}:{port}/api/v1/health") as response:
                health = await response.json()
        finally:
            await runner.cleanup()
            await reader.close()
        tg.cancel_scope.cancel()
    assert response.status == 200
    assert health["status"] == "degraded"
    [broken] = [t for t in health["tasks"] if t["name"] == "trigger broken"]
    assert broken["state"] == "backing_off"
    assert broken["failures"] == 1
    assert broken["last_error"] == "ConnectionError: queue unreachable (start 1)"
    assert waits == [1.0]
    ok = [t for t in health["tasks"] if t["name"] != "trigger broken"]
    assert ok and all(t["state"] == "running" for t in ok)  # timers, file moves
