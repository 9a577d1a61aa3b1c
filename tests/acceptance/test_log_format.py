"""`[core] log_format = "json"`: `dagd run` writes only JSON lines to stderr (the
journal), a task's failure among them with its dag, run, task and try fields, and the
configured secrets masked there as in the text format."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from acceptance.harness import Dagd

pytestmark = pytest.mark.slow

SECRET = "hook-token-0123456789"

HOOKED = """
    from dagd import DAG, PythonTask, Webhook


    def load():
        raise ValueError("row 3 has no id")


    with DAG("etl", triggers=[Webhook("etl", secret_env="ETL_HOOK_TOKEN")]):
        PythonTask(task_id="load", python_callable=load)
"""
# Its import error carries the webhook's secret: the log must not.
BROKEN = """
    import os

    raise RuntimeError("cannot connect with " + os.environ["ETL_HOOK_TOKEN"])
"""


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        record = orjson.loads(line)  # raises on anything that is not one JSON value
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    return records


def test_json_log_lines_carry_the_fields_and_mask_secrets(
    dagd: Dagd, write_dag: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_HOOK_TOKEN", SECRET)
    dagd.config.write_text('[core]\nshutdown_grace_period = 2.0\nlog_level = "INFO"\n'
                           'log_format = "json"\n\n[database]\nsynchronous = "normal"\n')
    write_dag("etl.py", HOOKED)
    write_dag("broken.py", BROKEN)
    daemon = dagd.start()
    status, body = daemon.request("POST", "/api/v1/dags/etl/runs", {"conf": {}})
    assert status == 201, body
    run = int(body["run_id"])
    dagd.wait_runs({run: "failed"}, timeout=30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0

    text = daemon.log()
    records = json_lines(text)
    assert SECRET not in text
    [failure] = [r for r in records if r["message"].startswith(f"etl.load[run {run} #1] failed")]
    assert failure["level"] == "ERROR"
    assert "row 3 has no id" in failure["message"]
    assert (failure["dag"], failure["run"], failure["task"], failure["try"]) == (
        "etl", run, "load", 1)
    [imported] = [r for r in records if r["message"].startswith("import error in ")]
    assert "broken.py" in imported["message"] and "cannot connect with ***" in imported["message"]
    assert records[-1]["message"] == "dagd stopped"
