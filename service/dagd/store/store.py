"""Store: opens the database, applies migrations, commits batches, answers reads.

One writer connection per process. A write transaction runs whole inside one call to
a worker thread (one thread hop per transaction, however many rows), opened with
`BEGIN IMMEDIATE`, and such calls run one at a time, so "database is locked" cannot
happen inside the daemon. Reads go through aiosqlite on their own connection. A
read-only store (the CLI's) opens the file with `mode=ro` and has no writer.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import operator
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import orjson

from dagd.errors import DagdError, NotFound, StateError, StorageUnavailable
from dagd.store.batch import CAS, ORDER, Batch, IdCounter
from dagd.store.history import complete as complete_history
from dagd.store.refusals import record as count_refusal
from dagd.store.rows import (
    AttemptRow,
    DagRow,
    EventRow,
    HistoryRow,
    ImportErrorRow,
    NotificationRow,
    RunRow,
    TaskInstanceRow,
)
from dagd.store.sql import Q, migrations

log = logging.getLogger(__name__)

MAX_ID = 2**63 - 1  # SQLite's largest integer: "no cursor"
MAX_TIME = 1e18  # seconds: past any time a row holds, "no bound"

# SQLite's answers that mean "this cannot be written now", not "this write is wrong".
UNWRITABLE = ("SQLITE_FULL", "SQLITE_IOERR")


def unwritable(path: Path, exc: sqlite3.Error) -> StorageUnavailable:
    """The one line an operator needs: what failed, and how much room is left."""
    try:
        free = f"{shutil.disk_usage(path.parent).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    return StorageUnavailable(f"cannot write the database {path}: {exc} ({free} on "
                              f"{path.parent})")


class Store:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        *,
        writer: sqlite3.Connection | None = None,
    ) -> None:
        self.conn = conn  # reads, through aiosqlite
        conn.row_factory = sqlite3.Row  # rows.py maps columns by name
        self.path = path
        self.readonly = writer is None
        self._writer = writer
        # One writer: a transaction runs whole in one worker-thread call, one at a time.
        self._limiter = anyio.CapacityLimiter(1)
        self.ids = IdCounter({"run": 0, "ti": 0, "attempt": 0, "event": 0})
        self._snapshot = anyio.Lock()  # one read transaction at a time on `conn`

    # -- lifecycle -------------------------------------------------------------------
    @classmethod
    async def open(
        cls, path: Path, *, synchronous: str = "full", readonly: bool = False,
        sized_wal: bool = False,
    ) -> Store:
        """The store at `path`. `sized_wal`: for a process that goes on committing (the
        daemon), grow the write-ahead log to its working size first (see
        `size_wal`); a one-off command's few commits do not need it."""
        if readonly:
            if not await anyio.Path(path).exists():
                raise NotFound(f"no database at {path}: start the daemon with `dagd run` first")
            conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True)
            await conn.execute("PRAGMA query_only = ON")
            await conn.execute("PRAGMA busy_timeout = 5000")
            store = cls(conn, path)
            await store._check_schema()
            return store
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        try:
            writer = await anyio.to_thread.run_sync(_open_writer, path, synchronous)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "").startswith(UNWRITABLE):
                raise unwritable(path, exc) from None
            raise
        conn = await aiosqlite.connect(path)
        await conn.execute("PRAGMA busy_timeout = 5000")
        store = cls(conn, path, writer=writer)
        await store._run(_migrate, writer, path)
        if sized_wal:
            await store._run(size_wal, writer, path, synchronous)
        row = await store._run(_fetchone, writer, Q.max_ids)
        store.ids = IdCounter({name: row[name] for name in ("run", "ti", "attempt", "event")})
        return store

    async def close(self) -> None:
        await self.conn.close()
        if self._writer is not None:
            await self._run(self._writer.close)
            self._writer = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "").startswith(UNWRITABLE):
                raise unwritable(self.path, exc) from None
            raise

    async def _check_schema(self) -> None:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        if not row or row[0] == 0:
            raise NotFound(f"database at {self.path} has no schema yet: start `dagd run` first")

    # -- writing ---------------------------------------------------------------------
    def batch(self) -> Batch:
        return Batch(ids=self.ids)

    def _need_writer(self) -> sqlite3.Connection:
        if self._writer is None:
            raise DagdError("this store was opened read-only", file=str(self.path))
        return self._writer

    async def commit(self, batch: Batch) -> None:
        """Write every row of the batch in one transaction; CAS updates must all match."""
        if batch:
            await self._run(_commit, self._need_writer(), batch)

    async def _write(self, statements: list[tuple[str, Any]]) -> None:
        await self._run(_write, self._need_writer(), statements)

    async def record_refusal(
        self, *, kind: str, source: str, dag_id: str | None, outcome: str, detail: str,
        payload: Any, run_id: int | None, at: float,
    ) -> int:
        """A delivery that started nothing, counted on its minute's row (see
        `refusals`): a flood adds a few rows a minute, not a row each. Its row's id."""
        params = {"id": self.ids.next("event"), "kind": kind, "source": source,
                  "dag_id": dag_id, "payload": orjson.dumps(payload).decode(),
                  "outcome": outcome, "detail": detail, "run_id": run_id, "at": at,
                  "minute": int(at // 60)}
        return int(await self._run(count_refusal, self._need_writer(), params))

    async def on_writer(self, fn: Any, *args: Any) -> Any:
        """`fn(db, *args)` on the writer's thread, alone: the transactions of the store's
        own modules (dagd.store.retention)."""
        return await self._run(fn, self._need_writer(), *args)

    async def sync_dags(
        self,
        described: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        *,
        known_ids: Iterable[str] = (),
    ) -> None:
        """Record the DAGs just loaded and the import errors; others become inactive."""
        now = time.time()
        present = {d["dag_id"] for d in described}
        gone = [
            {"dag_id": dag_id, "at": now} for dag_id in known_ids if dag_id not in present
        ]
        await self._write(
            [
                (
                    Q.upsert_dag,
                    [
                        {
                            "dag_id": d["dag_id"],
                            "fileloc": d["fileloc"] or "",
                            "description": d["description"] or "",
                            "spec": orjson.dumps(d).decode(),
                            "at": now,
                        }
                        for d in described
                    ],
                ),
                (Q.deactivate_dag, gone),
                (Q.clear_import_errors, {}),
                (Q.insert_import_error, [{**e, "at": now} for e in errors]),
            ]
        )

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        await self.get_dag(dag_id)
        params = {"dag_id": dag_id, "paused": int(paused), "at": time.time()}
        await self._write([(Q.set_paused, params)])

    # -- reading ---------------------------------------------------------------------
    async def _all(self, sql: str, params: dict[str, Any] | None = None) -> list[sqlite3.Row]:
        async with self.conn.execute(sql, params or {}) as cur:
            return list(await cur.fetchall())

    async def list_dags(self) -> list[DagRow]:
        return [DagRow.from_row(r) for r in await self._all(Q.list_dags)]

    async def get_dag(self, dag_id: str) -> DagRow:
        rows = await self._all(Q.get_dag, {"dag_id": dag_id})
        if not rows:
            raise NotFound("no such DAG", dag_id=dag_id)
        return DagRow.from_row(rows[0])

    async def list_import_errors(self) -> list[ImportErrorRow]:
        return [ImportErrorRow.from_row(r) for r in await self._all(Q.list_import_errors)]

    async def list_runs(
        self, dag_id: str | None = None, *, limit: int = 50, state: str | None = None,
        since: float | None = None, until: float | None = None, before: int | None = None,
    ) -> list[RunRow]:
        """Runs newest first: of one DAG or all, in a state, created in [since, until),
        with ids below `before` (the keyset cursor of the page before)."""
        params = {"dag_id": dag_id, "limit": limit, "state": state,
                  "since": -MAX_TIME if since is None else since,
                  "until": MAX_TIME if until is None else until,
                  "before": MAX_ID if before is None else before}
        rows = await self._all(Q.list_runs if dag_id is None else Q.list_dag_runs, params)
        return [RunRow.from_row(r) for r in rows]

    async def get_run(self, run_id: int, dag_id: str | None = None) -> RunRow:
        rows = await self._all(Q.get_run, {"id": run_id})
        if not rows or (dag_id is not None and rows[0]["dag_id"] != dag_id):
            raise NotFound(f"no run {run_id}", dag_id=dag_id)
        return RunRow.from_row(rows[0])

    async def active_runs(self) -> list[RunRow]:
        return [RunRow.from_row(r) for r in await self._all(Q.active_runs)]

    async def list_tis(self, run_id: int) -> list[TaskInstanceRow]:
        rows = await self._all(Q.list_tis, {"run_id": run_id})
        return [TaskInstanceRow.from_row(r) for r in rows]

    async def active_tis(self) -> list[TaskInstanceRow]:
        return [TaskInstanceRow.from_row(r) for r in await self._all(Q.active_tis)]

    async def active_xcoms(self) -> dict[int, Any]:
        return {r["ti_id"]: orjson.loads(r["value"]) for r in await self._all(Q.active_xcoms)}

    async def get_xcom(self, ti_id: int) -> Any:
        rows = await self._all(Q.get_xcom, {"ti_id": ti_id})
        return orjson.loads(rows[0]["value"]) if rows else None

    async def get_ti(self, run_id: int, task_id: str, map_index: int = -1) -> TaskInstanceRow:
        rows = await self._all(
            Q.get_ti, {"run_id": run_id, "task_id": task_id, "map_index": map_index}
        )
        if not rows:
            raise NotFound(f"no task instance {task_id!r} in run {run_id}", task_id=task_id)
        return TaskInstanceRow.from_row(rows[0])

    async def not_run_yet(self, ti: TaskInstanceRow) -> NotFound:
        """Why a task instance has no attempt (no log): not run yet, or a mapped task
        whose instances ran instead (which to ask for, then)."""
        if ti.map_index < 0:
            indexes = [t.map_index for t in await self.list_tis(ti.run_id)
                       if t.task_id == ti.task_id and t.map_index >= 0]
            if indexes:
                return NotFound(f"{ti.task_id!r} is a mapped task: its {len(indexes)} "
                                f"instances ran, each with its own log; ask for one with "
                                f"map_index {min(indexes)} to {max(indexes)}",
                                task_id=ti.task_id, field="map_index")
        return NotFound(f"the task has not run yet in run {ti.run_id}", task_id=ti.task_id)

    async def list_attempts(self, ti_id: int) -> list[AttemptRow]:
        return [AttemptRow.from_row(r) for r in await self._all(Q.list_attempts, {"ti_id": ti_id})]

    async def running_attempts(self) -> list[AttemptRow]:
        return [AttemptRow.from_row(r) for r in await self._all(Q.running_attempts)]

    async def run_history(self, run_id: int) -> list[HistoryRow]:
        """Every state change of the run and its task instances, in order (the quiet
        ones, which only the task instances' rows record, included)."""
        rows = await self._all(Q.run_history, {"run_id": run_id})
        return complete_history([HistoryRow.from_row(r) for r in rows],
                                await self.list_tis(run_id))

    async def history_since(self, since: float, *, limit: int = 100_000) -> list[HistoryRow]:
        """State changes at or after `since` (a time), oldest first."""
        rows = await self._all(Q.history_since, {"since": since, "limit": limit})
        tis = await self._all(Q.tis_changed_since, {"since": since})
        return complete_history([HistoryRow.from_row(r) for r in rows],
                                [TaskInstanceRow.from_row(r) for r in tis], since=since)[:limit]

    async def changes_since(self, since: float, *, limit: int = 100_000) -> tuple[
            list[HistoryRow], list[TaskInstanceRow], list[AttemptRow], list[EventRow],
            list[RunRow]]:
        """What changed at or after `since`, read in one transaction (so no commit is
        half seen): the state changes (as `history_since`, at most `limit`), the task
        instances changed, the attempts started or ended, the events recorded, and the
        runs of those changes. The live stream's catch-up."""
        async with self._snapshot:
            await self.conn.execute("BEGIN")
            try:
                params = {"since": since, "limit": limit}
                history = [HistoryRow.from_row(r) for r in await self._all(Q.history_since,
                                                                            params)]
                tis = [TaskInstanceRow.from_row(r)
                       for r in await self._all(Q.tis_changed_since, params)]
                attempts = [AttemptRow.from_row(r)
                            for r in await self._all(Q.attempts_since, params)]
                events = [EventRow.from_row(r) for r in await self._all(Q.events_since, params)]
                run_ids = sorted({h.run_id for h in history} | {t.run_id for t in tis})
                runs = [RunRow.from_row(r) for r in await self._all(
                    Q.runs_by_ids, {"ids": orjson.dumps(run_ids).decode()})]
            finally:
                with anyio.CancelScope(shield=True):  # never leave `conn` in a transaction
                    await self.conn.execute("COMMIT")
        return (complete_history(history, tis, since=since)[:limit], tis, attempts, events,
                runs)

    async def get_attempt(self, attempt_id: int) -> AttemptRow:
        rows = await self._all(Q.get_attempt, {"id": attempt_id})
        if not rows:
            raise NotFound(f"no attempt {attempt_id}")
        return AttemptRow.from_row(rows[0])

    async def counts(self) -> dict[str, list[tuple[Any, ...]]]:
        """For the metrics: runs and task instances by DAG and state, (dag_id, state, n);
        pending notifications and import errors, (n,)."""
        names = ("runs_by_state", "tis_by_state", "pending_notifications",
                 "import_error_count")
        return {name: [tuple(r) for r in await self._all(getattr(Q, name))]
                for name in names}

    async def list_events(
        self, dag_id: str | None = None, *, limit: int = 50, kind: str | None = None,
        outcome: str | None = None, before: int | None = None,
    ) -> list[EventRow]:
        """The ledger newest first, filtered; ids below `before` (a keyset cursor)."""
        rows = await self._all(Q.list_events, {
            "dag_id": dag_id, "limit": limit, "kind": kind, "outcome": outcome,
            "before": MAX_ID if before is None else before})
        return [EventRow.from_row(r) for r in rows]

    async def get_event(self, event_id: int) -> EventRow:
        rows = await self._all(Q.get_event, {"id": event_id})
        if not rows:
            raise NotFound(f"no event {event_id}")
        return EventRow.from_row(rows[0])

    async def find_event(
        self, *, kind: str, source: str, dag_id: str | None, dedup_key: str
    ) -> EventRow | None:
        rows = await self._all(
            Q.find_event,
            {"kind": kind, "source": source, "dag_id": dag_id, "dedup_key": dedup_key},
        )
        return EventRow.from_row(rows[0]) if rows else None

    async def last_dedup_key(self, *, kind: str, source: str, dag_id: str) -> str | None:
        rows = await self._all(Q.last_dedup_key, {"kind": kind, "source": source, "dag_id": dag_id})
        return rows[0][0] if rows else None

    async def due_notifications(self, now: float, *, limit: int = 100) -> list[NotificationRow]:
        rows = await self._all(Q.due_notifications, {"now": now, "limit": limit})
        return [NotificationRow.from_row(r) for r in rows]

    async def next_notification_at(self) -> float | None:
        rows = await self._all(Q.next_notification_at)
        return rows[0][0] if rows else None

    async def list_notifications(
        self, dag_id: str | None = None, *, limit: int = 50, state: str | None = None,
    ) -> list[NotificationRow]:
        rows = await self._all(Q.list_notifications,
                               {"dag_id": dag_id, "limit": limit, "state": state})
        return [NotificationRow.from_row(r) for r in rows]

    async def get_notification(self, notification_id: int) -> NotificationRow:
        rows = await self._all(Q.get_notification, {"id": notification_id})
        if not rows:
            raise NotFound(f"no notification {notification_id}")
        return NotificationRow.from_row(rows[0])

    async def notification_thread(self, row: NotificationRow) -> list[tuple[int, float]]:
        """(id, created_at) of the earlier messages of `row`'s thread, oldest first."""
        if row.ti_id is None:
            return []
        rows = await self._all(Q.notification_thread, {
            "dag_id": row.dag_id, "ti_id": row.ti_id, "notifier": row.notifier,
            "id": row.id})
        return [(int(r[0]), float(r[1])) for r in rows]

    async def retry_notification(self, notification_id: int) -> None:
        """A failed notification owed again now; refused unless it is failed."""
        row = await self.get_notification(notification_id)
        if row.state != "failed":
            raise StateError(f"notification {notification_id} is {row.state}: only a failed "
                             "one can be retried")
        await self._write([(Q.retry_notification, {"id": notification_id, "now": time.time()})])

    async def notification_sent(self, notification_id: int, note: str | None = None) -> None:
        await self._write([(Q.notification_sent,
                            {"id": notification_id, "at": time.time(), "note": note})])

    async def notification_failed(
        self, notification_id: int, error: str, next_attempt_at: float | None
    ) -> None:
        """Record a failed send: retried at `next_attempt_at`, or given up if None."""
        params = {
            "id": notification_id, "error": error,
            "state": "pending" if next_attempt_at is not None else "failed",
            "next_attempt_at": next_attempt_at if next_attempt_at is not None else 0.0,
        }
        await self._write([(Q.notification_failed, params)])

    async def sqlite_version(self) -> str:
        rows = await self._all("SELECT sqlite_version()")
        return str(rows[0][0])

    # -- reading for the web UI's pages ----------------------------------------------
    async def runs_page(self, dag_id: str, *, before: int | None = None,
                        limit: int = 25) -> list[RunRow]:
        """A DAG's runs older than run `before` (all when None), newest first."""
        rows = await self._all(Q.ui_runs_page,
                               {"dag_id": dag_id, "before": before, "limit": limit})
        return [RunRow.from_row(r) for r in rows]

    async def tis_of_runs(self, run_ids: Iterable[int]) -> list[TaskInstanceRow]:
        rows = await self._all(Q.ui_tis_of_runs,
                               {"run_ids": orjson.dumps(list(run_ids)).decode()})
        return [TaskInstanceRow.from_row(r) for r in rows]

    async def run_attempts(self, run_id: int) -> list[AttemptRow]:
        """Every attempt of the run's task instances, by task instance then try."""
        rows = await self._all(Q.ui_run_attempts, {"run_id": run_id})
        return [AttemptRow.from_row(r) for r in rows]


# -- the writer thread's side: plain sqlite3, called through Store._run -------------------
def _open_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    # The database holds every run's conf (webhook bodies among them): readable by its
    # owner alone, when dagd makes it. SQLite gives its -wal and -shm files that mode.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 5000")
    return db


# The log is not grown on a disk with less than this free: its megabytes are better
# left to the commits (and a disk that fills must show as full, not be hidden by them).
SIZE_WAL_MIN_FREE = 256 * 1024 * 1024


def size_wal(db: sqlite3.Connection, path: Path, synchronous: str) -> None:
    """Grow a short write-ahead log to the size it works at (the autocheckpoint's
    pages), so that commits overwrite blocks the file already has. A commit that also
    lengthens the file makes its sync write the file's size as well, which on ext4 costs
    about twice as much (about 130 against 290 us for a page): without this, the first
    megabytes after each start (SQLite deletes the log when the last connection closes)
    are the slow kind. The log is grown with commits that change nothing (the schema
    version set to itself, one page each, unsynced: nothing in them needs to survive)
    and then checkpointed, so the next commit starts over at its head. It is a saving,
    not a need: on a disk short of room, or if a write fails, the log stays as it is."""
    pages = db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    wal = Path(f"{path}-wal")
    have = wal.stat().st_size if wal.exists() else 0
    if pages <= 0 or have >= pages * page_size:
        return
    disk = os.statvfs(path.parent)
    if disk.f_bavail * disk.f_frsize < SIZE_WAL_MIN_FREE:
        return
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    # Unsynced and not checkpointed on their own: a checkpoint in between would copy
    # earlier, real commits into the database unsynced, before the log is reused.
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("PRAGMA synchronous = OFF")
    try:
        for _ in range(pages):
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        _rollback(db)
        log.warning("the write-ahead log of %s is not grown further: %s", path, exc)
    finally:
        db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        db.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")
    # Synced as the store's setting says: the log first, then the database.
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _fetchone(db: sqlite3.Connection, sql: str) -> sqlite3.Row | None:
    cur = db.cursor()
    cur.row_factory = sqlite3.Row  # by name, like the reads; the writer keeps tuples
    row: sqlite3.Row | None = cur.execute(sql).fetchone()
    return row


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    current = db.execute("PRAGMA user_version").fetchone()[0]
    known = migrations()
    if current > len(known):
        raise DagdError(
            f"database schema version {current} is newer than this dagd knows "
            f"({len(known)}); upgrade dagd",
            file=str(path),
        )
    for version, name, sql in known[current:]:
        log.info("applying migration %s to %s", name, path)
        db.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")


# The rows of these statements that share every value but their id are written as one
# statement over a JSON array of the ids (a tick's starts, its ends): about 1.5 us a row
# in SQLite, against 6 to 9 us for a statement a row.
GROUPED: dict[str, tuple[str, tuple[str, ...]]] = {
    "transition_ti": (Q.transition_tis, ("from_state", "to_state", "try_number",
                                         "next_attempt_at", "queued_at", "started_at",
                                         "ended_at", "at")),
    "finish_attempt": (Q.finish_attempts, ("state", "at", "error")),
}
GROUP_MIN = 4  # fewer rows than this: a statement each
# The inserts of these statements are written many rows to a statement (see
# `_insert_many`): a statement a row gives up the GIL and takes it back for each row,
# and that hand-over with the loop's thread costs more than the row.
MANY = frozenset({"insert_ti", "insert_attempt"})
MANY_ROWS = 256  # rows per statement at most (12 columns: under SQLite's 32,766 values)


def _commit(db: sqlite3.Connection, batch: Batch) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in ORDER:
            rows = batch.rows[name]
            if not rows:
                continue
            grouped = GROUPED.get(name)
            if grouped is not None and len(rows) >= GROUP_MIN:
                matched = _write_grouped(db, *grouped, rows)
            elif name in MANY and len(rows) > 1:
                matched = _insert_many(db, name, rows)
            else:
                matched = db.executemany(getattr(Q, name), rows).rowcount
            if name in CAS and matched != len(rows):
                raise StateError(
                    f"{name}: {len(rows) - matched} of {len(rows)} rows were not "
                    "in the expected state (changed elsewhere)"
                )
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _write_grouped(db: sqlite3.Connection, sql: str, keys: tuple[str, ...],
                   rows: list[dict[str, Any]]) -> int:
    """Rows grouped by their values but the id, a statement per group; how many rows
    of the table matched (each row's id is in one group only)."""
    values_of = operator.itemgetter(*keys)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        groups.setdefault(values_of(row), []).append(row["id"])
    matched = 0
    for values, ids in groups.items():
        params = dict(zip(keys, values, strict=True))
        params["ids"] = orjson.dumps(ids).decode()
        matched += db.execute(sql, params).rowcount
    return matched


_PARAM = re.compile(r":(\w+)")


@functools.cache
def _values_shape(name: str) -> tuple[str, str, tuple[str, ...]]:
    """Named insert `name` as (its text up to VALUES, its row of values with `?`
    for each parameter, the parameters in order)."""
    head, _, row = re.split(r"\s(VALUES)\s", getattr(Q, name).rstrip().rstrip(";"), maxsplit=1)
    return head, _PARAM.sub("?", row), tuple(_PARAM.findall(row))


@functools.cache
def _insert_sql(name: str, count: int) -> str:
    head, row, _ = _values_shape(name)
    return f"{head} VALUES {', '.join([row] * count)}"


_flatten = itertools.chain.from_iterable


def _insert_many(db: sqlite3.Connection, name: str, rows: list[dict[str, Any]]) -> int:
    """Insert `rows` with named insert `name`, up to MANY_ROWS rows a statement."""
    values_of = operator.itemgetter(*_values_shape(name)[2])
    written = 0
    for start in range(0, len(rows), MANY_ROWS):
        part = rows[start:start + MANY_ROWS]
        values = list(_flatten(map(values_of, part)))  # in C, not a comprehension
        written += db.execute(_insert_sql(name, len(part)), values).rowcount
    return written


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite has already rolled back after some errors (a full disk): a second ROLLBACK
    # would fail and hide the real error.
    if db.in_transaction:
        db.execute("ROLLBACK")



def _write(db: sqlite3.Connection, statements: list[tuple[str, Any]]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            if isinstance(params, list):
                db.executemany(sql, params)
            else:
                db.execute(sql, params)
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise
