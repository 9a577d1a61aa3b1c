"""make bench: end-to-end speed of the engine, every state change persisted.

Each figure runs from the trigger to the run recorded as successful in SQLite, on the
real engine, store and executor: in-loop async no-op tasks, and plain `def` no-op tasks
with the default isolation (bench/sync_tasks.py). Beside the async fan-outs, the same
work done with no engine on bare asyncio + aiosqlite (bench/baseline.py), measured in
the same run, and the engine's ratio to it; beside the Airflow DAG file's fan-out, a
real Airflow's `airflow dags test` of the same file (bench/airflow_baseline.py); beside
the `def` fan-out, the same fan-out on Luigi, Prefect and Dagster (bench/anchors.py). Not a
test: prints tables and writes bench/results/latest.json, and bench/results/latest.md:
the tables in the form the README's Performance section shows them.
Usage: python bench/run.py [--quick] [--only]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sqlite3
import statistics
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
import airflow_baseline
import anchors
import baseline
import dask_tasks
import sync_tasks
import triggers
import web

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=None if sys.stdout.isatty() else 150)
SIZES = (1_000, 10_000, 20_000)  # the fan-outs at the defaults: is the per-task cost flat?


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


async def timed_runs(settings: Settings, dags: dict[str, DAG], dag_id: str,
                     repeats: int) -> list[float]:
    """Seconds from trigger to the run committed as success, for each repeat, on one
    engine as `Engine(store, settings)` builds it (its default executor)."""
    store = await Store.open(settings.db_path, synchronous=settings.synchronous,
                             sized_wal=True)  # as the daemon opens it
    engine = Engine(store, settings)
    engine.set_dags(dags, set())
    await engine.boot()
    times: list[float] = []
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.serve)
            # As a daemon is soon after its start: its worker pool up. The pool starts
            # in the background, and its processes' imports would otherwise take CPU
            # from the first run timed here (on 2 cores, the database thread's).
            await engine.executor.pool.ready()
            for _ in range(repeats):
                start = time.perf_counter()
                run_id = await engine.trigger(dag_id)
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


def figure(times: list[float], tasks: int) -> dict[str, Any]:
    median = statistics.median(times)
    return {"median_s": median, "best_s": min(times), "tasks_per_s": tasks / median,
            "us_per_task": median / tasks * 1e6, "repeats": len(times)}


async def engine_case(dag: DAG, synchronous: str, parallelism: int, repeats: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="dagd-bench-") as tmp:
        s = bench_settings(Path(tmp), synchronous, parallelism)
        return await timed_runs(s, {dag.dag_id: dag}, dag.dag_id, repeats)


async def baseline_case(tasks: int, synchronous: str, parallelism: int,
                        repeats: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="dagd-bench-base-") as tmp:
        path = Path(tmp) / "baseline.db"
        return [await baseline.fan_out(path, tasks, parallelism=parallelism,
                                       synchronous=synchronous) for _ in range(repeats)]


async def fan_out_vs_baseline(n: int, synchronous: str, parallelism: int,
                              repeats: int) -> dict[str, Any]:
    """The engine's n fan-out and the baseline's, alternating, in this process."""
    dag = fan_out(n)
    engine: list[float] = []
    bare: list[float] = []
    for _ in range(repeats):
        engine += await engine_case(dag, synchronous, parallelism, 1)
        bare += await baseline_case(n, synchronous, parallelism, 1)
    out = {"engine": figure(engine, n + 1), "baseline": figure(bare, n + 1)}
    out["ratio"] = out["engine"]["median_s"] / out["baseline"]["median_s"]
    return out


async def engine_figures(synchronous: str, parallelism: int, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    reps = 3 if quick else 7
    for name, dag in (("fan_out_200", fan_out(200)), ("chain_50", chain_dag(50))):
        out[name] = figure(await engine_case(dag, synchronous, parallelism, reps),
                           len(dag.tasks))
    both = await fan_out_vs_baseline(10_000, synchronous, parallelism, 1 if quick else 3)
    out["fan_out_10000"] = both["engine"]
    out["baseline_10000"] = both["baseline"]
    out["ratio_10000"] = both["ratio"]
    return out


async def size_figures(quick: bool) -> dict[str, Any]:
    """The fan-out at each size, at the defaults, beside the baseline."""
    return {str(n): await fan_out_vs_baseline(n, "full", 64, (1 if quick else 3)
                                              if n >= 10_000 else (3 if quick else 5))
            for n in SIZES}


def uvloop_figures(quick: bool) -> dict[str, Any] | None:
    """The 10,000 fan-out at the defaults on asyncio's loop and on uvloop, if installed."""
    if importlib.util.find_spec("uvloop") is None:
        return None
    out = {}
    for name, options in (("asyncio", {}), ("uvloop", {"use_uvloop": True})):
        out[name] = anyio.run(fan_out_vs_baseline, 10_000, "full", 64, 1 if quick else 3,
                              backend_options=options)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter runs")
    parser.add_argument("--only", choices=("engine", "sync", "triggers", "web", "dask"),
                        help="one part only")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "platform": platform.platform(),
                    "date": time.strftime("%Y-%m-%d")},
    }
    if args.only in (None, "engine"):
        for synchronous in ("full", "normal"):
            for parallelism in (64, 10_000):
                key = f"synchronous={synchronous}, parallelism={parallelism}"
                results[key] = anyio.run(engine_figures, synchronous, parallelism, args.quick)
        results["sizes"] = anyio.run(size_figures, args.quick)
        results["uvloop"] = uvloop_figures(args.quick)
        engine_table(results)
    if args.only in (None, "sync"):
        results["sync"] = sync_tasks.sync_figures(args.quick, timed_runs)
        results["airflow"] = airflow_baseline.airflow_figures(args.quick)
        results["anchors"] = anchors.anchor_figures(args.quick)
        results["idle"] = sync_tasks.idle_daemon_rss()
        sync_table(results)
    if args.only in (None, "triggers"):
        results["triggers"] = trigger_figures(args.quick)
    if args.only in (None, "web"):
        results["web"] = web_figures(args.quick)
    if args.only in (None, "dask") and importlib.util.find_spec("distributed") is not None:
        results["dask"] = dask_tasks.dask_figures(args.quick, timed_runs)
        console.print("\n".join(dask_tasks.dask_markdown(results["dask"])))
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
    if "sizes" in results:
        lines += engine_markdown(results)
    if "sync" in results:
        lines += sync_markdown(results)
        lines += anchors.anchors_markdown(results.get("anchors", {}),
                                          results["sync"]["fan_out_200"]["median_s"])
    t = results.get("triggers")
    if t:
        lines += triggers_markdown(t)
    if results.get("web"):
        lines += web.web_markdown(results["web"])
    if results.get("dask"):
        lines += dask_tasks.dask_markdown(results["dask"])
    return "\n".join(lines)


