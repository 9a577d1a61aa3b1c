"""Retention's rules: what `[retention]` keeps, how a pass is cut into transactions, and
what a pass reports. Pure: no I/O (the pass itself is `dagd.scheduler.pruner`).

A run is pruned when it is finished (success or failed, never queued or running), owes
no notification, and either ended more than `max_age_days` ago or is older than its
DAG's newest `max_runs_per_dag` runs (of any state). It goes with its task instances,
attempts, XComs, state history, its notifications and its attempts' log files. Events
older than the age go when no run kept refers to them and their run is gone, unless
their dedup key may still be asked about (see `FORGETTABLE`); sent notifications older
than the age go too. 0 turns a limit off; both off, nothing is pruned.

A transaction deletes at most `batch_size` rows (a run counted with all of its rows; a
run bigger than that goes alone), so the scheduler's commits, which share the one
writer, wait for one short transaction at most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dagd.errors import NotFound
from dagd.states import RUN_TERMINAL

if TYPE_CHECKING:
    from dagd.config import Settings

DAY = 86_400.0
TERMINAL = tuple(sorted(RUN_TERMINAL))
# Kinds whose old dedup keys nothing asks about again: a webhook's sender retries within
# hours, a timer resumes from its newest fire time (kept), a backfill's range is gone
# with its runs. A dropped file's key is what keeps a file still in its folder from
# running again at the next rescan, and a plugin trigger may ask about any key: theirs
# are kept.
FORGETTABLE = ("backfill", "cron", "interval", "webhook")
# Tables a pass deletes from, in the order the report names them.
TABLES = ("runs", "task_instances", "attempts", "xcoms", "state_history",
          "notifications", "events", "log_files")


@dataclass(frozen=True)
class Policy:
    """`[retention]`, as the pruner reads it."""

    max_age_days: float = 0.0
    max_runs_per_dag: int = 0
    interval: float = 300.0
    batch_size: int = 500

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.retention_max_age_days, settings.retention_max_runs_per_dag,
                   settings.retention_interval, settings.retention_batch_size)

    @property
    def enabled(self) -> bool:
        return self.max_age_days > 0 or self.max_runs_per_dag > 0

    def cutoff(self, now: float) -> float | None:
        """What ended (or was recorded) before this time is old; None: no age limit."""
        return now - self.max_age_days * DAY if self.max_age_days > 0 else None


@dataclass(frozen=True)
class Candidate:
    """A run a candidate query found, with how many rows it takes with it."""

    id: int
    dag_id: str
    state: str
    ended_at: float | None
    rows: int


def prunable(run: Candidate, *, cutoff: float | None, beyond_count: bool) -> bool:
    """The rule, checked on each run the queries offer: finished, and old or beyond its
    DAG's count (the query that found it knows which)."""
    if run.state not in RUN_TERMINAL:
        return False
    if beyond_count:
        return True
    return cutoff is not None and run.ended_at is not None and run.ended_at < cutoff


def transactions(runs: Iterable[Candidate], batch_size: int) -> Iterator[list[Candidate]]:
    """The runs in order, cut into groups of at most `batch_size` rows each (a run that
    is bigger alone goes alone)."""
    group: list[Candidate] = []
    rows = 0
    for run in runs:
        if group and rows + run.rows > batch_size:
            yield group
            group, rows = [], 0
        group.append(run)
        rows += run.rows
    if group:
        yield group


def chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


@dataclass
class Report:
    """What one pass pruned: rows by table, transactions, and the longest of them."""

    rows: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    longest: float = 0.0  # seconds
    seconds: float = 0.0
    newest: float = 0.0  # the newest change time among the rows pruned

    def add(self, counts: dict[str, int], *, seconds: float, newest: float) -> None:
        self.rows.update({k: v for k, v in counts.items() if v})
        self.transactions += 1
        self.longest = max(self.longest, seconds)
        self.newest = max(self.newest, newest)

    def __bool__(self) -> bool:
        return any(self.rows.values())

    def line(self) -> str:
        """The pass's one log line."""
        parts = ", ".join(f"{self.rows[t]:,} {t.replace('_', ' ')}" for t in TABLES
                          if self.rows[t])
        return (f"retention: pruned {parts} in {self.transactions} transaction(s), "
                f"{self.seconds:.2f} s (longest {self.longest * 1000:.1f} ms)")


class Holds:
    """Runs a person's action (clear, mark) is working on, and runs being pruned: the
    one waits for the other, so a tick never writes to a run pruned under it. Checked
    and changed in the event loop only, so it needs no lock."""

    def __init__(self) -> None:
        self.acting: Counter[int] = Counter()
        self.pruning: frozenset[int] = frozenset()

    @contextmanager
    def acting_on(self, run_id: int) -> Iterator[None]:
        if run_id in self.pruning:
            raise NotFound(f"no run {run_id}: it is being pruned ([retention])")
        self.acting[run_id] += 1
        try:
            yield
        finally:
            self.acting[run_id] -= 1
            if not self.acting[run_id]:
                del self.acting[run_id]

    @contextmanager
    def pruning_runs(self, ids: Iterable[int]) -> Iterator[list[int]]:
        """The ids not held by an action, held for pruning until the block ends."""
        free = [i for i in ids if i not in self.acting]
        self.pruning = frozenset(free)
        try:
            yield free
        finally:
            self.pruning = frozenset()
