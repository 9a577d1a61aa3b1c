"""The run page's Gantt: pure (no I/O). One row per task instance, and on it, for each
attempt, the time it waited queued, the time it ran (coloured by how the attempt
ended) and, between two tries, the wait before the retry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dagd.store.rows import AttemptRow, HistoryRow, RunRow, TaskInstanceRow

WIDTH = 1000  # the chart's inner width in SVG units; CSS scales it to the page
LABEL_W = 200
ROW_H = 26
BAR_H = 16
AXIS_H = 24


@dataclass(frozen=True)
class Segment:
    kind: str  # "queued", "running" or "retry"
    state: str  # the attempt's state for "running"; the segment's kind otherwise
    x: float
    w: float
    title: str


@dataclass(frozen=True)
class Row:
    ti: TaskInstanceRow
    label: str
    y: int
    segments: list[Segment]


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Gantt:
    width: int
    height: int
    rows: list[Row]
    ticks: list[Tick]
    start: float
    end: float


def _queued_times(history: Iterable[HistoryRow]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for h in history:
        if h.ti_id is not None and h.to_state == "queued":
            out.setdefault(h.ti_id, []).append(h.at)
    return out


def _span(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _segments(ti: TaskInstanceRow, attempts: list[AttemptRow], queued: list[float], *,
              now: float) -> list[tuple[str, str, float, float]]:
    """(kind, state, start, end) of one task instance's bars, in time order."""
    out: list[tuple[str, str, float, float]] = []
    for i, attempt in enumerate(attempts):
        before = [q for q in queued if q <= attempt.started_at]
        if before:
            waited_from: float | None = before[-1]
        else:
            waited_from = ti.queued_at if i == 0 else None
        if waited_from is not None and waited_from < attempt.started_at:
            out.append(("queued", "queued", waited_from, attempt.started_at))
        end = attempt.ended_at if attempt.ended_at is not None else now
        out.append(("running", attempt.state, attempt.started_at, end))
        if i + 1 < len(attempts) and attempt.ended_at is not None:
            nxt = attempts[i + 1]
            queued_next = [q for q in queued if attempt.ended_at <= q <= nxt.started_at]
            until = queued_next[0] if queued_next else nxt.started_at
            if until >= attempt.ended_at:  # shown even when the retry was immediate
                out.append(("retry", "up_for_retry", attempt.ended_at, until))
    if ti.state == "up_for_retry" and attempts and attempts[-1].ended_at is not None:
        until = max(ti.next_attempt_at or now, attempts[-1].ended_at)
        out.append(("retry", "up_for_retry", attempts[-1].ended_at, until))
    return out


def _ticks(start: float, end: float) -> list[Tick]:
    span = max(end - start, 1e-3)
    steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
             7200, 14400, 43200, 86400]
    step = next((s for s in steps if span / s <= 8), steps[-1])
    scale = (WIDTH - LABEL_W) / span
    out = []
    t = 0.0
    while t <= span + 1e-9:
        out.append(Tick(LABEL_W + t * scale, "0" if t == 0 else f"+{_span(t)}"))
        t += step
    return out


def gantt(run: RunRow, tis: list[TaskInstanceRow], attempts: list[AttemptRow],
          history: list[HistoryRow], *, now: float) -> Gantt:
    by_ti: dict[int, list[AttemptRow]] = {}
    for a in attempts:
        by_ti.setdefault(a.ti_id, []).append(a)
    queued = _queued_times(history)
    raw = [(ti, _segments(ti, by_ti.get(ti.id, []), queued.get(ti.id, []), now=now))
           for ti in tis]
    start = min([run.created_at, *(s[2] for _, segs in raw for s in segs)])
    end = run.ended_at or now
    end = max([end, *(s[3] for _, segs in raw for s in segs)])
    scale = (WIDTH - LABEL_W) / max(end - start, 1e-3)
    rows = []
    for i, (ti, segs) in enumerate(raw):
        label = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        rows.append(Row(ti, label, AXIS_H + i * ROW_H, [
            Segment(kind, state, LABEL_W + (s - start) * scale,
                    max((e - s) * scale, 1.5), f"{label} {kind}: {_span(e - s)}")
            for kind, state, s, e in segs
        ]))
    return Gantt(WIDTH, AXIS_H + len(rows) * ROW_H + 6, rows, _ticks(start, end), start, end)
