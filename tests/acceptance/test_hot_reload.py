"""Hot reload: with `dagd run` going, DAG files are added, broken, fixed and deleted.

The daemon must follow within about a second, with no restart: a new DAG appears (and
its webhook answers), a broken edit keeps the last good version running and records the
import error, the fix clears it, and a deleted file takes its DAG off the active list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from acceptance.harness import Daemon, Dagd, table_rows

pytestmark = pytest.mark.slow

# The daemon waits 100 ms for changes to settle, then imports the folder: well under 1 s.
# The deadline leaves room for a loaded 2-core machine; the elapsed time is asserted.
RELOAD_TARGET = 1.0
RELOAD_DEADLINE = 5.0

FRESH = """
    from dagd import DAG, Webhook, task

    with DAG("fresh", description={description!r},
             triggers=[Webhook("fresh-hook", auth="none")]):
        @task
        async def step(conf):
            print("version", {description!r}, conf)

        step()
"""

BROKEN = """
    from dagd import DAG, task

    with DAG("fresh", description="half-edited"):
        @task
        async def step(conf:
            pass
"""

# A sync task: it runs in a worker process, which imports the DAG file on its own.
FRESH_WORKER = """
    from dagd import DAG, task

    with DAG("fresh_worker"):
        @task
        def step():
            print("worker step")

        step()
"""


def dags_by_id(daemon: Daemon) -> dict[str, dict[str, Any]]:
    status, body = daemon.request("GET", "/api/v1/dags")
    assert status == 200, body
    return {d["dag_id"]: d for d in body["dags"]}


def active(daemon: Daemon, dag_id: str) -> bool:
    dag = dags_by_id(daemon).get(dag_id)
    return bool(dag and dag["is_active"])


def import_error_files(daemon: Daemon) -> list[str]:
    status, body = daemon.request("GET", "/api/v1/import-errors")
    assert status == 200, body
    return [e["file"] for e in body["import_errors"]]


def run_to_end(dagd: Dagd, daemon: Daemon, dag_id: str) -> tuple[int, str]:
    status, body = daemon.request("POST", f"/api/v1/dags/{dag_id}/runs", {"conf": {}})
    assert status == 201, body
    run_id = int(body["run_id"])

    def ended() -> str:
        state = dagd.run_states().get(run_id, "")
        return state if state in ("success", "failed") else ""

    return run_id, dagd.wait(ended, timeout=20, what=f"run {run_id} of {dag_id} to end")


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def timed(dagd: Dagd, predicate: Callable[[], bool], what: str) -> float:
    start = time.monotonic()
    dagd.wait(predicate, timeout=RELOAD_DEADLINE, what=what)
    return time.monotonic() - start


def test_dag_files_added_broken_fixed_and_deleted_while_running(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    daemon = dagd.start()
    assert "fresh" not in dags_by_id(daemon)

    # Added: the DAG appears, and its trigger listens.
    path = write_dag("fresh.py", FRESH.format(description="first")).resolve()
    took = timed(dagd, lambda: active(daemon, "fresh"), "the new DAG to appear")
    assert took < RELOAD_TARGET, f"the new DAG took {took:.2f}s to appear"
    listing = dagd.cli("dags", "list")
    assert listing.code == 0, listing
    assert [row[0] for row in table_rows(listing.stdout)] == ["fresh"]
    status, body = daemon.request("POST", "/hooks/fresh-hook", {"via": "hook"})
    assert status == 202, body
    assert run_to_end(dagd, daemon, "fresh")[1] == "success"

    # Broken: the error is recorded; the last good version still runs and listens.
    write_dag("fresh.py", BROKEN)
    took = timed(dagd, lambda: str(path) in import_error_files(daemon),
                 "the import error to be recorded")
    assert took < RELOAD_TARGET, f"the import error took {took:.2f}s to be recorded"
    errors = dagd.cli("dags", "errors")
    assert errors.code == 1, errors
    assert f"{path}:{line_of(path, 'async def step(conf:')}" in errors.stdout
    assert "SyntaxError" in errors.stdout
    assert active(daemon, "fresh")
    assert dags_by_id(daemon)["fresh"]["description"] == "first"
    assert run_to_end(dagd, daemon, "fresh")[1] == "success"
    status, body = daemon.request("POST", "/hooks/fresh-hook", {"via": "hook"})
    assert status == 202, body

    # Fixed: the error is gone and the new version is the one in effect.
    write_dag("fresh.py", FRESH.format(description="second"))
    timed(dagd, lambda: import_error_files(daemon) == [], "the import error to clear")
    dagd.wait(lambda: dags_by_id(daemon)["fresh"]["description"] == "second", timeout=5,
              what="the fixed version")
    errors = dagd.cli("dags", "errors")
    assert (errors.code, errors.stdout.strip()) == (0, "no import errors"), errors
    assert run_to_end(dagd, daemon, "fresh")[1] == "success"

    # Deleted: off the active list; its webhook and manual runs are refused.
    path.unlink()
    took = timed(dagd, lambda: not active(daemon, "fresh"), "the DAG to be deactivated")
    assert took < RELOAD_TARGET, f"the deleted DAG took {took:.2f}s to go"
    listing = dagd.cli("dags", "list")
    assert listing.code == 0, listing
    assert table_rows(listing.stdout) == []
    status, body = daemon.request("POST", "/hooks/fresh-hook", {"via": "hook"})
    assert status == 404, body
    status, body = daemon.request("POST", "/api/v1/dags/fresh/runs", {"conf": {}})
    assert status == 404, body
    # Every run it had was finished; the daemon is still healthy.
    assert set(dagd.run_states().values()) == {"success"}
    assert daemon.healthy()


def test_a_broken_edit_keeps_the_last_good_version_of_a_sync_task_runnable(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    path = write_dag("fresh_worker.py", FRESH_WORKER).resolve()
    daemon = dagd.start()
    assert run_to_end(dagd, daemon, "fresh_worker")[1] == "success"
    path.write_text("from dagd import DAG\n\nwith DAG('fresh_worker'):\n    def step(:\n")
    dagd.wait(lambda: str(path) in import_error_files(daemon), timeout=RELOAD_DEADLINE,
              what="the import error to be recorded")
    assert active(daemon, "fresh_worker")
    run_id, state = run_to_end(dagd, daemon, "fresh_worker")
    errors = [a["error"] for a in dagd.attempts("fresh_worker", "step") if a["run_id"] == run_id]
    assert state == "success", errors
