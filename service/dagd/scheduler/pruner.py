"""The pruner: the daemon's side task that applies `[retention]` every `interval` seconds.

A pass reads its candidates on the store's read connection, then deletes them in short
transactions through the one writer (`dagd.store.retention`), at most `batch_size` rows
each, resting after each as long as it took, so the scheduler's commits and the API
never wait for more than one of them. Attempt log files are deleted once the rows'
transaction has committed (a crash in between leaves files, never rows without their
files' owner knowing). A pass that pruned something logs one line with the counts; the
totals are on the changes port (`Changes.pruned`) for the metrics and the live stream.
The rules are `dagd.scheduler.retention`'s.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from dagd.scheduler.retention import (
    FORGETTABLE,
    TERMINAL,
    Candidate,
    Policy,
    Report,
    prunable,
    transactions,
)
from dagd.store.retention import Retention

if TYPE_CHECKING:
    import sqlite3

    from dagd.changes import Changes
    from dagd.config import Settings
    from dagd.scheduler.retention import Holds
    from dagd.store import Store

log = logging.getLogger(__name__)

Reader = Callable[[int], Awaitable[list["sqlite3.Row"]]]


class Pruner:
    def __init__(self, store: Store, settings: Settings, *, holds: Holds, changes: Changes,
                 clock: Callable[[], float] = time.time) -> None:
        self.policy = Policy.of(settings)
        self.retention = Retention(store, terminal=TERMINAL)
        self.holds = holds
        self.changes = changes
        self.clock = clock
        if self.policy.enabled:
            # A previous daemon may have pruned rows of changes before now: a live
            # stream resuming from before this start is told to reload.
            changes.pruned.through = max(changes.pruned.through, clock())

        self._wake = anyio.Event()

    @property
    def enabled(self) -> bool:
        return self.policy.enabled

    def configure(self, settings: Settings) -> None:
        """`[retention]` reloaded (SIGHUP): the next pass, at once, follows it."""
        was_enabled, self.policy = self.enabled, Policy.of(settings)
        if self.enabled and not was_enabled:  # (as at a start: see __init__)
            self.changes.pruned.through = max(self.changes.pruned.through, self.clock())
        self._wake.set()

    async def run(self) -> None:
        """Prune, then wait `interval` seconds, forever (a supervised task); while
        `[retention]` keeps everything, wait for a reload."""
        while True:
            if self.enabled:
                await self.prune()
            with anyio.move_on_after(self.policy.interval if self.enabled else math.inf):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def prune(self) -> Report:
        """One pass over every rule; its report (logged when it pruned something)."""
        policy = self.policy
        report = Report()
        started = time.perf_counter()
        cutoff = policy.cutoff(self.clock())
        size = policy.batch_size
        if cutoff is not None:
            await self._runs(report, lambda after: self.retention.old_runs(
                cutoff, after=after, limit=size), cutoff=cutoff, beyond_count=False)
        keep = policy.max_runs_per_dag
        if keep > 0:
            for dag_id in await self.retention.crowded_dags(keep):
                await self._runs(report, self._extra(dag_id, keep), cutoff=cutoff,
                                 beyond_count=True)
        if cutoff is not None:
            await self._events(report, cutoff)
            await self._notifications(report, cutoff)
        report.seconds = time.perf_counter() - started
        pruned = self.changes.pruned
        pruned.passes += 1
        if report:
            for table, n in report.rows.items():
                pruned.rows[table] = pruned.rows.get(table, 0) + n
            pruned.through = max(pruned.through, report.newest)
            log.info("%s", report.line(), extra={"action": "retention",
                                                 **{f"pruned_{k}": v
                                                    for k, v in report.rows.items()}})
        return report

    def _extra(self, dag_id: str, keep: int) -> Reader:
        async def read(after: int) -> list[sqlite3.Row]:
            return await self.retention.extra_runs(dag_id, keep=keep, after=after,
                                                   limit=self.policy.batch_size)
        return read

    async def _runs(self, report: Report, read: Reader, *, cutoff: float | None,
                    beyond_count: bool) -> None:
        after = 0
        while True:
            rows = await read(after)
            if not rows:
                return
            after = rows[-1]["id"]
            found = [Candidate(r["id"], r["dag_id"], r["state"], r["ended_at"], r["rows"])
                     for r in rows]
            chosen = [c for c in found if prunable(c, cutoff=cutoff,
                                                    beyond_count=beyond_count)]
            for group in transactions(chosen, self.policy.batch_size):
                await self._prune_group(report, [c.id for c in group])
            if len(rows) < self.policy.batch_size:
                return

    async def _prune_group(self, report: Report, ids: list[int]) -> None:
        # Shielded: a stop waits for the files of rows already deleted to go too.
        with anyio.CancelScope(shield=True), self.holds.pruning_runs(ids) as free:
            if not free:
                return
            done = await self.retention.prune_runs(free)
            files = 0
            if done.log_paths:
                files = await anyio.to_thread.run_sync(remove_logs, done.log_paths)
        report.add({**done.counts, "log_files": files}, seconds=done.seconds,
                   newest=done.newest)
        await _rest(done.seconds)

    async def _events(self, report: Report, cutoff: float) -> None:
        after = 0
        size = self.policy.batch_size
        while True:
            rows = await self.retention.old_events(cutoff, after=after, limit=size,
                                                   forgettable=FORGETTABLE)
            if not rows:
                return
            after = rows[-1]["id"]
            deleted, seconds = await self.retention.prune_events([r["id"] for r in rows])
            report.add({"events": deleted}, seconds=seconds,
                       newest=max(r["at"] for r in rows))
            await _rest(seconds)
            if len(rows) < size:
                return

    async def _notifications(self, report: Report, cutoff: float) -> None:
        after = 0
        size = self.policy.batch_size
        while True:
            ids = await self.retention.old_notifications(cutoff, after=after, limit=size)
            if not ids:
                return
            after = ids[-1]
            deleted, seconds = await self.retention.prune_notifications(ids)
            report.add({"notifications": deleted}, seconds=seconds, newest=0.0)
            await _rest(seconds)
            if len(ids) < size:
                return


async def _rest(seconds: float) -> None:
    """As long as the transaction took: the writer is the scheduler's at least half of
    the time while a pass runs."""
    await anyio.sleep(seconds)


def remove_logs(paths: list[str]) -> int:
    """Delete the attempts' log files (LOGS/DAG/run_N/TASK/attempt_T.log), then their
    task and run folders once empty; the number of files deleted. An attempt that wrote
    nothing has no file."""
    removed = 0
    folders: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.suffix != ".log" or not path.parent.parent.name.startswith("run_"):
            continue  # not a log of dagd's layout: never delete it
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("retention: cannot delete %s: %s", path, exc)
        folders.add(path.parent)
    runs = {folder.parent for folder in folders}
    for folder in [*sorted(folders), *sorted(runs)]:
        _rmdir(folder)
    return removed


def _rmdir(folder: Path) -> None:
    try:
        os.rmdir(folder)
    except OSError:  # not empty (another file someone put there), or gone already
        pass


def describe(report: Report) -> dict[str, Any]:
    """A pass's report as JSON (the tests' and the benchmark's)."""
    return {"rows": dict(report.rows), "transactions": report.transactions,
            "longest": report.longest, "seconds": report.seconds}
