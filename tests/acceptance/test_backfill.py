"""`dagd backfill` as an Airflow user means it: dates cover whole days in the timer's
timezone, the logical dates are Airflow's, and a repeated backfill says that nothing new
was queued."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import Dagd

pytestmark = pytest.mark.slow

NIGHTLY = """
    from dagd import DAG, Cron, task

    @task
    async def load(conf):
        return conf["logical_date"]

    with DAG("nightly", triggers=[Cron("0 2 * * *", timezone="Europe/Paris")]):
        load()
"""


def test_backfill_by_dates_then_again_without_a_daemon(
    dagd: Dagd, write_dag: Callable[[str, str], Path]
) -> None:
    write_dag("nightly.py", NIGHTLY)
    first = dagd.cli("backfill", "nightly", "--start", "2026-11-01", "--end", "2026-11-03")
    assert first.code == 0, first
    assert first.stdout.split("\n")[0] == (
        "nightly: 3 run(s) queued for 2026-11-01T01:00:00+00:00 .. 2026-11-03T01:00:00+00:00:"
        " 1, 2, 3 (no daemon is running: they start when `dagd run` starts)")
    again = dagd.cli("backfill", "nightly", "--start", "2026-11-01", "--end", "2026-11-03")
    assert again.code == 0, again
    assert again.stdout.strip() == (
        "nightly: nothing new queued: 3 run(s) of that range exist already: 1, 2, 3")
    wider = dagd.cli("backfill", "nightly", "--start", "2026-11-03", "--end", "2026-11-04")
    assert wider.stdout.strip().split("\n") == [
        "nightly: 1 run(s) queued for 2026-11-03T01:00:00+00:00 .. 2026-11-04T01:00:00+00:00:"
        " 4 (no daemon is running: they start when `dagd run` starts)",
        "nightly: 1 run(s) of that range exist already: 3"]
    bad = dagd.cli("backfill", "nightly", "--start", "0001-01-01", "--end", "2026-11-03")
    assert bad.code == 1
    assert "start must be between the years 1970 and 9998" in bad.stderr
    assert "Traceback" not in bad.stderr
