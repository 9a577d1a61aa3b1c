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
from integration.harness import StartEngine, wait_until

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
