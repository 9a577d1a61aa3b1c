"""Numbers a user types that no run, event or page can have (past 64 bits, negative
limits) get a one-line usage error from the CLI, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import Dagd

pytestmark = pytest.mark.slow

BIG = "99999999999999999999"

DAG = """
    from dagd import DAG, PythonTask

    async def noop():
        return None

    with DAG("d"):
        PythonTask(task_id="t", python_callable=noop)
"""


@pytest.mark.parametrize(("args", "where"), [
    (("logs", "d", BIG, "t"), "argument run: must be between 0 and"),
    (("logs", "d", "1", "t", "--map-index", BIG), "argument --map-index: must be between"),
    (("logs", "d", "1", "t", "--try", "0"), "argument --try: must be between 1 and"),
    (("tasks", "list", "d", BIG), "argument run: must be between 0 and"),
    (("events", "list", "--limit", "-1"), "argument --limit: must be between 1 and 1000"),
    (("runs", "list", "--limit", "many"), "argument --limit: expected a whole number"),
    (("events", "replay", BIG), "argument event: must be between 0 and"),
])
def test_a_number_out_of_range_is_a_usage_error(
    dagd: Dagd, write_dag: Callable[[str, str], Path], args: tuple[str, ...], where: str
) -> None:
    write_dag("d.py", DAG)
    result = dagd.cli(*args)
    assert result.code == 2, result
    assert where in result.stderr, result
    assert "Traceback" not in result.stderr + result.stdout
