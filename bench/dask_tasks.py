"""make bench, Dask: 200 `def` no-op tasks with executor="dask" through a LocalCluster
(`[executors.dask] address = "local"`, one one-thread worker process per core), beside
the same fan-out on the local warm worker pool, both through the real engine and store,
measured in the same run. The first Dask run also starts the cluster; its time is shown
apart. Not a test: `python bench/run.py --only dask`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from dagd.authoring.loader import load_folder
from dagd.config import Settings

ROOT = Path(__file__).resolve().parent.parent
TASKS = 200

DAGS = textwrap.dedent(f'''
    from dagd import DAG, PythonTask


    def noop():
        return None


    for executor in ("local", "dask"):
        with DAG(f"{{executor}}_fan_out_{TASKS}", max_active_tasks=100_000,
                 default_args={{"executor": executor}}):
            root = PythonTask(task_id="root", python_callable=noop)
            for i in range({TASKS}):
                root >> PythonTask(task_id=f"t{{i}}", python_callable=noop)
''')


def figure(times: list[float], tasks: int) -> dict[str, Any]:
    median = statistics.median(times)
    return {"median_s": median, "best_s": min(times), "tasks_per_s": tasks / median,
            "per_task_ms": median / tasks * 1000, "repeats": len(times)}


def dask_figures(quick: bool, timed_runs: Any) -> dict[str, Any]:
    """`timed_runs(settings, dags, dag_id, repeats)` is run.py's: seconds per run."""
    with tempfile.TemporaryDirectory(prefix="dagd-bench-dask-") as tmp:
        folder = Path(tmp) / "dags"
        folder.mkdir()
        (folder / "fan_out.py").write_text(DAGS)
        bag = load_folder(folder)
        if bag.errors:
            raise RuntimeError(f"bench DAGs failed to load: {bag.errors}")
        reps = 3 if quick else 5
        workers = max(2, os.cpu_count() or 2)
        out: dict[str, Any] = {"workers": workers, "tasks": TASKS + 1}
        for executor in ("local", "dask"):
            settings = Settings(dags_folder=folder, data_dir=Path(tmp) / f"data-{executor}")
            if executor == "dask":
                settings = replace(settings, dask_address="local", dask_n_workers=workers,
                                   dask_threads_per_worker=1)
            times = anyio.run(timed_runs, settings, bag.dags,
                              f"{executor}_fan_out_{TASKS}", reps + 1)
            out[executor] = {**figure(times[1:], TASKS + 1), "first_s": times[0]}
        out["dask_over_local"] = out["dask"]["median_s"] / out["local"]["median_s"]
        out["ml_training"] = ml_figures(Path(tmp), quick, timed_runs, workers)
        return out


def ml_figures(tmp: Path, quick: bool, timed_runs: Any, workers: int) -> dict[str, Any]:
    """examples/ml_training.py, its three candidates trained in the local pool, and the
    same file with `train` sent to the LocalCluster (executor="dask"): the shipped
    dataset, the files on this machine's disk, which the workers share here."""
    source = (ROOT / "examples" / "ml_training.py").read_text()
    local_line = '@task(isolation="process", execution_timeout=900)'
    if local_line not in source:
        return {"skipped": "examples/ml_training.py no longer has its train decorator"}
    out: dict[str, Any] = {}
    for executor in ("local", "dask"):
        folder = tmp / f"ml-{executor}"
        (folder / "data" / "samples").mkdir(parents=True)
        shutil.copy(ROOT / "examples" / "data" / "samples" / "wine.csv",
                    folder / "data" / "samples" / "wine.csv")
        text = source if executor == "local" else source.replace(
            local_line, '@task(executor="dask", execution_timeout=900)')
        (folder / "ml_training.py").write_text(text)
        bag = load_folder(folder)
        if bag.errors:
            raise RuntimeError(f"the ML example failed to load: {bag.errors}")
        settings = Settings(dags_folder=folder, data_dir=tmp / f"data-ml-{executor}")
        if executor == "dask":
            settings = replace(settings, dask_address="local", dask_n_workers=workers,
                               dask_threads_per_worker=1)
        times = anyio.run(timed_runs, settings, bag.dags, "ml_training", (2 if quick else 3) + 1)
        out[executor] = {"median_s": statistics.median(times[1:]), "first_s": times[0]}
    return out


def dask_markdown(d: dict[str, Any]) -> list[str]:
    local, dask = d["local"], d["dask"]
    return [
        f"| {d['tasks']} `def` no-op tasks, fan-out (median, after a first run) | run | "
        "tasks/s | per task |", "| --- | --- | --- | --- |",
        f"| local warm worker pool | {local['median_s'] * 1000:,.0f} ms | "
        f"{local['tasks_per_s']:,.0f} | {local['per_task_ms']:.2f} ms |",
        f"| `executor=\"dask\"`, LocalCluster of {d['workers']} one-thread workers | "
        f"{dask['median_s'] * 1000:,.0f} ms | {dask['tasks_per_s']:,.0f} | "
        f"{dask['per_task_ms']:.2f} ms |",
        "", f"The first Dask run, which also starts the LocalCluster, took "
        f"{dask['first_s']:.1f} s.", "", *ml_markdown(d.get("ml_training") or {}),
    ]


def ml_markdown(ml: dict[str, Any]) -> list[str]:
    if "local" not in ml:
        return [f"ML example: {ml.get('skipped', 'not measured')}", ""]
    return [f"`examples/ml_training.py` (three candidates trained at once), trigger -> "
            f"`success`: {ml['local']['median_s']:.2f} s with `train` on the local pool, "
            f"{ml['dask']['median_s']:.2f} s with it on the LocalCluster (median).", ""]
