"""Airflow DAG files under a real `dagd run`: backfilled runs of a cron schedule in the
start_date's timezone get Airflow's context for them (ds, a backfill run_id, the data
interval, an empty dag_run.conf), a latest-only gate skips what follows in a past run, and a
template file renders with the run's ds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from acceptance.harness import Daemon, Dagd, wait_until

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parents[1] / "compat" / "dags"

DAILY = """\
import pendulum
from airflow import DAG
from airflow.operators.latest_only import LatestOnlyOperator
from airflow.operators.python import PythonOperator
from airflow.operators.bash import BashOperator


def facts(ds, run_id, data_interval_start, data_interval_end, dag_run, **_):
    return {"ds": ds, "run_id": run_id, "start": data_interval_start.isoformat(),
            "end": data_interval_end.isoformat(), "conf": dag_run.conf,
            "type": dag_run.run_type}


with DAG("daily_v2", schedule_interval="@daily", catchup=False,
         start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    facts_task = PythonOperator(task_id="facts", python_callable=facts)
    LatestOnlyOperator(task_id="latest_only") >> BashOperator(task_id="after",
                                                              bash_command="echo ran")
"""


def api(daemon: Daemon, path: str) -> Any:
    status, body = daemon.request("GET", path)
    assert status == 200, body
    return body


def finished(daemon: Daemon, dag_id: str, count: int) -> list[dict[str, Any]]:
    runs = api(daemon, f"/api/v1/dags/{dag_id}/runs")["runs"]
    done = [r for r in runs if r["state"] in ("success", "failed")]
    return done if len(done) >= count else []


def xcom(daemon: Daemon, run_id: int, task_id: str) -> Any:
    return api(daemon, f"/api/v1/runs/{run_id}/tasks/{task_id}/xcom")["value"]


def test_backfilled_airflow_runs_get_airflows_scheduled_context(dagd: Dagd) -> None:
    (dagd.dags_folder / "daily_v2.py").write_text(DAILY)
    shutil.copytree(DAGS, dagd.dags_folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dag_id in ("daily_v2", "custom_op"):
        queued = dagd.cli("backfill", dag_id, "--start", "2024-01-01", "--end", "2024-01-02")
        assert queued.code == 0, queued
    daemon = dagd.start()
    daily = wait_until(lambda: finished(daemon, "daily_v2", 2), timeout=60,
                       what="the daily_v2 runs")
    by_ds = {}
    for run in daily:
        assert run["state"] == "success", run
        value = xcom(daemon, run["id"], "facts")
        by_ds[value["ds"]] = value
        states = {t["task_id"]: t["state"] for t in api(
            daemon, f"/api/v1/runs/{run['id']}")["task_instances"]}
        assert states == {"facts": "success", "latest_only": "success", "after": "skipped"}
    assert by_ds["2024-01-01"] == {
        "ds": "2024-01-01", "run_id": "backfill__2024-01-01T00:00:00+00:00",
        "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-02T00:00:00+00:00",
        "conf": {}, "type": "backfill"}
    assert set(by_ds) == {"2024-01-01", "2024-01-02"}

    custom = wait_until(lambda: finished(daemon, "custom_op", 2), timeout=60,
                        what="the custom_op runs")
    scripts = sorted(xcom(daemon, run["id"], "script") for run in custom)
    # 06:00 in Paris is 05:00 UTC: the runs' logical dates are those days
    assert scripts == ["script for 2024-01-01 in custom_op", "script for 2024-01-02 in custom_op"]
