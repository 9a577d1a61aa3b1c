"""make bench, web: the pages with 10,000 runs and 100,000 task instances in the
database, and the live stream's latency from commit to receipt at 200 changes/s.

Pages: a database made by the store's migrations is filled with direct SQL (5 DAGs of
10 tasks, 2,000 runs each, every task instance with its attempt), then the real app
(`create_app`, authentication on, the CLI's bearer token) serves it on 127.0.0.1. The
server time of each page is measured by an outermost middleware (the handler and every
other middleware, auth included), over repeated requests; `/api/v1/health`, which reads
nothing, is the baseline measured beside them. Stream: a real engine runs one-task runs
at 200 changes/s; a client in another process reads `/api/v1/stream` and notes when each
message arrives; each batch's commit time is taken when `Store.commit` returns.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
from aiohttp import web

from dagd.accounts import read_cli_token
from dagd.authoring.loader import load_folder
from dagd.config import Settings
from dagd.daemon import sync_dags
from dagd.scheduler.loop import Engine
from dagd.store import Batch, Store
from dagd.web.app import create_app

DAGS, TASKS, RUNS_PER_DAG = 5, 10, 2_000  # 10,000 runs, 100,000 task instances
TARGET_MS = 50.0
STREAM_RATE = 200  # changes per second
CHANGES_PER_RUN = 9  # a one-task run: event, run x3, ti x3, attempt x2


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def dag_source() -> str:
    out = ["from dagd import DAG, task", ""]
    for d in range(DAGS):
        out += [f'with DAG("web_{d}") as web_{d}:', "    prev = None",
                f"    for i in range({TASKS}):",
                '        @task(task_id=f"t{i}")',
                "        async def step():", "            return None", "",
                "        current = step()",
                "        if prev is not None:", "            prev >> current",
                "        prev = current", ""]
    out += ['with DAG("tick") as tick:', "    @task", "    async def one():",
            "        return None", "", "    one()", ""]
    return "\n".join(out)


def fill(path: Path) -> None:
    """10,000 finished runs, each with its 10 task instances and attempts, and the
    runs' history rows, in one transaction of plain inserts."""
    db = sqlite3.connect(path)
    runs, tis, attempts, history = [], [], [], []
    start = time.time() - DAGS * RUNS_PER_DAG * 60.0
    ti_id = 0
    for n in range(DAGS * RUNS_PER_DAG):
        run_id, dag_id, at = n + 1, f"web_{n % DAGS}", start + n * 60.0
        failed = n % 17 == 0
        state = "failed" if failed else "success"
        runs.append((run_id, dag_id, state, "cron", "{}", at, at + 1, at + 30))
        history += [(run_id, None, None, "queued", at, "cron run created"),
                    (run_id, None, "queued", "running", at + 1, None),
                    (run_id, None, "running", state, at + 30, None)]
        for t in range(TASKS):
            ti_id += 1
            ti_state = "failed" if failed and t == TASKS - 1 else "success"
            began = at + 1 + t * 2
            tis.append((ti_id, run_id, f"t{t}", ti_state, began, began, began + 1.5,
                        began + 1.5))
            attempts.append((ti_id, ti_id, ti_state, began, began + 1.5,
                             f"/nowhere/{dag_id}/run_{run_id}/t{t}/attempt_1.log"))
    with db:
        db.executemany("INSERT INTO run (id, dag_id, state, run_type, conf, created_at, "
                       "started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", runs)
        db.executemany("INSERT INTO task_instance (id, run_id, task_id, map_index, state, "
                       "try_number, max_tries, queued_at, started_at, ended_at, updated_at) "
                       "VALUES (?, ?, ?, -1, ?, 1, 1, ?, ?, ?, ?)", tis)
        db.executemany("INSERT INTO attempt (id, ti_id, try_number, state, started_at, "
                       "ended_at, log_path) VALUES (?, ?, 1, ?, ?, ?, ?)", attempts)
        db.executemany("INSERT INTO state_history (run_id, ti_id, from_state, to_state, "
                       "at, reason) VALUES (?, ?, ?, ?, ?, ?)", history)
    db.execute("ANALYZE")
    db.close()


