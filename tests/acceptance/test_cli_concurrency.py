"""Concurrent offline CLI commands (no daemon running) queue on the data directory's
lock and all succeed; none is sent to a guessed daemon address."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from acceptance.harness import Dagd

pytestmark = pytest.mark.slow

DAG = """
    from dagd import DAG, PythonTask

    async def noop():
        return None

    with DAG("d"):
        PythonTask(task_id="t", python_callable=noop)
"""


def test_six_concurrent_offline_triggers_all_queue_a_run(
    dagd: Dagd, write_dag: Callable[[str, str], Path]
) -> None:
    write_dag("d.py", DAG)
    for round_ in range(3):
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: dagd.cli("trigger", "d"), range(6)))
        for result in results:
            assert result.code == 0, result
            assert "8080" not in result.output and "already using" not in result.output
        listed = dagd.cli("runs", "list", "--limit", "100")
        assert listed.code == 0, listed
        assert listed.stdout.count(" queued") == 6 * (round_ + 1), listed