def engine_markdown(results: dict[str, Any]) -> list[str]:
    lines = ["| async no-op tasks: trigger -> run recorded `success` (median) | "
             "`synchronous=full` (default) | `synchronous=normal` |", "| --- | --- | --- |"]

    def cell(sync: str, parallelism: int, case: str) -> str:
        f = results[f"synchronous={sync}, parallelism={parallelism}"]
        if case == "fan_out_10000":
            return (f"{f[case]['median_s']:.2f} s: {f[case]['tasks_per_s']:,.0f} tasks/s; "
                    f"baseline {f['baseline_10000']['tasks_per_s']:,.0f}; "
                    f"**{f['ratio_10000']:.1f}x**")
        return f"{f[case]['median_s'] * 1000:.0f} ms"

    for label, parallelism, case in (
        ("200-task fan-out", 64, "fan_out_200"),
        ("50-task chain", 64, "chain_50"),
        ("10,000-task fan-out, `parallelism=64` (the default)", 64, "fan_out_10000"),
        ("10,000-task fan-out, `parallelism=10000`", 10_000, "fan_out_10000"),
    ):
        lines.append(f"| {label} | {cell('full', parallelism, case)} | "
                     f"{cell('normal', parallelism, case)} |")
    lines += ["", "| fan-out at the defaults | engine | per task | baseline | engine / baseline |",
              "| --- | --- | --- | --- | --- |"]
    for n, f in results["sizes"].items():
        lines.append(f"| {int(n):,} tasks | {f['engine']['tasks_per_s']:,.0f} tasks/s | "
                     f"{f['engine']['us_per_task']:.0f} us | "
                     f"{f['baseline']['tasks_per_s']:,.0f} tasks/s | {f['ratio']:.1f}x |")
    u = results.get("uvloop")
    if u:
        lines += ["", f"uvloop: the 10,000 fan-out at the defaults ran at "
                  f"{u['uvloop']['engine']['tasks_per_s']:,.0f} tasks/s on uvloop against "
                  f"{u['asyncio']['engine']['tasks_per_s']:,.0f} on asyncio's own loop "
                  f"(baseline {u['uvloop']['baseline']['tasks_per_s']:,.0f} and "
                  f"{u['asyncio']['baseline']['tasks_per_s']:,.0f})."]
    return [*lines, ""]


