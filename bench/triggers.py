"""make bench, triggers: webhook -> first task start, file drop -> task start, timer
lateness, and an idle daemon's CPU with 100 DAGs and their triggers.

Each runs a real `dagd run` subprocess on a temporary data directory (synchronous=FULL,
the default) and reads the attempts' start times from its database, read-only.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def daemon(dags: dict[str, str], *, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """A `dagd run` on these DAG files; yields {port, data, dags, pid}."""
    with tempfile.TemporaryDirectory(prefix="dagd-bench-") as tmp:
        folder = Path(tmp) / "dags"
        folder.mkdir()
        for name, source in dags.items():
            (folder / name).write_text(textwrap.dedent(source))
        data = Path(tmp) / "data"
        config = Path(tmp) / "dagd.toml"
        config.write_text("[core]\nlog_level = \"WARNING\"\n")
        log = open(Path(tmp) / "daemon.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagd.cli", "--config", str(config), "--dags-folder",
             str(folder), "--data-dir", str(data), "run", "--port", "0"],
            env={**os.environ, **(env or {})},
            stderr=log, stdout=subprocess.DEVNULL, text=True,
        )
        try:
            deadline = time.monotonic() + 30
            lock = data / "dagd.lock"
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    port = orjson.loads(lock.read_bytes())["port"]
                    break
                except (OSError, ValueError, KeyError):
                    time.sleep(0.05)
            else:
                raise RuntimeError("daemon did not start: "
                                   + (Path(tmp) / "daemon.log").read_text())
            yield {"port": port, "data": data, "dags": folder, "pid": proc.pid, "tmp": tmp}
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            log.close()


def started_at(data: Path, run_ids: list[int]) -> dict[int, float]:
    db = sqlite3.connect(f"file:{data / 'dagd.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT t.run_id, min(a.started_at) FROM attempt a "
            "JOIN task_instance t ON t.id = a.ti_id GROUP BY t.run_id"
        ).fetchall()
    finally:
        db.close()
    wanted = set(run_ids)
    return {r: s for r, s in rows if r in wanted}


WEBHOOK_DAG = """
    from dagd import DAG, Webhook, task

    @task
    async def noop():
        return None

    with DAG("hooked", triggers=[Webhook("bench", secret_env="BENCH_SECRET")],
             max_active_runs=10000, max_active_tasks=10000):
        noop()
"""


async def _post_at_rate(port: int, rate: float, seconds: float) -> list[tuple[float, int]]:
    sent: list[tuple[float, int]] = []
    url = f"http://127.0.0.1:{port}/hooks/bench"
    headers = {"Authorization": "Bearer bench-secret", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            t0 = time.time()
            async with session.post(url, data=orjson.dumps({"i": i}), headers=headers) as r:
                body = await r.json()
                sent.append((t0, body["run_id"]))

        tasks = []
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return sent


def webhook_latency(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with daemon({"hooked.py": WEBHOOK_DAG}, env={"BENCH_SECRET": "bench-secret"}) as d:
        for rate in (1, 50, 200):
            seconds = (3 if quick else 10) if rate > 1 else (5 if quick else 20)
            sent = asyncio.run(_post_at_rate(d["port"], rate, seconds))
            deadline = time.monotonic() + 30
            while True:
                starts = started_at(d["data"], [r for _, r in sent])
                if len(starts) == len(sent) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            lat = [(starts[r] - t0) * 1000 for t0, r in sent if r in starts]
            out[f"{rate}/s"] = {"p50_ms": statistics.median(lat), "p99_ms": pct(lat, 0.99),
                                "requests": len(sent)}
    return out


FILE_DAG = """
    from dagd import DAG, FileDrop, task

    @task
    async def noop():
        return None

    with DAG("dropped", triggers=[FileDrop("{folder}", pattern="*.csv", stable_for={window})],
             max_active_runs=1000):
        noop()
"""


def file_latency(quick: bool, window: float = 0.05) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dagd-bench-in-") as inbox:
        dag = FILE_DAG.format(folder=inbox, window=window)
        with daemon({"dropped.py": dag}) as d:
            stamps: dict[str, float] = {}
            for i in range(10 if quick else 40):
                tmp = Path(inbox) / f".f{i}.part"
                tmp.write_text(f"a,b\n{i},{i}\n")
                final = Path(inbox) / f"f{i}.csv"
                t0 = time.time()
                os.replace(tmp, final)
                stamps[str(final)] = t0
                time.sleep(0.3)
            time.sleep(1.0)
            db = sqlite3.connect(f"file:{d['data'] / 'dagd.db'}?mode=ro", uri=True)
            rows = db.execute(
                "SELECT r.conf, min(a.started_at) FROM run r JOIN task_instance t "
                "ON t.run_id = r.id JOIN attempt a ON a.ti_id = t.id GROUP BY r.id"
            ).fetchall()
            db.close()
    lat = [(s - stamps[orjson.loads(c)["path"]]) * 1000 for c, s in rows
           if orjson.loads(c)["path"] in stamps]
    return {"window_ms": window * 1000, "p50_ms": statistics.median(lat),
            "max_ms": max(lat),
            "p99_ms": pct(lat, 0.99), "over_window_p50_ms": statistics.median(lat) - window * 1000,
            "files": len(lat)}


TIMER_DAG = """
    from dagd import DAG, Cron, task

    @task
    async def noop():
        return None

    with DAG("ticking", triggers=[Cron("* * * * * *")]):
        noop()
"""


def timer_lateness(quick: bool) -> dict[str, Any]:
    with daemon({"ticking.py": TIMER_DAG}) as d:
        time.sleep(6 if quick else 20)
        db = sqlite3.connect(f"file:{d['data'] / 'dagd.db'}?mode=ro", uri=True)
        rows = db.execute("SELECT payload, created_at FROM event WHERE kind = 'cron'").fetchall()
        db.close()
    from datetime import datetime

    late = [(at - datetime.fromisoformat(orjson.loads(p)["fired_at"]).timestamp()) * 1000
            for p, at in rows]
    return {"fires": len(late), "p50_ms": statistics.median(late), "p99_ms": pct(late, 0.99)}


def idle_cpu(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dagd-bench-idle-") as inbox:
        dags = {}
        for i in range(100):
            dags[f"d{i}.py"] = f"""
                from dagd import DAG, Cron, FileDrop, Webhook, task

                @task
                async def noop():
                    return None

                with DAG("d{i}", triggers=[Cron("0 3 * * *"), Webhook("h{i}", auth="none"),
                                          FileDrop("{inbox}/d{i}", pattern="*.csv")]):
                    noop()
            """
        with daemon(dags) as d:
            time.sleep(2)
            seconds = 15 if quick else 60

            def cpu() -> float:
                fields = Path(f"/proc/{d['pid']}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

            c0, t0 = cpu(), time.monotonic()
            time.sleep(seconds)
            used = cpu() - c0
            wall = time.monotonic() - t0
    return {"dags": 100, "seconds": seconds, "cpu_percent_of_one_core": 100 * used / wall}
