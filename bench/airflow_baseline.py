"""make bench, the Airflow baseline: the 200-task `PythonOperator` fan-out DAG file that
dagd's Airflow figure runs (bench/sync_tasks.py's AIRFLOW_DAGS, the same text), run by a
real Airflow with `airflow dags test`, in the same `make bench`.

Owns: an isolated venv under bench/.cache/airflow-venv with apache-airflow from PyPI
(AIRFLOW_VERSION, built once by bench/venvs.py), an Airflow
SQLite metadata database in a temporary AIRFLOW_HOME (`airflow db migrate`), and the
timings: the whole command, as a user waits for it, and the run inside it (from the
dag run created to it finished, read from Airflow's own log). When the venv cannot be
built or Airflow fails, it says why and the figure is skipped: the bench never fails on
it.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import venvs
from sync_tasks import AIRFLOW_DAGS

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_VERSION = "2.10.5"  # the last Airflow 2; installs on Python 3.11 from PyPI alone
VENV = venvs.CACHE / "airflow-venv"
DAG_ID = "airflow_fan_out_200"
RUN_TIMEOUT = 600.0
_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d{4})\]")


def ensure_venv() -> tuple[Path | None, str]:
    """The venv's `airflow`, built on first use; (None, why) when it cannot be."""
    return venvs.ensure(VENV.name, [f"apache-airflow=={AIRFLOW_VERSION}"], "airflow")


def _env(home: Path) -> dict[str, str]:
    """Airflow's environment: its own venv first, none of dagd's Python paths."""
    return venvs.env(VENV, ("AIRFLOW", "DAGD_"), **{
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # the run's times come from its log
    })


def run_seconds(log: str) -> float | None:
    """From "created dagrun" to "DagRun Finished" in `airflow dags test`'s log."""
    start = end = None
    for line in log.splitlines():
        found = _LOG_TIME.match(line)
        if found is None:
            continue
        if start is None and "created dagrun" in line:
            start = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S.%f%z")
        elif "DagRun Finished" in line:
            end = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S.%f%z")
    return (end - start).total_seconds() if start and end else None


def _command(airflow: Path, home: Path,
             *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run([str(airflow), *args], capture_output=True, text=True,
                          check=False, timeout=RUN_TIMEOUT, env=_env(home), cwd=home)
    return time.perf_counter() - started, done


def airflow_figures(quick: bool) -> dict[str, Any]:
    """`airflow dags test` of the fan-out, timed; {"skipped": why} when it cannot run."""
    airflow, why = ensure_venv()
    if airflow is None:
        return {"skipped": why}
    try:
        return _measure(airflow, 1 if quick else 3)
    except (OSError, subprocess.TimeoutExpired, RuntimeError) as exc:
        return {"skipped": str(exc)}


def _measure(airflow: Path, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dagd-bench-airflow-") as tmp:
        home = Path(tmp)
        (home / "dags").mkdir()
        (home / "dags" / "airflow_noop.py").write_text(AIRFLOW_DAGS)
        _, done = _command(airflow, home, "db", "migrate")
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {venvs.tail(done.stderr)}")
        walls: list[float] = []
        runs: list[float] = []
        for i in range(repeats):  # a new logical date each time: a new dag run
            day = (date(2024, 1, 2) + timedelta(days=i)).isoformat()
            wall, done = _command(airflow, home, "dags", "test", DAG_ID, day)
            log = done.stdout + done.stderr
            inside = run_seconds(log)
            if done.returncode != 0 or "state=success" not in log or inside is None:
                raise RuntimeError(f"airflow dags test did not succeed: {venvs.tail(log)}")
            walls.append(wall)
            runs.append(inside)
    tasks = 201  # the root and its 200
    return {"version": AIRFLOW_VERSION, "command": f"airflow dags test {DAG_ID} DATE",
            "database": "SQLite", "median_s": statistics.median(walls), "best_s": min(walls),
            "run_median_s": statistics.median(runs), "tasks": tasks,
            "tasks_per_s": tasks / statistics.median(runs), "repeats": repeats}