@asynccontextmanager
async def served(tmp: Path) -> AsyncIterator[tuple[Engine, str, dict[str, str],
                                                     list[float]]]:
    """The app over the filled database: (engine, base URL, auth headers, the list the
    timing middleware appends each request's server milliseconds to)."""
    folder = tmp / "dags"
    folder.mkdir(exist_ok=True)
    (folder / "web.py").write_text(dag_source())
    settings = Settings(dags_folder=folder, data_dir=tmp / "data", port=0)
    bag = load_folder(folder)
    assert not bag.errors, [e.message for e in bag.errors]
    store = await Store.open(settings.db_path, synchronous=settings.synchronous)
    await sync_dags(store, bag, set())
    await store.close()
    fill(settings.db_path)
    store = await Store.open(settings.db_path, synchronous=settings.synchronous)
    reader = await Store.open(settings.db_path, readonly=True)
    engine = Engine(store, settings)
    engine.set_dags(bag.dags, set())
    await engine.boot()
    timings: list[float] = []

    @web.middleware
    async def timing(request: web.Request, handler: Any) -> web.StreamResponse:
        began = time.perf_counter()
        try:
            return await handler(request)
        finally:
            timings.append((time.perf_counter() - began) * 1000)

    app = create_app(engine, reader)
    app.middlewares.insert(0, timing)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            token = read_cli_token(settings.data_dir)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            try:
                yield engine, f"http://{host}:{port}", headers, timings
            finally:
                await runner.cleanup()
                await engine.stop(0.0)
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await reader.close()
            await store.close()


async def page_times(http: aiohttp.ClientSession, url: str, timings: list[float],
                     repeats: int) -> dict[str, Any]:
    server: list[float] = []
    total: list[float] = []
    status = 0
    for _ in range(repeats + 1):  # the first one warms the caches: not counted
        began = time.perf_counter()
        async with http.get(url) as resp:
            status = resp.status
            await resp.read()
        total.append((time.perf_counter() - began) * 1000)
        server.append(timings[-1])
    server, total = server[1:], total[1:]
    return {"status": status, "requests": repeats,
            "median_ms": statistics.median(server), "p95_ms": pct(server, 0.95),
            "round_trip_median_ms": statistics.median(total)}


async def pages(quick: bool) -> dict[str, Any]:
    repeats = 30 if quick else 200
    with tempfile.TemporaryDirectory(prefix="dagd-bench-web-") as name:
        async with served(Path(name)) as (_engine, base, headers, timings), \
                aiohttp.ClientSession(headers=headers) as http:
            deep = RUNS_PER_DAG * DAGS // 2
            routes = {
                "baseline: GET /api/v1/health": "/api/v1/health",
                "runs list, first page": "/api/v1/runs?limit=50",
                f"runs list, deep page (before={deep})": f"/api/v1/runs?limit=50&before={deep}",
                "a DAG's runs": "/api/v1/dags/web_0/runs?limit=50",
                f"a DAG's runs, deep page (before={deep})":
                    f"/api/v1/dags/web_0/runs?limit=50&before={deep}",
                "run detail": f"/api/v1/runs/{deep}",
                "UI: DAG page with its grid": "/dags/web_0",
                "metrics (counts by DAG and state)": "/metrics",
            }
            out: dict[str, Any] = {}
            for label, path in routes.items():
                figure = await page_times(http, base + path, timings, repeats)
                if figure["status"] == 404:
                    figure = {"status": 404, "note": "the route does not exist yet: skipped"}
                figure["path"] = path
                out[label] = figure
    return {"runs": DAGS * RUNS_PER_DAG, "task_instances": DAGS * RUNS_PER_DAG * TASKS,
            "target_ms": TARGET_MS, "auth": "on (the CLI's bearer token)", "pages": out}


