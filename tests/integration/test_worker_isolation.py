"""What a worker process shares with the daemon: its environment (no daemon secrets
unless inherit_env=True)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from integration.harness import StartEngine

pytestmark = pytest.mark.anyio

SECRET = "DAGD_TEST_SECRET_X"

ENV_DAG = """
import os
from dagd import DAG, task

with DAG("env_clean") as env_clean:
    @task
    def clean():
        return {"secret": os.environ.get("DAGD_TEST_SECRET_X"), "path": "PATH" in os.environ}

    @task(inherit_env=True)
    def inherits():
        return os.environ.get("DAGD_TEST_SECRET_X")

    clean()
    inherits()

with DAG("env_default", default_args={"inherit_env": True}) as env_default:
    @task
    def by_default():
        return os.environ.get("DAGD_TEST_SECRET_X")

    by_default()
"""


async def test_a_worker_sees_no_daemon_secret_unless_the_task_inherits_the_environment(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SECRET, "hunter2")  # in the daemon's environment
    write_dag("env.py", ENV_DAG)
    async with start_engine() as h:
        clean_run, clean_state = await h.run("env_clean")
        default_run, default_state = await h.run("env_default")
        assert (clean_state, default_state) == ("success", "success")
        assert await h.xcom(clean_run, "clean") == {"secret": None, "path": True}
        assert await h.xcom(clean_run, "inherits") == "hunter2"
        assert await h.xcom(default_run, "by_default") == "hunter2"
