"""The store's side of retention: the candidate reads and the pruning transactions.

Candidates are read on the store's read connection, outside any write; each pruning
transaction then reads its rows again (`BEGIN IMMEDIATE` on the one writer), so a run
that started again meanwhile (a task cleared) is left alone. A run's children go first
(XComs, attempts, history, notifications, task instances: foreign keys are on), the run
last. The log files are the caller's to delete, once the transaction has committed.
What to prune is decided by `dagd.scheduler.retention`; nothing here knows the policy.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from dagd.store.sql import Q

if TYPE_CHECKING:
    from dagd.store.store import Store


@dataclass(frozen=True)
class RunsPruned:
    """One transaction's work: rows deleted by table, the runs' attempt log paths, the
    newest change time among the rows, and how long it took."""

    runs: dict[int, str] = field(default_factory=dict)  # run id -> its DAG
    counts: dict[str, int] = field(default_factory=dict)
    log_paths: list[str] = field(default_factory=list)
    newest: float = 0.0
    seconds: float = 0.0


# The statements of a run's pruning, children first, and what each one counts.
_RUN_DELETES = (("xcoms", "retention_delete_xcoms"), ("attempts", "retention_delete_attempts"),
                ("state_history", "retention_delete_history"),
                ("notifications", "retention_delete_run_notifications"),
                ("task_instances", "retention_delete_tis"), ("runs", "retention_delete_runs"))


class Retention:
    """Retention's reads and writes on one store (the daemon's, which has the writer)."""

    def __init__(self, store: Store, *, terminal: tuple[str, ...]) -> None:
        self.store = store
        self.terminal = orjson.dumps(list(terminal)).decode()

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        async with self.store.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # -- candidates (reads) ------------------------------------------------------------
    async def old_runs(self, cutoff: float, *, after: int, limit: int) -> list[sqlite3.Row]:
        """Finished runs that ended before `cutoff`, ids above `after`, oldest first."""
        return await self._rows(Q.retention_old_runs, {
            "cutoff": cutoff, "after": after, "limit": limit, "terminal": self.terminal})

    async def crowded_dags(self, keep: int) -> list[str]:
        """DAGs with more than `keep` runs."""
        return [r[0] for r in await self._rows(Q.retention_crowded_dags, {"keep": keep})]

    async def extra_runs(self, dag_id: str, *, keep: int, after: int,
                         limit: int) -> list[sqlite3.Row]:
        """The DAG's finished runs older than its newest `keep`, ids above `after`."""
        return await self._rows(Q.retention_extra_runs, {
            "dag_id": dag_id, "keep": keep, "after": after, "limit": limit,
            "terminal": self.terminal})

    async def old_events(self, cutoff: float, *, after: int, limit: int,
                         forgettable: tuple[str, ...]) -> list[sqlite3.Row]:
        """(id, at) of ledger rows that may go (see the query's description)."""
        return await self._rows(Q.retention_old_events, {
            "cutoff": cutoff, "after": after, "limit": limit,
            "forgettable": orjson.dumps(list(forgettable)).decode()})

    async def old_notifications(self, cutoff: float, *, after: int,
                                limit: int) -> list[int]:
        rows = await self._rows(Q.retention_old_notifications,
                                {"cutoff": cutoff, "after": after, "limit": limit})
        return [r[0] for r in rows]

    # -- pruning (one transaction each) ----------------------------------------------
    async def prune_runs(self, ids: list[int]) -> RunsPruned:
        """The runs still finished among `ids`, with every row that goes with them."""
        result: RunsPruned = await self.store.on_writer(_prune_runs, ids, self.terminal)
        return result

    async def prune_events(self, ids: list[int]) -> tuple[int, float]:
        """(events deleted, seconds)."""
        result: tuple[int, float] = await self.store.on_writer(
            _delete, Q.retention_delete_events, ids)
        return result

    async def prune_notifications(self, ids: list[int]) -> tuple[int, float]:
        """(notifications deleted, seconds)."""
        result: tuple[int, float] = await self.store.on_writer(
            _delete, Q.retention_delete_notifications, ids)
        return result


# -- the writer thread's side -------------------------------------------------------------
def _prune_runs(db: sqlite3.Connection, ids: list[int], terminal: str) -> RunsPruned:
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    try:
        runs = {int(r[0]): str(r[1]) for r in db.execute(
            Q.retention_still_prunable, {"ids": orjson.dumps(ids).decode(),
                                         "terminal": terminal})}
        counts: dict[str, int] = {}
        paths: list[str] = []
        newest = 0.0
        if runs:
            params = {"ids": orjson.dumps(sorted(runs)).decode()}
            newest = float(db.execute(Q.retention_newest_change, params).fetchone()[0] or 0)
            paths = [r[0] for r in db.execute(Q.retention_log_paths, params)]
            for name, query in _RUN_DELETES:
                counts[name] = db.execute(getattr(Q, query), params).rowcount
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return RunsPruned(runs, counts, paths, newest, time.perf_counter() - started)


def _delete(db: sqlite3.Connection, sql: str, ids: list[int]) -> tuple[int, float]:
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    try:
        deleted = db.execute(sql, {"ids": orjson.dumps(ids).decode()}).rowcount
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return deleted, time.perf_counter() - started
