"""The reads behind the API's pages stay fast however many runs there are: each walks
an index from the page's cursor (or an id) instead of scanning or sorting the table.
Checked on SQLite's own query plans, not on timings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dagd.store.sql import Q

PARAMS = {"dag_id": "d", "limit": 50, "state": None, "since": 0.0, "until": 1e18,
          "before": 2**63 - 1, "run_id": 1, "task_id": "t", "map_index": -1, "ti_id": 1,
          "id": 1, "kind": None, "outcome": None}

# query name -> the index (or the rowid) its plan must search
SEARCHED = {
    "list_runs": "INTEGER PRIMARY KEY",
    "list_dag_runs": "INDEX run_dag",
    "get_run": "INTEGER PRIMARY KEY",
    "list_tis": "INDEX sqlite_autoindex_task_instance_1",
    "get_ti": "INDEX sqlite_autoindex_task_instance_1",
    "list_attempts": "INDEX sqlite_autoindex_attempt_1",
    "list_events": "INTEGER PRIMARY KEY",
    "get_event": "INTEGER PRIMARY KEY",
    "get_xcom": "INTEGER PRIMARY KEY",
}

# Sorts only the rows of one run (its task instances), never the table's.
SORTS_ONE_RUN = {"list_tis"}


@pytest.mark.parametrize("name", list(SEARCHED))
def test_a_page_read_searches_an_index_and_sorts_nothing(name: str, template_db: Path) -> None:
    db = sqlite3.connect(f"file:{template_db}?mode=ro", uri=True)
    try:
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {getattr(Q, name)}",
                                             PARAMS)]
    finally:
        db.close()
    assert any(step.startswith("SEARCH") and SEARCHED[name] in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan
    if name not in SORTS_ONE_RUN:
        assert not any("TEMP B-TREE" in step for step in plan), plan
