"""Control flow decided by a task's return value: branches and short-circuits. Pure.

A branch task returns the id (or ids) of the tasks to follow among those directly
downstream of it; the others are skipped. A short-circuit task that returns a falsy
value skips every task directly downstream. Skips propagate by trigger rules (a join
after a branch usually wants `none_failed_min_one_success`); a short-circuit task with
`skip_all_downstream` skips every task after it, trigger rules or not.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from dagd.authoring.tasks import BaseTask

NOTHING: frozenset[str] = frozenset()  # what nearly every task's value skips


def to_skip(task: BaseTask, value: Any) -> tuple[AbstractSet[str], str | None]:
    """(downstream task ids to skip, error) after `task` returned `value`."""
    mode = getattr(task, "mode", "normal")
    if mode == "normal":  # nearly every task: nothing to decide, nothing built
        return NOTHING, None
    downstream = set(task.downstream_ids)
    if mode == "short_circuit":
        if value:
            return set(), None
        if getattr(task, "skip_all_downstream", False):
            # Every task after it, whatever its trigger rule (Airflow's
            # ShortCircuitOperator with ignore_downstream_trigger_rules=True).
            return downstream | _descendants(task, downstream), None
        return downstream, None
    if mode != "branch":
        return set(), None
    chosen = value if isinstance(value, list | tuple) else [value]
    if value is None:
        chosen = []
    prefix = f"{task.group.qualified_id}." if task.group else ""
    resolved: set[str] = set()
    for item in chosen:
        if not isinstance(item, str):
            return set(), f"branch returned {item!r}: expected task ids (strings)"
        # A task in the same group may be named without the group's prefix.
        tid = item if item in downstream else prefix + item
        if tid not in downstream:
            choices = ", ".join(sorted(downstream)) or "none"
            return set(), (f"branch returned {item!r}, which is not a task directly "
                           f"downstream of {task.task_id!r} (choices: {choices})")
        resolved.add(tid)
    # A task that the chosen path leads to stays (Airflow's "empty branch":
    # `branch >> [a, join]; a >> join` returning "a" keeps `join`).
    reached = _descendants(task, resolved)
    return downstream - resolved - reached, None


def _descendants(task: BaseTask, starts: set[str]) -> set[str]:
    tasks = task.dag.tasks
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        for down in tasks[todo.pop()].downstream_ids:
            if down not in seen:
                seen.add(down)
                todo.append(down)
    return seen
