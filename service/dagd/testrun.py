"""`dagd test DAG`: run one DAG once, in the foreground, with a live progress table.

It uses the real engine on a throw-away data directory, so it never touches the
daemon's database and works whether or not a daemon runs.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from dagd.check import find, load_dags
from dagd.config import Settings
from dagd.executors.logs import install_capture
from dagd.kinds.connections import set_connections
from dagd.scheduler.loop import Engine
from dagd.store import Store
from dagd.tables import state_text, ti_table


async def run_test(settings: Settings, dag_id: str, conf: dict[str, Any], console: Console) -> bool:
    bag = await anyio.to_thread.run_sync(load_dags, settings)
    dag = find(bag, dag_id)
    with tempfile.TemporaryDirectory(prefix="dagd-test-") as tmp:
        test_settings = replace(settings, data_dir=Path(tmp))
        store = await Store.open(test_settings.db_path, synchronous="normal")
        try:
            install_capture()
            set_connections(test_settings.connections)
            engine = Engine(store, test_settings)
            engine.set_dags({dag_id: dag}, set())
            async with anyio.create_task_group() as tg:
                await tg.start(engine.serve)
                run_id = await engine.trigger(dag_id, conf=conf, source="dagd test")
                done = anyio.Event()

                async def wait() -> None:
                    await engine.wait_for_run(run_id)
                    done.set()

                tg.start_soon(wait)
                title = escape(f"{dag_id} [run {run_id}]")
                with Live(console=console, refresh_per_second=8, transient=False) as live:
                    while not done.is_set():
                        live.update(ti_table(title, await store.list_tis(run_id),
                                             width=console.width))
                        with anyio.move_on_after(0.125):
                            await done.wait()
                    live.update(ti_table(title, await store.list_tis(run_id),
                                         width=console.width))
                await engine.stop(0)
                tg.cancel_scope.cancel()
            console.print()
            run = await store.get_run(run_id)
            for ti in await store.list_tis(run_id):
                if ti.state in ("failed", "up_for_retry"):
                    for attempt in await store.list_attempts(ti.id):
                        console.rule(f"{ti.task_id} try {attempt.try_number}: {attempt.error}")
                        path = anyio.Path(attempt.log_path)
                        if await path.exists():
                            console.print((await path.read_text(errors="replace"))[-4000:],
                                          markup=False, highlight=False)
            console.print(f"{dag_id} run {run_id}: {state_text(run.state)}")
            return run.state == "success"
        finally:
            await store.close()
