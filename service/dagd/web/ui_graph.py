"""The DAG page's graph, laid out left to right: pure (no I/O), from a DAG's stored
description and the states of one run's task instances.

A task's layer is the length of the longest path from a root to it, so every edge
points right. Within a layer, tasks of one group stay together and follow the mean row
of their upstream tasks (fewer crossings); each group is drawn as a box around its
tasks, a mapped task shows how many instances it has, and an edge with a label (an
Airflow `Label`, kept as the downstream task's `edge_labels`) shows its text midway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NODE_W = 150
NODE_H = 34
COL_W = 190  # from one layer's left edge to the next
ROW_H = 56
PAD = 24
GROUP_PAD = 10
LABEL_MAX = 18  # characters of a task id shown in its node (the full id is its tooltip)
# A wide graph is shrunk to fit its box, down to this much of its size; then it scrolls.
MIN_SCALE = 0.75


@dataclass(frozen=True)
class Node:
    task_id: str
    label: str
    x: int
    y: int
    state: str
    mapped: bool
    count: int | None  # instances of a mapped task in the run shown, when known


@dataclass(frozen=True)
class Edge:
    path: str  # SVG path data
    upstream: str
    downstream: str
    label: str | None = None  # the full text (the tooltip); `short` is what is drawn
    short: str = ""
    mid_x: int = 0  # where the label is drawn: the middle of the edge
    mid_y: int = 0


@dataclass(frozen=True)
class Box:
    group: str
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Graph:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    boxes: list[Box]
    node_w: int = NODE_W
    node_h: int = NODE_H

    @property
    def min_width_class(self) -> str:
        """The CSS class that keeps it from shrinking below MIN_SCALE (by 100 px steps:
        the CSP allows no style attribute), or "" for a graph that is never shrunk much."""
        hundreds = int(self.width * MIN_SCALE) // 100
        return f"minw-{min(hundreds, 40)}" if hundreds >= 7 else ""


def layers(tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Longest path from a root to each task (the tasks come in a topological order, as
    the stored description keeps them; any order works, at some more cost)."""
    known = {t["task_id"] for t in tasks}
    ups = {t["task_id"]: [u for u in t.get("upstream", []) if u in known] for t in tasks}
    depth: dict[str, int] = {}

    def visit(task_id: str, seen: frozenset[str]) -> int:
        if task_id in depth:
            return depth[task_id]
        if task_id in seen:  # a cycle cannot be stored; do not loop on one anyway
            return 0
        inner = seen | {task_id}
        depth[task_id] = max((visit(u, inner) + 1 for u in ups[task_id]), default=0)
        return depth[task_id]

    for t in tasks:
        visit(t["task_id"], frozenset())
    return depth


def _order(tasks: list[dict[str, Any]], depth: Mapping[str, int]) -> dict[str, int]:
    """The row of each task within its layer."""
    row: dict[str, int] = {}
    declared = {t["task_id"]: i for i, t in enumerate(tasks)}
    by_layer: dict[int, list[dict[str, Any]]] = {}
    for t in tasks:
        by_layer.setdefault(depth[t["task_id"]], []).append(t)
    for layer in sorted(by_layer):
        def key(t: dict[str, Any]) -> tuple[str, float, int]:
            ups = [row[u] for u in t.get("upstream", []) if u in row]
            mean = sum(ups) / len(ups) if ups else float(declared[t["task_id"]])
            return (t.get("group") or "", mean, declared[t["task_id"]])

        for i, t in enumerate(sorted(by_layer[layer], key=key)):
            row[t["task_id"]] = i
    return row


def summary_state(states: Iterable[str]) -> str:
    """One state for many instances of a mapped task: an active one while any is
    active, then failed, upstream_failed, success, skipped; "none" with no instance."""
    found = set(states)
    for state in ("running", "queued", "up_for_retry", "scheduled", "failed",
                  "upstream_failed", "success", "skipped"):
        if state in found:
            return state
    return "none"


def _label(task_id: str, group: str | None) -> str:
    short = task_id[len(group) + 1:] if group and task_id.startswith(group + ".") else task_id
    return _cut(short)


def _cut(text: str) -> str:
    return text if len(text) <= LABEL_MAX else text[:LABEL_MAX - 1] + "…"


LANE_STEP = 5  # between two long edges that would share a lane over the same layers


