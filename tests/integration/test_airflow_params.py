"""An Airflow DAG's `Param` schemas check a manual run's conf where every trigger
passes (the API, which the CLI and the UI use, and the engine's own trigger): a bad
value is a 422 naming the param, and no run is made."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dagd.errors import InvalidInput
from integration.harness import StartEngine
from integration.test_web_api import api

pytestmark = pytest.mark.anyio

PARAMS_DAG = """
    from airflow.sdk import DAG, Param
    from airflow.providers.standard.operators.python import PythonOperator

    with DAG("report", params={
            "rows": Param(10, type="integer", minimum=1, maximum=100),
            "region": Param("eu", enum=["eu", "us"]),
            "day": Param("2026-01-01", type="string", format="date"),
            "owner": Param(type="string", minLength=2, pattern="^[a-z]+$")}):
        PythonOperator(task_id="show", python_callable=lambda params: params)
"""


@pytest.mark.parametrize(("conf", "field", "words"), [
    ({"owner": "ada", "rows": 0}, "params.rows", "param 'rows' must be >= 1, got 0"),
    ({"owner": "ada", "rows": "ten"}, "params.rows", "param 'rows' must be of type integer"),
    ({"owner": "ada", "region": "asia"}, "params.region", "must be one of ['eu', 'us']"),
    ({"owner": "ada", "day": "yesterday"}, "params.day", "must be a date (format)"),
    ({"owner": "Ada"}, "params.owner", "must match the pattern '^[a-z]+$'"),
    ({}, "params.owner", "param 'owner' has no default: the conf must give it"),
])
async def test_a_bad_param_is_a_422_naming_it_and_makes_no_run(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    conf: dict[str, Any], field: str, words: str,
) -> None:
    write_dag("report.py", PARAMS_DAG)
    async with start_engine() as h, api(h) as (http, base):
        async with http.post(f"{base}/dags/report/runs", json={"conf": conf}) as resp:
            assert resp.status == 422
            body = await resp.json()
        assert words in str(body) and field in str(body)
        with pytest.raises(InvalidInput, match="param"):
            await h.engine.trigger("report", conf=conf)
        assert await h.store.list_runs("report") == []


async def test_good_params_run_and_reach_the_task(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    write_dag("report.py", PARAMS_DAG)
    async with start_engine() as h, api(h) as (http, base):
        conf = {"owner": "ada", "rows": 100, "region": "us", "day": "2026-12-02"}
        async with http.post(f"{base}/dags/report/runs", json={"conf": conf}) as resp:
            assert resp.status == 201, await resp.text()
            run_id = (await resp.json())["run_id"]
        assert await h.wait(run_id) == "success"
        assert await h.xcom(run_id, "show") == conf
