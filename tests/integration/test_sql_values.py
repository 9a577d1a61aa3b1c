"""Values from outside in a SqlTask, against a real SQLite file: in parameters they are
bound (a `'; DROP TABLE` stays text), and in the SQL text only a name, a number or an
ISO date is rendered, so a webhook's conf overriding a param cannot add a statement."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integration.harness import StartEngine

pytestmark = pytest.mark.anyio

WriteDag = Callable[[str, str], Path]

BY_TABLE = """
from dagd import DAG, SqlTask

with DAG("by_table", params={"table": "people", "name": "nobody"}) as by_table:
    SqlTask(task_id="count", conn="sqlite:///{db}", fetch="one",
            sql="SELECT count(*) AS n FROM {{ params.table }}")
    SqlTask(task_id="insert", conn="sqlite:///{db}", parameters={"name": "{{ params.name }}"},
            sql="INSERT INTO people (name) VALUES (:name)")
"""


def make_db(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
        conn.execute("CREATE TABLE keep (n INTEGER)")
        conn.execute("INSERT INTO keep VALUES (1)")
    return path


@pytest.mark.parametrize("attack", [
    "people; DROP TABLE keep",
    "keep; DELETE FROM keep",
    "people -- x",
    "'; DROP TABLE keep; --",
    "people WHERE 1=1",
])
async def test_a_conf_value_cannot_become_sql_text(
    attack: str, write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "w.db")
    write_dag("by_table.py", BY_TABLE.replace("{db}", str(db)))
    async with start_engine() as h:
        # conf overrides a declared param: both come from the webhook's body here.
        run_id, state = await h.run("by_table", conf={"table": attack, "name": attack})
        states = await h.states(run_id)
        [count] = await h.attempts(run_id, "count")
    assert (state, states) == ("failed", {"count": "failed", "insert": "success"})
    assert count.error is not None
    assert count.error.startswith(
        "TemplateRenderError: DAG 'by_table', task 'count', field 'sql': a value rendered "
        f"into SQL text must be a name, a number or an ISO date, got {attack!r}: pass "
        "values as parameters (:name), bound by the driver")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT n FROM keep").fetchall() == [(1,)]
        # In a parameter the same text is bound: stored as it was sent.
        assert conn.execute("SELECT name FROM people").fetchall() == [(attack,)]


async def test_a_name_still_renders_into_sql_text(
    write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "w.db")
    write_dag("by_table.py", BY_TABLE.replace("{db}", str(db)))
    async with start_engine() as h:
        run_id, state = await h.run("by_table", conf={"table": "main.keep"})
        value = await h.xcom(run_id, "count")
    assert (state, value) == ("success", {"n": 1})


DATED = """
from dagd import DAG, SqlTask

with DAG("dated", params={"day": "2026-01-01"}) as dated:
    SqlTask(task_id="pick", conn="sqlite:///{db}", fetch="one",
            sql="SELECT '{{ ds }}' AS ds, '{{ ts }}' AS ts, '{{ params.day }}' AS day")
"""


async def test_an_iso_date_renders_into_sql_text_as_airflow_sql_writes_it(
    write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    """`WHERE day = '{{ ds }}'` is how Airflow's SQL names the run's day."""
    db = make_db(tmp_path / "w.db")
    write_dag("dated.py", DATED.replace("{db}", str(db)))
    async with start_engine() as h:
        run_id = await h.engine.trigger("dated", conf={"day": "2026-11-02"},
                                        logical_date=datetime(2026, 11, 1, 2, tzinfo=UTC))
        assert await h.wait(run_id) == "success"
        value = await h.xcom(run_id, "pick")
        _, refused = await h.run("dated", conf={"day": "2026-11-02' OR '1'='1"})
    assert value == {"ds": "2026-11-01", "ts": "2026-11-01T02:00:00+00:00",
                     "day": "2026-11-02"}
    assert refused == "failed"