def airflow_markdown(s: dict[str, Any], a: dict[str, Any] | None) -> list[str]:
    """The Airflow DAG file's fan-out on dagd, and the same file on a real Airflow."""
    if "airflow_fan_out_200" not in s:
        return []
    mine = s["airflow_fan_out_200"]
    lines = [f"| 200-task fan-out of Airflow `PythonOperator`s (an Airflow DAG file, "
             f"unchanged) | {mine['median_s'] * 1000:,.0f} ms: "
             f"{mine['tasks_per_s']:,.0f} tasks/s |"]
    if a and "skipped" not in a:
        lines.append(f"| the same file on Airflow {a['version']}, `airflow dags test` "
                     f"(SQLite) | {a['run_median_s']:.1f} s: {a['tasks_per_s']:,.0f} tasks/s "
                     f"in the run; {a['median_s']:.1f} s the whole command; dagd "
                     f"**{a['run_median_s'] / mine['median_s']:,.0f}x** faster |")
    elif a:
        lines.append(f"| the same file on Airflow, `airflow dags test` | not measured: "
                     f"{a['skipped'][:120]} |")
    return lines


def sync_markdown(results: dict[str, Any]) -> list[str]:
    s, idle = results["sync"], results["idle"]
    return [
        "| `def` no-op tasks, default isolation (median, after a first run) | |",
        "| --- | --- |",
        f"| 200-task fan-out | {s['fan_out_200']['median_s'] * 1000:,.0f} ms: "
        f"{s['fan_out_200']['tasks_per_s']:,.0f} tasks/s |",
        f"| 50-task chain | {s['chain_50']['median_s'] * 1000:,.0f} ms |",
        *airflow_markdown(s, results.get("airflow")),
        f"| `examples/hello_abc.py`, trigger -> `success` | "
        f"{s['hello_abc']['median_s'] * 1000:,.0f} ms (first run "
        f"{s['hello_abc']['first_s'] * 1000:,.0f} ms) |",
        f"| worker processes at the peak of the fan-out ({s['fan_out_200']['peak_workers']:.0f}"
        f" at most) | {s['fan_out_200']['peak_workers_rss_mb']:,.0f} MB resident (summed "
        f"RSS), {s['fan_out_200']['peak_workers_pss_mb']:,.0f} MB proportional (PSS) |",
        "", f"An idle daemon on the examples holds {idle['daemon_mb']:.1f} MB resident; "
        f"its {idle['pool_processes']} idle worker process(es) {idle['pool_mb']:.1f} MB "
        f"(summed RSS; {idle['pool_pss_mb']:.1f} MB PSS).", "",
    ]


def triggers_markdown(t: dict[str, Any]) -> list[str]:
    lines = ["| triggers (a real `dagd run`) | p50 | p99 |", "| --- | --- | --- |"]
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
    return [*lines, "", f"With {f['dags']} DAGs, each with a cron, a webhook and a file drop, "
            f"an idle daemon uses {f['cpu_percent_of_one_core']:.1f} % of one core.", ""]


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


