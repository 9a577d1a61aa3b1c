"""Broken DAG files: the daemon starts anyway, runs the good DAGs, and says where it hurts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import Dagd, table_rows

pytestmark = pytest.mark.slow

GOOD = """
    from dagd import DAG, PythonTask


    async def hello(run_id):
        print(f"hello from run {run_id}")


    with DAG("good", description="the one that works"):
        PythonTask(task_id="hello", python_callable=hello)
"""

BROKEN = """
    from dagd import DAG

    with DAG("broken"):
        def step(:
            pass
"""

CYCLIC = """
    from dagd import DAG, PythonTask


    def noop():
        pass


    with DAG("cyclic"):
        extract = PythonTask(task_id="extract", python_callable=noop)
        transform = PythonTask(task_id="transform", python_callable=noop)
        load = PythonTask(task_id="load", python_callable=noop)
        extract >> transform >> load >> extract
"""


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_bad_files_are_reported_and_the_good_dag_runs(
    dagd: Dagd, write_dag: Callable[..., Path]
) -> None:
    write_dag("good.py", GOOD)
    broken = write_dag("broken.py", BROKEN).resolve()
    cyclic = write_dag("cyclic.py", CYCLIC).resolve()
    daemon = dagd.start()

    trig = dagd.cli("trigger", "good")
    assert trig.code == 0, trig
    assert "good: run 1 queued" in trig.stdout

    errors = dagd.cli("dags", "errors")
    assert errors.code == 1, errors
    assert f"{broken}:{line_of(broken, 'def step(:')}" in errors.stdout
    assert "SyntaxError" in errors.stdout
    assert f"{cyclic}:{line_of(cyclic, 'with DAG')}" in errors.stdout
    assert "cycle in dependencies: extract -> transform -> load -> extract" in errors.stdout
    assert "Traceback" not in errors.output

    listing = dagd.cli("dags", "list")
    assert listing.code == 0, listing
    assert [row[0] for row in table_rows(listing.stdout)] == ["good"]
    assert "2 file(s) failed to import" in listing.stderr

    status, body = daemon.request("GET", "/api/v1/import-errors")
    assert status == 200
    assert sorted(e["file"] for e in body["import_errors"]) == sorted([str(broken), str(cyclic)])

    dagd.wait_runs({1: "success"}, timeout=20)
    assert [(a["state"], a["error"]) for a in dagd.attempts("good", "hello")] == [
        ("success", None)
    ]
