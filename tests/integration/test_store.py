"""The store on a real SQLite file: schema versioning and compare-and-set writes."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import pytest

from dagd.errors import StateError
from dagd.states import RunState, TaskState
from dagd.store import Store

pytestmark = pytest.mark.anyio


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("dagd.store").joinpath("migrations")
    found = sorted(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    assert all(re.match(r"^\d{4}_\w+\.sql$", name) for name, _ in found), found
    return found


def schema(path: Path) -> tuple[int, list[tuple[Any, ...]]]:
    """(user_version, every schema object) of the database at `path`."""
    db = sqlite3.connect(path)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        objects = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    finally:
        db.close()
    return version, objects


def apply_by_hand(path: Path, files: list[tuple[str, str]]) -> None:
    db = sqlite3.connect(path)
    try:
        for _, sql in files:
            db.executescript(sql)
    finally:
        db.close()


async def test_fresh_schema_is_all_migrations_and_reopening_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fresh" / "dagd.db"
    store = await Store.open(path)
    batch = store.batch()
    first_run = batch.create_run(dag_id="d", run_type="manual", conf={"k": 1})
    await store.commit(batch)
    await store.close()
    version, objects = await anyio.to_thread.run_sync(schema, path)

    files = migration_files()
    assert files, "no migration files"
    assert version == len(files)
    reference = tmp_path / "by_hand.db"
    await anyio.to_thread.run_sync(apply_by_hand, reference, files)
    assert objects == (await anyio.to_thread.run_sync(schema, reference))[1]

    # Reopening applies nothing, keeps the rows, and carries on the ids.
    store = await Store.open(path)
    try:
        assert (await store.get_run(first_run)).conf == {"k": 1}
        batch = store.batch()
        second_run = batch.create_run(dag_id="d", run_type="manual", conf={})
        await store.commit(batch)
    finally:
        await store.close()
    assert second_run == first_run + 1
    assert await anyio.to_thread.run_sync(schema, path) == (version, objects)


async def test_a_state_write_that_does_not_match_raises_and_rolls_back(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "dagd.db")
    try:
        batch = store.batch()
        run_id = batch.create_run(dag_id="d", run_type="manual", conf={})
        batch.transition_run(run_id, RunState.QUEUED, RunState.RUNNING)
        ti_id = batch.create_ti(run_id=run_id, task_id="t", max_tries=1)
        await store.commit(batch)
        history_before = await store.run_history(run_id)

        # The row is 'scheduled'; this batch believes it is 'queued'.
        stale = store.batch()
        stale.record_event(kind="manual", source="test", dag_id="d", payload={},
                           outcome="run_created")
        other_run = stale.create_run(dag_id="d", run_type="manual", conf={})
        stale.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.QUEUED,
                            to=TaskState.RUNNING, try_number=1)
        with pytest.raises(StateError, match="transition_ti: 1 of 1 rows were not"):
            await store.commit(stale)

        # Nothing of that batch was written, not even the rows before the mismatch.
        [ti] = await store.list_tis(run_id)
        assert (ti.state, ti.try_number) == ("scheduled", 0)
        assert await store.run_history(run_id) == history_before
        assert await store.list_events() == []
        assert [r.id for r in await store.list_runs()] == [run_id]
        assert other_run != run_id

        # A transition the table forbids is refused before it reaches the database.
        with pytest.raises(StateError, match="cannot go from scheduled to success"):
            store.batch().transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.SCHEDULED,
                                        to=TaskState.SUCCESS, try_number=0)

        # The connection is usable: a matching write commits.
        good = store.batch()
        good.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.SCHEDULED,
                           to=TaskState.QUEUED, try_number=0)
        await store.commit(good)
        assert (await store.get_ti(run_id, "t")).state == "queued"
    finally:
        await store.close()
