"""The live stream's resume cursor, and the changes a reconnecting client missed, rebuilt
from the rows. Pure: no I/O.

Every change of one committed batch carries the batch's time (`at`). The stream sends a
batch's changes in a canonical order (`canonical`) that the rows can reproduce, and
each message's `id:` is `AT:K`, K counting the batch's changes up to and including that
one. A client that reconnects with `Last-Event-ID: AT:K` is sent, from the rows, the
changes of batch AT after the K-th and those of every later batch (`missed`), in the
same order and with the same ids as they were sent live. A task instance's creation
(state scheduled) is not sent: its first transition is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dagd.changes import ATTEMPT, EVENT, RUN, TI, Change
from dagd.store.rows import AttemptRow, EventRow, HistoryRow, RunRow, TaskInstanceRow

RUN_ENDED = frozenset({"success", "failed"})


@dataclass(frozen=True, slots=True)
class Cursor:
    at: float  # the batch's time
    k: int  # how many of its changes (in canonical order) came before, this one included

    def __str__(self) -> str:
        return f"{self.at!r}:{self.k}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor in a `Last-Event-ID`, or None when it is not one of ours."""
        at, sep, k = text.strip().partition(":")
        try:
            cursor = cls(float(at), int(k))
        except ValueError:
            return None
        if not sep or cursor.k < 0 or cursor.at != cursor.at:  # NaN is no time
            return None
        return cursor


def sendable(change: Change) -> bool:
    """A task instance's creation is not sent (the rows cannot tell when it happened)."""
    return not (change.kind == TI and change.detail is not None
                and change.detail.get("created"))


def _group(change: Change) -> int:
    # Events first; a run's start before its task instances move, their attempts next,
    # and a run's end last.
    if change.kind == EVENT:
        return 0
    if change.kind == RUN:
        return 4 if change.state in RUN_ENDED else 1
    return 2 if change.kind == TI else 3


def canonical(changes: Iterable[Change]) -> list[Change]:
    """One batch's sendable changes in the order the stream sends them: by group, then
    by id, each entity's own changes in the order they happened (the input's)."""
    keyed = [(_group(c), c.id, seq, c) for seq, c in enumerate(changes) if sendable(c)]
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def batches(changes: Iterable[Change]) -> Iterator[tuple[float, list[Change]]]:
    """Consecutive changes of one batch (one `at`), batch by batch."""
    current: list[Change] = []
    at: float | None = None
    for change in changes:
        if at is not None and change.at != at:
            yield at, current
            current = []
        at = change.at
        current.append(change)
    if at is not None:
        yield at, current


def numbered(at: float, changes: Iterable[Change]) -> list[tuple[Cursor, Change]]:
    """A batch's changes in canonical order, each with its cursor."""
    return [(Cursor(at, k), c) for k, c in enumerate(canonical(changes), start=1)]


def rebuild(
    since: float,
    history: list[HistoryRow],
    tis: list[TaskInstanceRow],
    attempts: list[AttemptRow],
    events: list[EventRow],
    runs: list[RunRow],
) -> list[Change]:
    """The changes at or after `since`, as the changes port published them, from the
    rows (`Store.changes_since`); batch by batch in time order, each batch's changes in
    the order they happened."""
    dag_of = {r.id: r.dag_id for r in runs}
    ti_of = {t.id: t for t in tis}
    # A task instance's try number at a time: its number now, less the attempts
    # started after that time (each start raises it by one).
    started: dict[int, list[float]] = defaultdict(list)
    for a in attempts:
        started[a.ti_id].append(a.started_at)
    out: list[Change] = []
    for e in events:
        out.append(Change(EVENT, e.id, e.run_id, e.dag_id, e.outcome, e.created_at,
                          {"kind": e.kind, "source": e.source}))
    for h in history:
        if h.ti_id is None:
            out.append(Change(RUN, h.run_id, h.run_id, dag_of.get(h.run_id), h.to_state, h.at))
            continue
        ti = ti_of.get(h.ti_id)
        if ti is None:
            continue
        # Its changes in the batch that started an attempt, before that start, were
        # made at the try before.
        tries = ti.try_number - sum(1 for t in started[ti.id]
                                    if t > h.at or (t == h.at and h.to_state != "running"))
        out.append(Change(TI, ti.id, ti.run_id, dag_of.get(ti.run_id), h.to_state, h.at,
                          {"task_id": ti.task_id, "reason": h.reason,
                           "map_index": ti.map_index, "try_number": tries}))
    for a in attempts:
        ti = ti_of.get(a.ti_id)
        run_id = ti.run_id if ti is not None else None
        named = {"ti_id": a.ti_id, "try_number": a.try_number,
                 "task_id": ti.task_id if ti else None,
                 "map_index": ti.map_index if ti else -1}
        dag_id = dag_of.get(run_id) if run_id is not None else None
        if a.started_at >= since:
            out.append(Change(ATTEMPT, a.id, run_id, dag_id, "running", a.started_at, named))
        if a.ended_at is not None and a.ended_at >= since and a.state != "running":
            out.append(Change(ATTEMPT, a.id, run_id, dag_id, a.state, a.ended_at,
                              {"error": a.error, **named}))
    # Stable: within one time, the order above (each entity's changes as they happened).
    out.sort(key=lambda c: c.at)
    return out


def missed(cursor: Cursor, changes: list[Change]) -> list[tuple[Cursor, Change]]:
    """Of the rebuilt `changes` (at or after cursor.at), those after the cursor."""
    out: list[tuple[Cursor, Change]] = []
    for at, batch in batches(changes):
        for numbered_cursor, change in numbered(at, batch):
            if at > cursor.at or numbered_cursor.k > cursor.k:
                out.append((numbered_cursor, change))
    return out
