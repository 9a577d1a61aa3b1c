"""Retention's cost: a pass pruning 10,000 finished runs (3 tasks each, their logs), on
the real engine, store and web app, and what the API and the scheduler see meanwhile.

In one process and one run: first the API under load (4 clients reading runs, events
and health, each 10 ms after its last answer) and a no-op DAG triggered every 50 ms,
with no pruning; then the same load while one retention pass prunes the 10,000 runs
(`--idle`: the pass alone, no load). Figures: the pass's rows/s, its
transactions and the longest one, and the API's and the runs' p50/p99 in both phases.
Not a test. Usage: python bench/retention.py [--runs N] [--batch-size N] [--idle]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import anyio
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dagd.authoring.loader import load_folder  # noqa: E402
from dagd.config import Settings  # noqa: E402
from dagd.daemon import sync_dags  # noqa: E402
from dagd.scheduler.loop import Engine  # noqa: E402
from dagd.scheduler.pruner import Pruner  # noqa: E402
from dagd.scheduler.retention import DAY  # noqa: E402
from dagd.store import Store  # noqa: E402
from dagd.web.app import create_app  # noqa: E402
from integration.retention_rows import finished_runs  # noqa: E402

NOOP = """
from dagd import DAG, task

with DAG("tick") as tick:
    @task
    async def noop():
        return None

    noop()
"""
PATHS = ("/api/v1/runs?limit=50", "/api/v1/events?limit=50", "/api/v1/health")


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


async def load(base: str, until: anyio.Event, api: list[float], runs: list[float],
               engine: Engine) -> None:
    async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:

        async def client(i: int) -> None:
            while not until.is_set():
                started = time.perf_counter()
                async with http.get(base + PATHS[i % len(PATHS)]) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                api.append(time.perf_counter() - started)
                await anyio.sleep(0.01)

        async def ticker() -> None:
            while not until.is_set():
                started = time.perf_counter()
                run_id = await engine.trigger("tick")
                await engine.wait_for_run(run_id)
                runs.append(time.perf_counter() - started)
                await anyio.sleep(0.05)

        for i in range(4):
            tg.start_soon(client, i)
        tg.start_soon(ticker)


async def main(n: int, batch_size: int, idle: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "dags").mkdir()
        (root / "dags" / "tick.py").write_text(NOOP)
        settings = Settings(dags_folder=root / "dags", data_dir=root / "data", port=0,
                            auth_enabled=False, synchronous="full",
                            retention_max_age_days=1.0, retention_batch_size=batch_size)
        store = await Store.open(settings.db_path, synchronous=settings.synchronous)
        started = time.perf_counter()
        await finished_runs(store, settings.logs_dir, dag_id="old", n=n,
                            ended_at=time.time() - 10 * DAY, tasks=3, per_batch=1000)
        print(f"{n:,} finished runs (3 tasks each) written in "
              f"{time.perf_counter() - started:.1f} s")
        bag = load_folder(settings.dags_folder)
        await sync_dags(store, bag, set())
        engine = Engine(store, settings)
        engine.set_dags(bag.dags, set())
        await engine.boot()
        reader = await Store.open(settings.db_path, readonly=True)
        runner = web.AppRunner(create_app(engine, reader), access_log=None)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(engine.serve)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                host, port = runner.addresses[0][:2]
                base = f"http://{host}:{port}"
                figures = {}
                phases = ("idle",) if idle else ("without pruning", "during pruning")
                for phase in phases:
                    api: list[float] = []
                    runs: list[float] = []
                    done = anyio.Event()
                    async with anyio.create_task_group() as inner:
                        if phase != "idle":
                            inner.start_soon(load, base, done, api, runs, engine)
                        if phase == "without pruning":
                            await anyio.sleep(5.0)
                        else:
                            pruner = Pruner(store, replace(settings), holds=engine.holds,
                                            changes=engine.changes)
                            report = await pruner.prune()
                        done.set()
                    figures[phase] = (api, runs)
                rows = sum(v for k, v in report.rows.items() if k != "log_files")
                print(f"pass: {report.rows['runs']:,} runs, {rows:,} rows and "
                      f"{report.rows['log_files']:,} log files in {report.seconds:.2f} s: "
                      f"{rows / report.seconds:,.0f} rows/s; {report.transactions} "
                      f"transactions of at most {batch_size} rows, the longest "
                      f"{report.longest * 1000:.1f} ms")
                for phase, (api, runs) in figures.items() if not idle else ():
                    print(f"API {phase}: {len(api)} requests, {quantiles(api)}")
                    print(f"runs {phase}: {len(runs)} trigger-to-end, {quantiles(runs)}")
                await engine.stop(0.0)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()
                await reader.close()
                await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--idle", action="store_true", help="the pass alone, no load")
    args = parser.parse_args()
    anyio.run(main, args.runs, args.batch_size, args.idle)
