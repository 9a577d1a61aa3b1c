"""TaskGroup: a named set of tasks, for readability. Pure.

Inside `with TaskGroup("preprocess"):` every task id gets the prefix "preprocess."
(nested groups: "outer.inner."). A group links like a task: `extract >> group` puts
`extract` upstream of the group's roots, `group >> load` puts the group's leaves
upstream of `load`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagd.authoring.tasks import Linkable
from dagd.errors import DagDefinitionError

if TYPE_CHECKING:
    from dagd.authoring.dag import DAG
    from dagd.authoring.tasks import BaseTask

_stack: list[TaskGroup] = []


def current_group() -> TaskGroup | None:
    return _stack[-1] if _stack else None


def group_prefix() -> str:
    group = current_group()
    return f"{group.qualified_id}." if group else ""


def reset_groups() -> None:
    _stack.clear()


class TaskGroup(Linkable):
    def __init__(self, group_id: str, *, tooltip: str = "") -> None:
        from dagd.authoring.dag import current_dag
        from dagd.authoring.settings import check_id
        from dagd.authoring.tasks import caller_location

        file, line = caller_location()
        dag = current_dag()
        if dag is None:
            raise DagDefinitionError(f"TaskGroup {group_id!r} is created outside a DAG",
                                     file=file, line=line, field="group_id")
        check_id(group_id, "group_id", dag_id=dag.dag_id, field="group_id", file=file,
                 line=line)
        self.parent: TaskGroup | None = current_group()
        self.group_id: str = group_id
        self.qualified_id: str = (
            f"{self.parent.qualified_id}.{group_id}" if self.parent else group_id
        )
        self.dag: DAG = dag
        self.tooltip = tooltip
        self.tasks: list[BaseTask] = []

    def __enter__(self) -> TaskGroup:
        _stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if _stack and _stack[-1] is self:
            _stack.pop()

    def add(self, task: BaseTask) -> None:
        group: TaskGroup | None = self
        while group is not None:
            group.tasks.append(task)
            group = group.parent

    @property
    def roots(self) -> list[BaseTask]:
        ids = {t.task_id for t in self.tasks}
        return [t for t in self.tasks if not (t.upstream_ids & ids)]

    @property
    def leaves(self) -> list[BaseTask]:
        ids = {t.task_id for t in self.tasks}
        return [t for t in self.tasks if not (t.downstream_ids & ids)]

    def _empty(self) -> DagDefinitionError:
        return DagDefinitionError(f"TaskGroup {self.qualified_id!r} has no task to link",
                                  dag_id=self.dag.dag_id, field="group_id")

    def set_downstream(self, other: Any) -> None:
        if not self.tasks:
            raise self._empty()
        for leaf in self.leaves:
            leaf.set_downstream(other)

    def set_upstream(self, other: Any) -> None:
        if not self.tasks:
            raise self._empty()
        for root in self.roots:
            root.set_upstream(other)

    def __repr__(self) -> str:
        return f"<TaskGroup {self.dag.dag_id}.{self.qualified_id} ({len(self.tasks)} tasks)>"
