"""make bench, sync tasks: plain `def` no-op tasks with the default isolation, through the
real engine, store and executor, from DAG files on disk (a worker runs a task from its
DAG file's text), and the resident memory of the processes the executor starts.

Also the resident memory of processes: this one's descendants, sampled by a thread while
a figure runs (the worker processes), and an idle `dagd run` (the daemon and its pool).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from dagd.authoring.loader import load_folder
from dagd.config import Settings

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")

SYNC_DAGS = textwrap.dedent('''
    from dagd import DAG, PythonTask


    def noop():
        return None


    with DAG("sync_fan_out_200", max_active_tasks=100_000):
        root = PythonTask(task_id="root", python_callable=noop)
        for i in range(200):
            root >> PythonTask(task_id=f"t{i}", python_callable=noop)

    with DAG("sync_chain_50"):
        prev = None
        for i in range(50):
            task = PythonTask(task_id=f"t{i}", python_callable=noop)
            if prev is not None:
                prev >> task
            prev = task
''')

# The same fan-out as an Airflow 2 DAG file, run unchanged (dagd.compat serves `airflow`).
AIRFLOW_DAGS = textwrap.dedent('''
    import pendulum
    from airflow import DAG
    from airflow.operators.python import PythonOperator


    def noop():
        return None


    with DAG("airflow_fan_out_200", schedule=None, max_active_tasks=100_000,
             start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False):
        root = PythonOperator(task_id="root", python_callable=noop)
        for i in range(200):
            root >> PythonOperator(task_id=f"t{i}", python_callable=noop)
''')


# -- resident memory ---------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0  # gone meanwhile


def pss_mb(pid: int) -> float:
    """Proportional set size: pages shared by forked workers counted once, in shares."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@contextmanager
def peak_children_rss(every: float = 0.02) -> Iterator[list[float]]:
    """Samples this process's descendants until the block ends; yields [peak summed
    RSS, peak summed PSS, most processes at once] (MB), filled in as it goes."""
    peak = [0.0, 0.0, 0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            pids = descendants(os.getpid())
            peak[0] = max(peak[0], sum(map(rss_mb, pids)))
            peak[1] = max(peak[1], sum(map(pss_mb, pids)))
            peak[2] = max(peak[2], len(pids))

    thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def idle_daemon_rss() -> dict[str, float]:
    """Start `dagd run` on the examples, let it settle, read its resident memory and its
    children's (the worker pool, when it has one)."""
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
            time.sleep(3.0)  # a benchmark, not a test: let it (and its pool) go idle
            pool = descendants(proc.pid)
            return {"daemon_mb": rss_mb(proc.pid), "pool_mb": sum(map(rss_mb, pool)),
                    "pool_pss_mb": sum(map(pss_mb, pool)), "pool_processes": len(pool)}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# -- sync tasks through the engine ---------------------------------------------------------
def sync_figures(quick: bool, timed_runs: Any) -> dict[str, Any]:
    """`timed_runs(settings, dags, dag_id, repeats)` is run.py's: seconds per run."""
    with tempfile.TemporaryDirectory(prefix="dagd-bench-sync-") as tmp:
        folder = Path(tmp) / "dags"
        folder.mkdir()
        (folder / "sync_noop.py").write_text(SYNC_DAGS)
        (folder / "airflow_noop.py").write_text(AIRFLOW_DAGS)
        shutil.copy(ROOT / "examples" / "hello_abc.py", folder / "hello_abc.py")
        bag = load_folder(folder)
        if bag.errors:
            raise RuntimeError(f"bench DAGs failed to load: {bag.errors}")
        reps = 3 if quick else 7
        out: dict[str, Any] = {}
        for name, dag_id in (("fan_out_200", "sync_fan_out_200"),
                             ("chain_50", "sync_chain_50"), ("hello_abc", "hello_abc"),
                             ("airflow_fan_out_200", "airflow_fan_out_200")):
            settings = Settings(dags_folder=folder, data_dir=Path(tmp) / f"data-{name}")
            times = anyio.run(timed_runs, settings, bag.dags, dag_id, reps + 1)
            first, times = times[0], times[1:]  # the first run also warms the workers
            tasks = len(bag.dags[dag_id].tasks)
            out[name] = {"median_s": statistics.median(times), "best_s": min(times),
                         "first_s": first, "tasks_per_s": tasks / statistics.median(times),
                         "repeats": len(times)}
        # Memory apart from the timings: the sampling thread would slow them down.
        settings = Settings(dags_folder=folder, data_dir=Path(tmp) / "data-rss")
        with peak_children_rss() as peak:
            anyio.run(timed_runs, settings, bag.dags, "sync_fan_out_200", 2)
        out["fan_out_200"].update(peak_workers_rss_mb=peak[0], peak_workers_pss_mb=peak[1],
                                  peak_workers=peak[2])
        return out