READER_SCRIPT = textwrap.dedent("""
    import socket, sys, time
    host, port, token, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    sock = socket.create_connection((host, port))
    sock.sendall(f"GET /api/v1/stream HTTP/1.1\\r\\nHost: {host}\\r\\n"
                 f"Authorization: Bearer {token}\\r\\n\\r\\n".encode())
    buf, seen = b"", 0
    out = sys.stdout
    while seen < count:
        data = sock.recv(65536)
        now = time.time()
        if not data:
            break
        buf += data
        while b"\\n\\n" in buf:
            msg, buf = buf.split(b"\\n\\n", 1)
            for line in msg.split(b"\\n"):
                if line.startswith(b"id: ") and b"event: " in msg:
                    out.write(f"{line[4:].decode()} {now!r}\\n")
                    seen += 1
            if b"retry:" in msg:
                out.write("ready\\n")
                out.flush()
    out.flush()
""")


async def stream_latency(quick: bool) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    runs = int(seconds * STREAM_RATE / CHANGES_PER_RUN)
    with tempfile.TemporaryDirectory(prefix="dagd-bench-sse-") as name:
        async with served(Path(name)) as (engine, base, headers, _timings):
            committed: dict[float, float] = {}
            commit = engine.store.commit

            async def timed_commit(batch: Batch) -> None:
                await commit(batch)
                committed[batch.now] = time.time()

            engine.store.commit = timed_commit  # type: ignore[method-assign]
            host, port = base.removeprefix("http://").split(":")
            token = headers.get("Authorization", " ").split(" ", 1)[1]
            expected = runs * CHANGES_PER_RUN
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", READER_SCRIPT, host, port, token, str(expected),
                stdout=subprocess.PIPE)
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"
            began = time.perf_counter()
            for i in range(runs):  # paced: STREAM_RATE changes a second
                await engine.trigger("tick")
                delay = began + (i + 1) * CHANGES_PER_RUN / STREAM_RATE - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
            with anyio.fail_after(60):
                output, _ = await proc.communicate()
            elapsed = time.perf_counter() - began
    latencies = []
    for line in output.decode().split("\n"):
        if " " not in line:
            continue
        cursor, received = line.split(" ")
        at = float(cursor.rsplit(":", 1)[0])
        if at in committed:
            latencies.append((float(received) - committed[at]) * 1000)
    return {"changes": len(latencies), "rate_per_s": round(len(latencies) / elapsed),
            "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
            "max_ms": max(latencies), "target_ms": TARGET_MS}


def web_figures(quick: bool) -> dict[str, Any]:
    return {"pages": anyio.run(pages, quick), "stream": anyio.run(stream_latency, quick)}


def web_markdown(w: dict[str, Any]) -> list[str]:
    p = w["pages"]
    lines = [f"| web, {p['runs']:,} runs and {p['task_instances']:,} task instances "
             f"(server time, auth {p['auth'].split(' ')[0]}) | median | p95 |",
             "| --- | --- | --- |"]
    for label, f in p["pages"].items():
        if "median_ms" in f:
            lines.append(f"| {label} | {f['median_ms']:.1f} ms | {f['p95_ms']:.1f} ms |")
        else:
            lines.append(f"| {label} | {f['note']} | |")
    s = w["stream"]
    return [*lines, "", f"The live stream at {s['rate_per_s']} changes/s: from commit to "
            f"receipt by a client in another process, p50 {s['p50_ms']:.1f} ms, p99 "
            f"{s['p99_ms']:.1f} ms ({s['changes']:,} changes).", ""]


if __name__ == "__main__":
    print(orjson.dumps(web_figures("--quick" in sys.argv),
                       option=orjson.OPT_INDENT_2).decode())
