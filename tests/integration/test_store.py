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
from dagd.store.refusals import DETAILS, OTHER
from dagd.store.store import MANY_ROWS

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


async def test_a_big_batch_writes_every_row_with_its_own_values(tmp_path: Path) -> None:
    """A tick's many rows go many to a statement (inserts, and updates that share their
    values but the id): each row still gets exactly its own values, and one stale row
    among many refuses the whole batch."""
    store = await Store.open(tmp_path / "dagd.db")
    try:
        tasks = MANY_ROWS * 2 + 7  # over a statement's worth of inserted rows
        batch = store.batch()
        run_id = batch.create_run(dag_id="d", run_type="manual", conf={})
        batch.transition_run(run_id, RunState.QUEUED, RunState.RUNNING)
        ids = [batch.create_ti(run_id=run_id, task_id=f"t{i}", max_tries=1 + i % 3)
               for i in range(tasks)]
        await store.commit(batch)
        rows = {ti.task_id: ti for ti in await store.list_tis(run_id)}
        assert len(rows) == tasks
        assert [rows[f"t{i}"].max_tries for i in range(tasks)] == [1 + i % 3
                                                                   for i in range(tasks)]

        # Three groups of changes, and one task instance queued with a retry time.
        first = store.batch()
        first.now = 100.0
        for i, ti_id in enumerate(ids):
            first.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.SCHEDULED,
                                to=TaskState.QUEUED if i % 3 else TaskState.SKIPPED,
                                try_number=0)
        await store.commit(first)
        second = store.batch()
        second.now = 200.0
        started = [ti_id for i, ti_id in enumerate(ids) if i % 3 == 1]
        for ti_id in started:
            second.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.QUEUED,
                                 to=TaskState.RUNNING, try_number=1)
        attempts = [second.start_attempt(ti_id=ti_id, try_number=1, log_path=f"/l/{ti_id}")
                    for ti_id in started]
        await store.commit(second)

        rows = {ti.id: ti for ti in await store.list_tis(run_id)}
        for i, ti_id in enumerate(ids):
            ti = rows[ti_id]
            want = ("skipped", None, None) if i % 3 == 0 else \
                ("running", 100.0, 200.0) if i % 3 == 1 else ("queued", 100.0, None)
            assert (ti.state, ti.queued_at, ti.started_at) == want, (i, ti)
        written = {a.ti_id: (a.id, a.log_path, a.state)
                   for a in await store.running_attempts()}
        assert written == {ti_id: (attempt_id, f"/l/{ti_id}", "running")
                           for ti_id, attempt_id in zip(started, attempts, strict=True)}

        # One of many ends is stale (that task instance is queued, not running).
        stale = store.batch()
        stale.now = 300.0
        queued = next(ti_id for i, ti_id in enumerate(ids) if i % 3 == 2)
        for ti_id in [*started[:20], queued]:
            stale.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.RUNNING,
                                to=TaskState.SUCCESS, try_number=1)
        for attempt_id in attempts[:20]:
            stale.finish_attempt(attempt_id, success=True, error=None)
        with pytest.raises(StateError, match="transition_ti: 1 of 21 rows were not"):
            await store.commit(stale)
        after = {ti.id: ti for ti in await store.list_tis(run_id)}
        assert after == rows  # nothing of it was written
        assert len(await store.running_attempts()) == len(started)
    finally:
        await store.close()


def older_database(path: Path, files: list[tuple[str, str]]) -> None:
    """A database as dagd 0003 left it: a run and a task instance that ran, with every
    transition in the history (no queued_at yet)."""
    db = sqlite3.connect(path)
    try:
        for _, sql in files:
            db.executescript(sql)
        db.executescript(f"""
            PRAGMA user_version = {len(files)};
            INSERT INTO run (id, dag_id, state, run_type, conf, created_at, started_at,
                             ended_at) VALUES (1, 'd', 'success', 'manual', '{{}}', 1, 1, 3);
            INSERT INTO task_instance (id, run_id, task_id, state, try_number, max_tries,
                                       started_at, ended_at, updated_at)
                VALUES (1, 1, 't', 'success', 1, 1, 2, 3, 3);
            INSERT INTO state_history (run_id, ti_id, from_state, to_state, at) VALUES
                (1, NULL, NULL, 'queued', 1), (1, NULL, 'queued', 'running', 1),
                (1, 1, 'scheduled', 'queued', 1), (1, 1, 'queued', 'running', 2),
                (1, 1, 'running', 'success', 3), (1, NULL, 'running', 'success', 3);
        """)
    finally:
        db.close()


async def test_a_database_of_an_older_version_is_migrated_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    files = migration_files()
    older = [f for f in files if f[0] < "0004"]
    path = tmp_path / "dagd.db"
    await anyio.to_thread.run_sync(older_database, path, older)
    store = await Store.open(path)
    try:
        version, _ = await anyio.to_thread.run_sync(schema, path)
        assert version == len(files)
        [ti] = await store.list_tis(1)
        assert (ti.state, ti.queued_at, ti.started_at, ti.ended_at) == ("success", None, 2, 3)
        # Its history reads back as stored: nothing doubled, nothing lost.
        assert [(r.ti_id, r.from_state, r.to_state) for r in await store.run_history(1)] == [
            (None, None, "queued"), (None, "queued", "running"), (1, "scheduled", "queued"),
            (1, "queued", "running"), (1, "running", "success"), (None, "running", "success")]
        # New rows carry on after the old ones.
        batch = store.batch()
        assert batch.create_run(dag_id="d", run_type="manual", conf={}) == 2
        await store.commit(batch)
    finally:
        await store.close()