def web_figures(quick: bool) -> dict[str, Any]:
    figures = web.web_figures(quick)
    p = figures["pages"]
    table = Table(title=f"web pages, {p['runs']:,} runs and {p['task_instances']:,} task "
                  f"instances (server time; auth {p['auth']})")
    for col in ("page", "median", "p95", "round trip", "target"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for label, f in p["pages"].items():
        if "median_ms" not in f:
            table.add_row(label, "", "", "", f["note"])
            continue
        table.add_row(label, f"{f['median_ms']:.2f} ms", f"{f['p95_ms']:.2f} ms",
                      f"{f['round_trip_median_ms']:.2f} ms", f"< {p['target_ms']:.0f} ms")
    s = figures["stream"]
    table.add_row(f"stream: commit -> receipt at {s['rate_per_s']} changes/s (p50, p99)",
                  f"{s['p50_ms']:.2f} ms", f"{s['p99_ms']:.2f} ms", "",
                  f"< {s['target_ms']:.0f} ms")
    console.print(table)
    return figures


def engine_table(results: dict[str, Any]) -> None:
    table = Table(title="dagd engine, async no-op tasks: trigger -> run recorded success "
                  "(median)")
    for col in ("settings", "200 fan-out", "50 chain", "10,000 fan-out", "tasks/s",
                "baseline tasks/s", "engine/baseline"):
        table.add_column(col, justify="right")
    for key, f in results.items():
        if not key.startswith("synchronous"):
            continue
        table.add_row(
            key,
            f"{f['fan_out_200']['median_s'] * 1000:.1f} ms",
            f"{f['chain_50']['median_s'] * 1000:.1f} ms",
            f"{f['fan_out_10000']['median_s']:.2f} s",
            f"{f['fan_out_10000']['tasks_per_s']:,.0f}",
            f"{f['baseline_10000']['tasks_per_s']:,.0f}",
            f"{f['ratio_10000']:.2f}x",
        )
    console.print(table)
    sizes = Table(title="fan-out at the defaults (synchronous=full, parallelism=64)")
    for col in ("tasks", "engine tasks/s", "us per task", "baseline tasks/s",
                "engine/baseline"):
        sizes.add_column(col, justify="right")
    for n, f in results["sizes"].items():
        sizes.add_row(f"{int(n):,}", f"{f['engine']['tasks_per_s']:,.0f}",
                      f"{f['engine']['us_per_task']:.1f}",
                      f"{f['baseline']['tasks_per_s']:,.0f}", f"{f['ratio']:.2f}x")
    console.print(sizes)
    u = results.get("uvloop")
    if u:
        console.print(f"10,000 fan-out, asyncio loop: {u['asyncio']['engine']['tasks_per_s']:,.0f}"
                      f" tasks/s ({u['asyncio']['ratio']:.2f}x baseline); uvloop: "
                      f"{u['uvloop']['engine']['tasks_per_s']:,.0f} tasks/s "
                      f"({u['uvloop']['ratio']:.2f}x baseline)")
    else:
        console.print("uvloop not installed (pip install 'dagd[speed]'): not measured")


def sync_table(results: dict[str, Any]) -> None:
    s, idle = results["sync"], results["idle"]
    table = Table(title="def no-op tasks, default isolation (median, after a first run)")
    for col in ("what", "median", "first run", "notes"):
        table.add_column(col, justify="right")
    for name in ("fan_out_200", "chain_50", "hello_abc"):
        f = s[name]
        table.add_row(name, f"{f['median_s'] * 1000:.1f} ms", f"{f['first_s'] * 1000:.1f} ms",
                      f"{f['tasks_per_s']:,.0f} tasks/s")
    console.print(table)
    airflow_line(s, results.get("airflow"))
    mine = s["fan_out_200"]["median_s"]
    for name, a in results.get("anchors", {}).items():
        console.print(f"{name}: skipped ({a['skipped']})" if "skipped" in a else
                      f"{name} {a['version']} ({a['how']}), the same fan-out: "
                      f"{a['median_s'] * 1000:.1f} ms, {a['tasks_per_s']:,.0f} tasks/s "
                      f"(dagd {a['median_s'] / mine:.1f}x faster)")
    f = s["fan_out_200"]
    console.print(f"workers at the peak of the 200 fan-out ({f['peak_workers']:.0f} at most): "
                  f"{f['peak_workers_rss_mb']:.1f} MB summed RSS, {f['peak_workers_pss_mb']:.1f}"
                  f" MB PSS; idle daemon {idle['daemon_mb']:.1f} MB, its "
                  f"{idle['pool_processes']} idle worker(s) {idle['pool_mb']:.1f} MB RSS "
                  f"({idle['pool_pss_mb']:.1f} MB PSS)")


def airflow_line(s: dict[str, Any], a: dict[str, Any] | None) -> None:
    if "airflow_fan_out_200" not in s or a is None:
        return
    mine = s["airflow_fan_out_200"]["median_s"]
    if "skipped" in a:
        console.print(f"Airflow DAG file fan-out on dagd: {mine * 1000:.1f} ms; a real "
                      f"Airflow's `airflow dags test`: skipped ({a['skipped']})")
        return
    console.print(f"Airflow DAG file fan-out on dagd: {mine * 1000:.1f} ms; Airflow "
                  f"{a['version']} `airflow dags test` of the same file: "
                  f"{a['run_median_s']:.2f} s in the run, {a['median_s']:.2f} s the command "
                  f"(dagd {a['run_median_s'] / mine:.0f}x faster)")


if __name__ == "__main__":
    main()
