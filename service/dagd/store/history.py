"""The whole state history of task instances, from the history rows and the TI rows. Pure.

The happy path of a task instance's first try (scheduled -> queued -> running ->
success) writes no history row: the task instance's row records when it was first
queued, first started and last ended (`states.writes_history`). `complete` puts those
transitions back among the stored rows, each at its time, so a reader sees one row per
transition as if every one had been stored.
"""

from __future__ import annotations

from collections.abc import Iterable

from dagd.store.rows import HistoryRow, TaskInstanceRow

# Where a transition sorts among those at the same instant (one tick writes many): a
# run is created and started before its task instances move, a task instance is queued
# before it starts, its stored rows come in the order they were written, and a run
# ends after its task instances.
_RUN_START, _QUEUED, _STARTED, _STORED, _SUCCEEDED, _RUN_END = range(6)


def complete(
    history: Iterable[HistoryRow], tis: Iterable[TaskInstanceRow], *, since: float | None = None
) -> list[HistoryRow]:
    """`history` (in the order stored) with the quiet transitions of `tis` added, in
    the order they happened; only those at or after `since` when it is given."""
    stored = list(history)
    have = {(h.ti_id, h.from_state, h.to_state, h.at) for h in stored if h.ti_id is not None}
    pairs = {(ti_id, frm, to) for ti_id, frm, to, _ in have}
    keyed: list[tuple[float, int, int, HistoryRow]] = []
    for seq, h in enumerate(stored):
        if h.ti_id is not None:
            rank = _STORED
        else:
            rank = _RUN_START if h.to_state in ("queued", "running") else _RUN_END
        keyed.append((h.at, rank, seq, h))
    for ti in tis:
        for rank, frm, to, at in _quiet(ti):
            if at is None or (since is not None and at < since):
                continue
            # A stored row for the same change (a database from before quiet
            # transitions, or the change had a reason) stands for it.
            if to == "running" and (ti.id, frm, to, at) in have:
                continue
            if to != "running" and (ti.id, frm, to) in pairs:
                continue
            keyed.append((at, rank, ti.id, HistoryRow(ti.run_id, ti.id, frm, to, at, None)))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def _quiet(ti: TaskInstanceRow) -> list[tuple[int, str, str, float | None]]:
    """The transitions of a first try's happy path that `ti`'s row records."""
    found = [(_QUEUED, "scheduled", "queued", ti.queued_at),
             (_STARTED, "queued", "running", ti.started_at)]
    if ti.state == "success" and ti.try_number <= 1:
        found.append((_SUCCEEDED, "running", "success", ti.ended_at))
    return found