async def test_a_database_dagd_makes_is_readable_by_its_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "data" / "dagd.db"
    store = await Store.open(path)
    try:
        batch = store.batch()
        batch.record_event(kind="manual", source="test", dag_id=None, outcome="no_matching_dag",
                           detail="x", payload={"secret-ish": "body"})
        await store.commit(batch)
        modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()
                 if p.name.startswith("dagd.db")}
    finally:
        await store.close()
    assert modes["dagd.db"] == 0o600
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


async def test_a_version_4_ledger_is_migrated_and_refusals_are_counted_from_then_on(
    tmp_path: Path,
) -> None:
    files = migration_files()
    path = tmp_path / "dagd.db"

    def version_4(path: Path) -> None:
        db = sqlite3.connect(path)
        try:
            for _, sql in [f for f in files if f[0] < "0005"]:
                db.executescript(sql)
            db.executescript("""
                PRAGMA user_version = 4;
                INSERT INTO event (id, kind, source, dag_id, outcome, detail, created_at)
                VALUES (1, 'webhook', 'webhook:h', 'd', 'unauthorized', 'bad signature', 60),
                       (2, 'webhook', 'webhook:h', 'd', 'unauthorized', 'bad signature', 61);
            """)
        finally:
            db.close()

    await anyio.to_thread.run_sync(version_4, path)
    store = await Store.open(path)
    try:
        assert (await anyio.to_thread.run_sync(schema, path))[0] == len(files)
        old = await store.list_events()
        assert [(e.id, e.count, e.last_at) for e in old] == [(2, 1, None), (1, 1, None)]
        # Refused from now on: one row per minute (and detail), counted.
        ids = {await store.record_refusal(
            kind="webhook", source="webhook:h", dag_id="d", outcome="unauthorized",
            detail="bad signature", payload={}, run_id=None, at=120.0 + i / 10)
            for i in range(100)}
        ids.add(await store.record_refusal(
            kind="webhook", source="webhook:h", dag_id="d", outcome="unauthorized",
            detail="bad signature", payload={}, run_id=None, at=180.0))
        assert len(ids) == 2
        rows = {e.id: e for e in await store.list_events()}
        first, second = sorted(ids)
        assert (rows[first].count, rows[first].created_at, rows[first].last_at) == (
            100, 120.0, 120.0 + 99 / 10)
        assert rows[second].count == 1
        assert set(rows) == {1, 2, first, second}
    finally:
        await store.close()


async def test_refusals_of_many_kinds_in_a_minute_keep_a_few_details_apart(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "dagd.db")
    try:
        for i in range(1000):
            await store.record_refusal(
                kind="webhook", source="webhook:h", dag_id=None, outcome="rejected",
                detail=f"body is not valid JSON at char {i % 50}", payload={}, run_id=None,
                at=600.0)
        rows = await store.list_events(limit=1000)
        assert len(rows) == DETAILS + 1
        assert sum(r.count for r in rows) == 1000
        assert [r.detail for r in rows if r.count > 100] == [OTHER]
    finally:
        await store.close()


def wal_of(path: Path) -> Path:
    return Path(f"{path}-wal")


def copy_as_a_crash_leaves_it(path: Path, to: Path) -> None:
    """The database and its write-ahead log as they are on disk now, while open."""
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_bytes(path.read_bytes())
    wal_of(to).write_bytes(wal_of(path).read_bytes())


async def test_the_write_ahead_log_is_at_its_working_size_from_the_first_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dagd.db"
    store = await Store.open(path, sized_wal=True)
    try:
        db = sqlite3.connect(path)
        pages, page_size = (db.execute(f"PRAGMA {p}").fetchone()[0]
                            for p in ("wal_autocheckpoint", "page_size"))
        db.close()
        grown = wal_of(path).stat().st_size
        assert grown >= pages * page_size
        # A commit is written over the log's head: the file does not lengthen.
        batch = store.batch()
        run_id = batch.create_run(dag_id="d", run_type="manual", conf={"k": 1})
        await store.commit(batch)
        assert wal_of(path).stat().st_size == grown
        # And it is in the log, durable: a copy taken now, as a crash leaves the
        # files, holds it.
        copy_as_a_crash_leaves_it(path, tmp_path / "crash" / "dagd.db")
    finally:
        await store.close()
    copy = await Store.open(tmp_path / "crash" / "dagd.db", sized_wal=True)
    try:
        assert (await copy.get_run(run_id)).conf == {"k": 1}
    finally:
        await copy.close()


async def test_growing_the_log_keeps_the_commits_a_crash_left_in_it(tmp_path: Path) -> None:
    path = tmp_path / "dagd.db"
    await (await Store.open(path)).close()  # the schema, checkpointed; the log deleted
    version, objects = await anyio.to_thread.run_sync(schema, path)
    # A commit left in a short log, as by a process killed before its checkpoint.
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("INSERT INTO import_error (file, line, message, traceback, created_at) "
               "VALUES ('a.py', 3, 'left in the log', '', 1.0)")
    assert wal_of(path).stat().st_size < 100_000
    copy_as_a_crash_leaves_it(path, tmp_path / "crash" / "dagd.db")
    db.close()
    crashed = tmp_path / "crash" / "dagd.db"
    store = await Store.open(crashed, sized_wal=True)
    try:
        assert wal_of(crashed).stat().st_size > 100_000
        assert [e.message for e in await store.list_import_errors()] == ["left in the log"]
    finally:
        await store.close()
    assert await anyio.to_thread.run_sync(schema, crashed) == (version, objects)
