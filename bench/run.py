"""make bench: end-to-end speed of the engine, every state change persisted.

Each figure runs from the trigger to the run recorded as successful in SQLite, on the
real engine, store and executor (in-loop async no-op tasks). Not a test: prints a table
and writes bench/results/latest.json, and bench/results/latest.md: the tables in the form
the README's Performance section shows them. Usage: python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
from rich.console import Console
from rich.table import Table

from dagd import DAG, PythonTask
from dagd.config import Settings
from dagd.scheduler.loop import Engine
from dagd.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
import triggers

ROOT = Path(__file__).resolve().parent.parent
console = Console()


async def noop() -> None:
    return None


def fan_out(n: int) -> DAG:
    dag = DAG(f"fan_out_{n}", max_active_tasks=100_000)
    root = PythonTask(task_id="root", python_callable=noop, dag=dag)
    for i in range(n):
        root >> PythonTask(task_id=f"t{i}", python_callable=noop, dag=dag)
    return dag


def chain_dag(n: int) -> DAG:
    dag = DAG(f"chain_{n}")
    prev = None
    for i in range(n):
        t = PythonTask(task_id=f"t{i}", python_callable=noop, dag=dag)
        if prev is not None:
            prev >> t
        prev = t
    return dag


async def timed_runs(settings: Settings, dag: DAG, repeats: int) -> list[float]:
    """Seconds from trigger to the run committed as success, for each repeat."""
    store = await Store.open(settings.db_path, synchronous=settings.synchronous)
    engine = Engine(store, settings)
    engine.set_dags({dag.dag_id: dag}, set())
    await engine.boot()
    times: list[float] = []
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)
            for _ in range(repeats):
                start = time.perf_counter()
                run_id = await engine.trigger(dag.dag_id)
                state = await engine.wait_for_run(run_id)
                times.append(time.perf_counter() - start)
                assert state == "success", state
            await engine.stop(0)
            tg.cancel_scope.cancel()
    finally:
        await store.close()
    return times


def bench_settings(tmp: Path, synchronous: str, parallelism: int) -> Settings:
    return Settings(dags_folder=tmp, data_dir=tmp / "data", synchronous=synchronous,
                    parallelism=parallelism, default_max_active_tasks=100_000)


async def engine_figures(synchronous: str, parallelism: int, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    reps = 3 if quick else 7
    cases = [("fan_out_200", fan_out(200), reps), ("chain_50", chain_dag(50), reps),
             ("fan_out_10000", fan_out(10_000), 1 if quick else 3)]
    for name, dag, repeats in cases:
        with tempfile.TemporaryDirectory(prefix="dagd-bench-") as tmp:
            s = bench_settings(Path(tmp), synchronous, parallelism)
            times = await timed_runs(s, dag, repeats)
        tasks = len(dag.tasks)
        out[name] = {
            "median_s": statistics.median(times),
            "best_s": min(times),
            "tasks_per_s": tasks / statistics.median(times),
            "repeats": repeats,
        }
    return out


def idle_rss_mb() -> float:
    """Start `dagd run` on the examples, let it settle, read its resident memory."""
    with tempfile.TemporaryDirectory(prefix="dagd-bench-rss-") as tmp:
        env = {**os.environ, "DAGD_DATA_DIR": tmp}
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagd.cli", "--config", str(ROOT / "config/dagd.toml"),
             "--dags-folder", str(ROOT / "examples"), "run", "--port", "0"],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        try:
            assert proc.stderr is not None
            deadline = time.monotonic() + 30
            for line in proc.stderr:
                if "dagd ready" in line or time.monotonic() > deadline:
                    break
            time.sleep(2.0)  # a benchmark, not a test: let it go idle
            status = Path(f"/proc/{proc.pid}/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines()
                      if line.startswith("VmRSS:"))
            return kb / 1024
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter runs")
    parser.add_argument("--only", choices=("engine", "triggers"), help="one part only")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "platform": platform.platform(),
                    "date": time.strftime("%Y-%m-%d")},
    }
    if args.only != "triggers":
        for synchronous in ("full", "normal"):
            for parallelism in (64, 10_000):
                key = f"synchronous={synchronous}, parallelism={parallelism}"
                results[key] = anyio.run(engine_figures, synchronous, parallelism, args.quick)
        results["idle_rss_mb"] = idle_rss_mb()
        engine_table(results)
    if args.only != "engine":
        results["triggers"] = trigger_figures(args.quick)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    (out / "latest.md").write_text(markdown(results))
    console.print(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")


def markdown(results: dict[str, Any]) -> str:
    """The figures as the README's Performance section shows them."""
    m = results["machine"]
    lines = [f"On {m['date']}, {m['cpus']} cores, Python {m['python']}, SQLite {m['sqlite']} "
             f"({m['platform']}), `make bench`:", ""]
    if "idle_rss_mb" in results:
        lines += ["| engine: trigger -> run recorded `success` (median) | "
                  "`synchronous=full` (default) | `synchronous=normal` |", "| --- | --- | --- |"]

        def cell(sync: str, parallelism: int, case: str) -> str:
            f = results[f"synchronous={sync}, parallelism={parallelism}"][case]
            if case == "fan_out_10000":
                return f"{f['median_s']:.2f} s: {f['tasks_per_s']:,.0f} tasks/s"
            return f"{f['median_s'] * 1000:.0f} ms"

        for label, parallelism, case in (
            ("200-task fan-out of no-op async tasks", 64, "fan_out_200"),
            ("50-task chain", 64, "chain_50"),
            ("10,000-task fan-out, `parallelism=10000`", 10_000, "fan_out_10000"),
            ("10,000-task fan-out, `parallelism=64` (the default)", 64, "fan_out_10000"),
        ):
            lines.append(f"| {label} | {cell('full', parallelism, case)} | "
                         f"{cell('normal', parallelism, case)} |")
        lines += ["", f"An idle daemon on the examples holds {results['idle_rss_mb']:.1f} MB "
                  "resident.", ""]
    t = results.get("triggers")
    if t:
        lines += ["| triggers (a real `dagd run`) | p50 | p99 |", "| --- | --- | --- |"]
        for rate, f in t["webhook"].items():
            per = rate.replace("/s", "")
            lines.append(f"| webhook -> first task start, {per} request(s)/s | "
                         f"{f['p50_ms']:.1f} ms | {f['p99_ms']:.1f} ms |")
        f = t["file_drop"]
        lines.append(f"| file drop -> task start (stability window {f['window_ms']:.0f} ms) | "
                     f"{f['p50_ms']:.0f} ms | {f['p99_ms']:.0f} ms |")
        f = t["timer"]
        lines.append(f"| timer lateness (a 1 s cron) | {f['p50_ms']:.1f} ms | "
                     f"{f['p99_ms']:.1f} ms |")
        f = t["idle_100_dags"]
        lines += ["", f"With {f['dags']} DAGs, each with a cron, a webhook and a file drop, an "
                  f"idle daemon uses {f['cpu_percent_of_one_core']:.1f} % of one core.", ""]
    return "\n".join(lines)


