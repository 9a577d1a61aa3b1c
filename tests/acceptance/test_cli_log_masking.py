"""`dagd logs` masks the configured secrets a task printed anyway, as the API does."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import Dagd, wait_until

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-warehouse-pw"

LEAKY = """
    from dagd import DAG, ShellTask

    with DAG("leaky"):
        ShellTask(task_id="show", command="echo pw=$WH_PASSWORD", inherit_env=True)
"""


def test_dagd_logs_masks_a_connection_password_the_task_printed(
    dagd: Dagd, write_dag: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WH_PASSWORD", SECRET)
    write_dag("leaky.py", LEAKY)
    dagd.write_config()
    with dagd.config.open("a") as f:
        f.write('\n[connections.warehouse]\nurl = "postgresql://etl@db/warehouse"\n'
                'password_env = "WH_PASSWORD"\n')
    daemon = dagd.start()
    status, body = daemon.request("POST", "/api/v1/dags/leaky/runs", {})
    assert status == 201, body

    def ended() -> bool:
        _, run = daemon.request("GET", f"/api/v1/runs/{body['run_id']}")
        return run["state"] in ("success", "failed")

    wait_until(ended, timeout=20, what="the run to end")
    shown = dagd.cli("logs", "leaky", str(body["run_id"]), "show")
    assert shown.code == 0, shown
    assert "pw=***" in shown.stdout, shown
    assert SECRET not in shown.stdout + shown.stderr
    # As under systemd: the secret is in the daemon's environment, not the operator's.
    operator = {k: v for k, v in dagd.env().items() if k != "WH_PASSWORD"}
    shown = dagd.cli("logs", "leaky", str(body["run_id"]), "show", env=operator)
    assert shown.code == 0, shown
    assert "pw=***" in shown.stdout and SECRET not in shown.stdout, shown
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(timeout=20) == 0
    # With no daemon, the CLI masks what its own environment names.
    offline = dagd.cli("logs", "leaky", str(body["run_id"]), "show")
    assert "pw=***" in offline.stdout and SECRET not in offline.stdout, offline