def _lane(y1: int, end: int, busy: list[tuple[int, int]], rows: int,
          taken: list[tuple[int, int, int]], span: tuple[int, int]) -> int:
    """The height a long edge crosses the layers between its ends at: the free one (no
    node box of those layers across it) nearest the straight line, among the rows'
    middles and the gaps between rows (above the first and below the last too). An
    edge whose lane another one already runs along, over some of the same layers, is
    moved a few pixels aside (away from the nodes above the first row and below the
    last), so the two stay apart."""
    top = PAD + GROUP_PAD * 3
    gap = (ROW_H - NODE_H) // 2
    candidates = {y1, end}
    for r in range(rows + 1):
        candidates.add(top + r * ROW_H - gap)
        candidates.add(top + r * ROW_H + NODE_H // 2)

    def free(y: int) -> bool:
        return all(not (lo - 3 <= y <= hi + 3) for lo, hi in busy)

    bottom = top + max(rows - 1, 0) * ROW_H + NODE_H
    for base in sorted((y for y in candidates if free(y)),
                       key=lambda y: (abs(y - y1) + abs(y - end), y)):
        sharing = sum(1 for y, a, b in taken if abs(y - base) < LANE_STEP * 4
                      and a < span[1] and span[0] < b)
        if base < top:
            shifted = base - LANE_STEP * sharing
        elif base > bottom:
            shifted = base + LANE_STEP * sharing
        else:
            shifted = base + LANE_STEP * ((sharing + 1) // 2) * (1 if sharing % 2 else -1)
        if free(shifted):
            return shifted
    return top - gap - LANE_STEP * len(taken)  # above every row: always free


def _edges(tasks: list[dict[str, Any]], at: Mapping[str, tuple[int, int]]) -> list[Edge]:
    """One path per edge. An edge to the next layer is one curve in the gap between the
    two columns; a longer one curves into a free lane in the first gap, runs level past
    the layers between and curves out in the last gap, so it never passes behind a
    node (each arrowhead is then the only one at its end)."""
    by_x: dict[int, list[int]] = {}
    for x, y in at.values():
        by_x.setdefault(x, []).append(y)
    rows = max((len(ys) for ys in by_x.values()), default=0)
    taken: list[tuple[int, int, int]] = []  # (lane, from x, to x) of the long edges
    edges = []
    for t in tasks:
        x2, y2 = at[t["task_id"]]
        labels = t.get("edge_labels") or {}
        for up in t.get("upstream", []):
            if up not in at:
                continue
            x1, y1 = at[up][0] + NODE_W, at[up][1] + NODE_H // 2
            end = y2 + NODE_H // 2
            between = [(y, y + NODE_H) for x, ys in by_x.items() if x1 <= x < x2 - NODE_W
                       for y in ys]
            if between:
                a, b = x1 + COL_W - NODE_W, x2 - (COL_W - NODE_W)
                lane = _lane(y1, end, between, rows, taken, (a, b))
                taken.append((lane, a, b))
                ca, cb = (x1 + a) // 2, (b + x2) // 2
                path = (f"M{x1},{y1} C{ca},{y1} {ca},{lane} {a},{lane} L{b},{lane} "
                        f"C{cb},{lane} {cb},{end} {x2},{end}")
                mid_x, mid_y = (a + b) // 2, lane - 4
            else:
                mid = (x1 + x2) // 2
                path = f"M{x1},{y1} C{mid},{y1} {mid},{end} {x2},{end}"
                mid_x, mid_y = mid, (y1 + end) // 2 - 4
            text = labels.get(up)
            edges.append(Edge(path, up, t["task_id"], label=str(text) if text else None,
                              short=_cut(str(text)) if text else "", mid_x=mid_x,
                              mid_y=mid_y))
    return edges


def _boxes(tasks: list[dict[str, Any]], at: Mapping[str, tuple[int, int]]) -> list[Box]:
    members: dict[str, list[str]] = {}
    for t in tasks:
        group = t.get("group")
        while group:  # a task is in every group around its own
            members.setdefault(group, []).append(t["task_id"])
            group = group.rpartition(".")[0]
    boxes = []
    for group, ids in sorted(members.items(), key=lambda kv: kv[0].count(".")):
        nest = GROUP_PAD * (1 + max(0, 2 - group.count(".")))
        xs = [at[i][0] for i in ids]
        ys = [at[i][1] for i in ids]
        x, y = min(xs) - nest, min(ys) - nest - 12
        boxes.append(Box(group, x, y, max(xs) + NODE_W + nest - x,
                         max(ys) + NODE_H + nest - y))
    return boxes


def layout(tasks: list[dict[str, Any]], states: Mapping[str, list[str]]) -> Graph:
    """`tasks`: the stored description's tasks; `states`: task id -> the states of its
    instances in the run shown (one for a plain task, one per index for a mapped one)."""
    depth = layers(tasks)
    row = _order(tasks, depth)
    at = {t["task_id"]: (PAD + GROUP_PAD * 3 + depth[t["task_id"]] * COL_W,
                         PAD + GROUP_PAD * 3 + row[t["task_id"]] * ROW_H) for t in tasks}
    nodes = []
    for t in tasks:
        tid = t["task_id"]
        mapped = bool(t.get("mapped"))
        found = states.get(tid, [])
        nodes.append(Node(tid, _label(tid, t.get("group")), *at[tid],
                          state=summary_state(found), mapped=mapped,
                          count=len(found) if mapped and found else None))
    edges = _edges(tasks, at)
    width = max((x for x, _ in at.values()), default=0) + NODE_W + PAD + GROUP_PAD * 3
    height = max((y for _, y in at.values()), default=0) + NODE_H + PAD + GROUP_PAD * 3
    return Graph(width, height, nodes, edges, _boxes(tasks, at))
