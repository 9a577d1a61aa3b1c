"""The planner: which task instances are ready, skipped or upstream_failed. Pure.

Trigger rules keep Airflow's meanings (all of Airflow 2's and 3's but
`all_done_setup_success`, which the Airflow layer runs as `all_done`), one small function
each. A task with no upstream is ready at once, and so is one whose rule is `always`.
`plan` walks downstream from the candidates so that a skip or an upstream failure
propagates in one call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
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
    # Each task's place in the DAG (the order its file defines them, and its task
    # instances' ids follow): what to start first among tasks ready together.
    position: Mapping[str, int]

    @classmethod
    def from_dag(cls, dag: DAG) -> Graph:
        return cls(
            upstream={tid: tuple(sorted(t.upstream_ids)) for tid, t in dag.tasks.items()},
            downstream={tid: tuple(sorted(t.downstream_ids)) for tid, t in dag.tasks.items()},
            rules={tid: t.trigger_rule for tid, t in dag.tasks.items()},
            position={tid: i for i, tid in enumerate(dag.tasks)},
        )

    @property
    def roots(self) -> list[str]:
        """The tasks a run considers when it starts: those without upstream tasks, and
        those whose rule waits for none (`always`)."""
        return [tid for tid, ups in self.upstream.items()
                if not ups or self.rules[tid] in EAGER_RULES]


class Counts:
    """The upstream tasks of one task, counted by how they stand (failed counts
    upstream_failed too)."""

    __slots__ = ("done", "failed", "skipped", "success", "total")

    def __init__(self, upstream: Iterable[TaskState]) -> None:
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
        self.total, self.success, self.failed = total, success, failed
        self.skipped, self.done = skipped, done

    @property
    def all_done(self) -> bool:
        return self.done == self.total


def _all_success(c: Counts) -> Decision:
    if c.failed:
        return Decision.UPSTREAM_FAILED
    if c.skipped:
        return Decision.SKIP
    return Decision.READY if c.success == c.total else Decision.WAIT


def _all_failed(c: Counts) -> Decision:
    if c.success or c.skipped:
        return Decision.SKIP
    return Decision.READY if c.failed == c.total else Decision.WAIT


def _all_done(c: Counts) -> Decision:
    return Decision.READY if c.all_done else Decision.WAIT


def _all_skipped(c: Counts) -> Decision:
    if c.success or c.failed:
        return Decision.SKIP
    return Decision.READY if c.skipped == c.total else Decision.WAIT


def _all_done_min_one_success(c: Counts) -> Decision:
    if not c.all_done:
        return Decision.WAIT
    if c.success:
        return Decision.READY
    return Decision.SKIP if c.skipped == c.total else Decision.UPSTREAM_FAILED


def _one_success(c: Counts) -> Decision:
    if c.success:
        return Decision.READY
    if not c.all_done:
        return Decision.WAIT
    return Decision.SKIP if c.skipped == c.total else Decision.UPSTREAM_FAILED


def _one_failed(c: Counts) -> Decision:
    if c.failed:
        return Decision.READY
    return Decision.SKIP if c.all_done else Decision.WAIT


def _one_done(c: Counts) -> Decision:
    if c.success or c.failed:
        return Decision.READY
    return Decision.SKIP if c.all_done else Decision.WAIT


def _none_failed(c: Counts) -> Decision:
    if c.failed:
        return Decision.UPSTREAM_FAILED
    return Decision.READY if c.all_done else Decision.WAIT


def _none_failed_min_one_success(c: Counts) -> Decision:
    # The join after a branch: runs when the chosen path succeeded.
    if c.failed:
        return Decision.UPSTREAM_FAILED
    if not c.all_done:
        return Decision.WAIT
    return Decision.READY if c.success else Decision.SKIP


def _none_skipped(c: Counts) -> Decision:
    if c.skipped:
        return Decision.SKIP
    return Decision.READY if c.all_done else Decision.WAIT


def _always(c: Counts) -> Decision:
    return Decision.READY  # the dependencies are only for show: it waits for none


RULES: Mapping[str, Callable[[Counts], Decision]] = {
    "all_success": _all_success,
    "all_failed": _all_failed,
    "all_done": _all_done,
    "all_skipped": _all_skipped,
    "all_done_min_one_success": _all_done_min_one_success,
    "one_success": _one_success,
    "one_failed": _one_failed,
    "one_done": _one_done,
    "none_failed": _none_failed,
    "none_failed_min_one_success": _none_failed_min_one_success,
    "none_skipped": _none_skipped,
    "always": _always,
}
# Rules that wait for no upstream task: such a task is considered when its run starts.
EAGER_RULES = frozenset({"always"})


def evaluate(rule: str, upstream: Iterable[TaskState]) -> Decision:
    """Decide one scheduled task from its upstream tasks' states."""
    try:
        decide = RULES[rule]
    except KeyError:
        raise ValueError(f"unknown trigger rule {rule!r}") from None
    counts = Counts(upstream)
    return decide(counts) if counts.total else Decision.READY


# The members the planner's loop compares, looked up once: an enum's class attribute
# goes through its metaclass at each lookup, and the loop runs once per candidate.
_SCHEDULED, _QUEUED, _SUCCESS = TaskState.SCHEDULED, TaskState.QUEUED, TaskState.SUCCESS
_SKIPPED, _UPSTREAM_FAILED = TaskState.SKIPPED, TaskState.UPSTREAM_FAILED
_READY, _WAIT, _SKIP = Decision.READY, Decision.WAIT, Decision.SKIP


def plan(
    graph: Graph, states: Mapping[str, TaskState], candidates: Iterable[str]
) -> list[tuple[str, TaskState]]:
    """New states for scheduled tasks among `candidates`, and downstream of any that end.

    Returns (task_id, new_state) in the order decided; `states` is not modified.
    """
    decided: dict[str, TaskState] = {}
    order: list[tuple[str, TaskState]] = []
    rules, upstreams = graph.rules, graph.upstream
    work = deque(candidates)
    while work:
        tid = work.popleft()
        if (decided.get(tid) or states[tid]) is not _SCHEDULED:
            continue
        rule, upstream = rules[tid], upstreams[tid]
        if rule == "all_success" and all(
                (decided.get(u) or states[u]) is _SUCCESS for u in upstream):
            new = _QUEUED  # the common case, without counting
        else:
            decision = evaluate(rule, (decided.get(u) or states[u] for u in upstream))
            if decision is _WAIT:
                continue
            # (An Enum hashes in Python: a dict keyed by Decision costs more than this.)
            new = (_QUEUED if decision is _READY else _SKIPPED if decision is _SKIP
                   else _UPSTREAM_FAILED)
        decided[tid] = new
        order.append((tid, new))
        if new is not _QUEUED:  # it ended (skipped or upstream failed): look downstream
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
