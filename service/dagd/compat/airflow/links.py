"""Dependencies as Airflow writes them: `chain`, `cross_downstream`, `chain_linear`,
`Label` on an edge, `TriggerRule`, and setup/teardown roles. Pure.

`Linking` is mixed into every task-like name served (operators, XComArgs, groups): it
lets a `Label` stand between two of them (`a >> Label("ok") >> b` links a to b, and b
keeps the text as its `edge_labels[a]`, which the UI draws on the edge) and gives them
`as_setup()` / `as_teardown()`.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Any

from dagd.authoring.tasks import BaseTask, Linkable
from dagd.authoring.tasks import chain as dagd_chain


class TriggerRule(StrEnum):
    """Airflow's trigger rules; `dagd_rule` says which dagd rule each one runs as."""

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_DONE_SETUP_SUCCESS = "all_done_setup_success"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_OR_SKIPPED = "none_failed_or_skipped"
    NONE_SKIPPED = "none_skipped"
    DUMMY = "dummy"
    ALWAYS = "always"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    ALL_SKIPPED = "all_skipped"
    ALL_DONE_MIN_ONE_SUCCESS = "all_done_min_one_success"


# Airflow's rules that dagd runs as one of its own; the others are dagd's names already.
# (dagd's planner does not tell setup tasks apart: all_done_setup_success waits for all.)
RULES = {
    "all_done_setup_success": "all_done",
    "none_failed_or_skipped": "none_failed_min_one_success",
    "dummy": "always",
}


def dagd_rule(value: Any) -> str | None:
    """The dagd trigger rule for an Airflow one (None stays None: the default)."""
    if value is None:
        return None
    text = str(value.value if isinstance(value, TriggerRule) else value)
    return RULES.get(text, text)


class Linking:
    """`>>` and `<<` with a Label between, and the setup/teardown roles."""

    is_setup = False
    is_teardown = False

    def _ends(self) -> list[BaseTask]:
        if isinstance(self, BaseTask):
            return [self]
        found = getattr(self, "_link_ends", None)
        return list(found(upstream=True)) if found is not None else []

    def set_downstream(self, other: Any, edge_modifier: Any = None) -> None:
        rest = _split_labels(other, self, downstream=True)
        if edge_modifier is not None and rest:
            edge_modifier.set_upstream(self)
            edge_modifier.set_downstream(rest)
        elif rest:
            super().set_downstream(rest)  # type: ignore[misc]

    def set_upstream(self, other: Any, edge_modifier: Any = None) -> None:
        rest = _split_labels(other, self, downstream=False)
        if rest:
            super().set_upstream(rest)  # type: ignore[misc]

    def as_setup(self) -> Any:
        for t in self._ends():
            t.is_setup = True  # type: ignore[attr-defined]
        return self

    def as_teardown(self, *, setups: Any = None, teardowns: Any = None,
                    on_failure_fail_dagrun: bool | None = None) -> Any:
        """A teardown runs once its upstream tasks are done, whatever their state."""
        for t in self._ends():
            t.is_teardown = True  # type: ignore[attr-defined]
            t.trigger_rule = "all_done"
        if setups is not None:
            for s in setups if isinstance(setups, list | tuple) else [setups]:
                if isinstance(s, Linking):
                    s.as_setup()
                s >> self
        return self


class SetupTeardownScope:
    """`with setup_task >> teardown_task:` (or `with teardown_task:`): the tasks made in
    the block come after the setups and before the teardowns."""

    def _scope_dag(self) -> Any:
        task: Any = getattr(self, "task", self)
        return task.dag

    def __enter__(self) -> Any:
        self._before = set(self._scope_dag().tasks)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            return
        tasks = self._scope_dag().tasks
        new = [t for tid, t in tasks.items() if tid not in self._before]
        ids = {t.task_id for t in new}
        ends = Linking._ends(self)  # type: ignore[arg-type]
        teardowns = [t for t in ends if getattr(t, "is_teardown", False)]
        setups = [t for t in ends if getattr(t, "is_setup", False)]
        for teardown in teardowns:
            setups.extend(tasks[u] for u in teardown.upstream_ids
                          if getattr(tasks[u], "is_setup", False))
        for t in new:
            if not t.upstream_ids & ids:
                for s in setups:
                    s >> t
            if not t.downstream_ids & ids:
                for down in teardowns:
                    t >> down


def _split_labels(other: Any, owner: Any, *, downstream: bool) -> list[Any]:
    """The items of `other` that are not Labels; each Label learns its end."""
    items = list(other) if isinstance(other, list | tuple | set) else [other]
    rest = []
    for item in items:
        if isinstance(item, Label):
            if downstream:
                item.set_upstream(owner)
            else:
                item.set_downstream(owner)
        else:
            rest.append(item)
    return rest


def _tasks_at(item: Any, *, upstream: bool) -> list[BaseTask]:
    """The tasks an edge to (or from) `item` ends at: a task, a group's last (or first)
    tasks, an XComArg's task."""
    if isinstance(item, list | tuple | set):
        return [t for i in item for t in _tasks_at(i, upstream=upstream)]
    found = item._link_ends(upstream=upstream) if isinstance(item, Linkable) else None
    return list(found or [])


class Label(Linkable):
    """`a >> Label("text") >> b`: an edge's label. The edge is made, and its downstream
    task keeps the text: `b.edge_labels["a"] == "text"` (the UI draws it on the edge)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._ups: list[Any] = []
        self._downs: list[Any] = []

    def _link(self, up: Any, down: Any) -> None:
        up >> down
        for task in _tasks_at(down, upstream=False):
            labels: dict[str, str] = getattr(task, "edge_labels", None) or {}
            labels.update({u.task_id: str(self.label) for u in _tasks_at(up, upstream=True)})
            task.edge_labels = labels  # type: ignore[attr-defined]

    def set_upstream(self, other: Any) -> None:
        items = list(other) if isinstance(other, list | tuple | set) else [other]
        self._ups.extend(items)
        for down in self._downs:
            for up in items:
                self._link(up, down)

    def set_downstream(self, other: Any) -> None:
        items = list(other) if isinstance(other, list | tuple | set) else [other]
        self._downs.extend(items)
        for up in self._ups:
            self._link(up, items)

    def __repr__(self) -> str:
        return f"Label({self.label!r})"


def chain(*items: Any) -> None:
    """Airflow's chain: each item (a task, a group, a list) before the next; two lists of
    one length pair up."""
    dagd_chain(*items)


def cross_downstream(from_tasks: Any, to_tasks: Any) -> None:
    """Every task of `from_tasks` before every task of `to_tasks`."""
    for up in from_tasks:
        up >> list(to_tasks)


def chain_linear(*items: Any) -> None:
    """Every task of each item before every task of the next."""
    for ups, downs in itertools.pairwise(items):
        for up in ups if isinstance(ups, list | tuple) else [ups]:
            up >> (list(downs) if isinstance(downs, list | tuple) else downs)


def apply_defaults(fn: Any) -> Any:
    """Airflow 1's decorator for an operator's __init__: default_args are applied by the
    DAG already, so it changes nothing."""
    return fn