def trigger_figures(quick: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "webhook": triggers.webhook_latency(quick),
        "file_drop": triggers.file_latency(quick),
        "timer": triggers.timer_lateness(quick),
        "idle_100_dags": triggers.idle_cpu(quick),
    }
    table = Table(title="dagd triggers (a real `dagd run`, synchronous=full)")
    table.add_column("what")
    table.add_column("p50", justify="right")
    table.add_column("p99", justify="right")
    table.add_column("notes")
    for rate, f in figures["webhook"].items():
        table.add_row(f"webhook -> task start at {rate}", f"{f['p50_ms']:.1f} ms",
                      f"{f['p99_ms']:.1f} ms", f"{f['requests']} requests")
    f = figures["file_drop"]
    table.add_row("file drop -> task start", f"{f['p50_ms']:.1f} ms", f"{f['p99_ms']:.1f} ms",
                  f"stability window {f['window_ms']:.0f} ms, {f['files']} files")
    f = figures["timer"]
    table.add_row("timer lateness", f"{f['p50_ms']:.1f} ms", f"{f['p99_ms']:.1f} ms",
                  f"{f['fires']} fires of a 1 s cron")
    f = figures["idle_100_dags"]
    table.add_row("idle, 100 DAGs", "", "", f"{f['cpu_percent_of_one_core']:.2f} % of a core "
                  f"over {f['seconds']} s")
    console.print(table)
    return figures


def engine_table(results: dict[str, Any]) -> None:
    table = Table(title="dagd engine: trigger -> run recorded success (median)")
    for col in ("settings", "200 fan-out", "50 chain", "10,000 fan-out", "tasks/s (10k)"):
        table.add_column(col, justify="right")
    for key, figures in results.items():
        if not key.startswith("synchronous"):
            continue
        table.add_row(
            key,
            f"{figures['fan_out_200']['median_s'] * 1000:.1f} ms",
            f"{figures['chain_50']['median_s'] * 1000:.1f} ms",
            f"{figures['fan_out_10000']['median_s']:.2f} s",
            f"{figures['fan_out_10000']['tasks_per_s']:,.0f}",
        )
    console.print(table)
    console.print(f"idle daemon resident memory: {results['idle_rss_mb']:.1f} MB")


if __name__ == "__main__":
    main()
