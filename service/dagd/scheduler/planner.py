"""The planner: which task instances are ready, skipped or upstream_failed. Pure.

Trigger rules keep Airflow's meanings. A task with no upstream is ready at once.
`plan` walks downstream from the candidates so that a skip or an upstream failure
propagates in one call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from dagd.states import TASK_FAILED, TASK_TERMINAL, TaskState

if TYPE_CHECKING:
    from dagd.authoring.dag import DAG


class Decision(Enum):
    WAIT = "wait"
    READY = "ready"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


@dataclass(frozen=True)
class Graph:
    upstream: Mapping[str, tuple[str, ...]]
    downstream: Mapping[str, tuple[str, ...]]
    rules: Mapping[str, str]

    @classmethod
    def from_dag(cls, dag: DAG) -> Graph:
        return cls(
            upstream={tid: tuple(sorted(t.upstream_ids)) for tid, t in dag.tasks.items()},
            downstream={tid: tuple(sorted(t.downstream_ids)) for tid, t in dag.tasks.items()},
            rules={tid: t.trigger_rule for tid, t in dag.tasks.items()},
        )

    @property
    def roots(self) -> list[str]:
        return [tid for tid, ups in self.upstream.items() if not ups]


def evaluate(rule: str, upstream: Iterable[TaskState]) -> Decision:  # noqa: C901
    """Decide one scheduled task from its upstream tasks' states."""
    total = success = failed = skipped = done = 0
    for s in upstream:  # one pass: this runs once per task instance per decision
        total += 1
        if s in TASK_TERMINAL:
            done += 1
            if s == TaskState.SUCCESS:
                success += 1
            elif s == TaskState.SKIPPED:
                skipped += 1
            else:
                failed += 1
    if not total:
        return Decision.READY
    all_done = done == total
    if rule == "all_success":
        if failed:
            return Decision.UPSTREAM_FAILED
        if skipped:
            return Decision.SKIP
        return Decision.READY if success == total else Decision.WAIT
    if rule == "all_failed":
        if success or skipped:
            return Decision.SKIP
        return Decision.READY if failed == total else Decision.WAIT
    if rule == "all_done":
        return Decision.READY if all_done else Decision.WAIT
    if rule == "one_success":
        if success:
            return Decision.READY
        if not all_done:
            return Decision.WAIT
        return Decision.SKIP if skipped == total else Decision.UPSTREAM_FAILED
    if rule == "one_failed":
        if failed:
            return Decision.READY
        return Decision.SKIP if all_done else Decision.WAIT
    if rule == "none_failed":
        if failed:
            return Decision.UPSTREAM_FAILED
        return Decision.READY if all_done else Decision.WAIT
    if rule == "none_failed_min_one_success":
        # The join after a branch: runs when the chosen path succeeded.
        if failed:
            return Decision.UPSTREAM_FAILED
        if not all_done:
            return Decision.WAIT
        return Decision.READY if success else Decision.SKIP
    if rule == "none_skipped":
        if skipped:
            return Decision.SKIP
        return Decision.READY if all_done else Decision.WAIT
    raise ValueError(f"unknown trigger rule {rule!r}")


def plan(
    graph: Graph, states: Mapping[str, TaskState], candidates: Iterable[str]
) -> list[tuple[str, TaskState]]:
    """New states for scheduled tasks among `candidates`, and downstream of any that end.

    Returns (task_id, new_state) in the order decided; `states` is not modified.
    """
    decided: dict[str, TaskState] = {}
    order: list[tuple[str, TaskState]] = []
    work = deque(candidates)
    while work:
        tid = work.popleft()
        if decided.get(tid, states[tid]) != TaskState.SCHEDULED:
            continue
        decision = evaluate(
            graph.rules[tid], (decided.get(u, states[u]) for u in graph.upstream[tid])
        )
        if decision is Decision.WAIT:
            continue
        # (An Enum hashes in Python: a dict keyed by Decision costs more than this.)
        new = (TaskState.QUEUED if decision is Decision.READY else TaskState.SKIPPED
               if decision is Decision.SKIP else TaskState.UPSTREAM_FAILED)
        decided[tid] = new
        order.append((tid, new))
        if new in TASK_TERMINAL:
            work.extend(graph.downstream[tid])
    return order


def run_outcome(states: Iterable[TaskState]) -> TaskState | None:
    """None while any task is unfinished; else FAILED if any failed, else SUCCESS."""
    outcome = TaskState.SUCCESS
    for s in states:
        if s not in TASK_TERMINAL:
            return None
        if s in TASK_FAILED:
            outcome = TaskState.FAILED
    return outcome
