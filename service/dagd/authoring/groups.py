"""TaskGroup: a named set of tasks, for readability. Pure.

Inside `with TaskGroup("preprocess"):` every task id gets the prefix "preprocess."
(nested groups: "outer.inner."). A group links like a task: `extract >> group` puts
`extract` upstream of the group's roots, `group >> load` puts the group's leaves
upstream of `load`.
"""

from __future__ import annotations

from typing import Any

from dagd.authoring.scope import (
    DagScope,
    GroupScope,
    caller_location,
    current_dag,
    current_group,
    enter_group,
    exit_group,
)
from dagd.authoring.settings import check_id
from dagd.authoring.tasks import BaseTask, Linkable
from dagd.errors import DagDefinitionError


class TaskGroup(Linkable):
    def __init__(self, group_id: str, *, tooltip: str = "") -> None:
        file, line = caller_location()
        dag = current_dag()
        if dag is None:
            raise DagDefinitionError(f"TaskGroup {group_id!r} is created outside a DAG",
                                     file=file, line=line, field="group_id")
        check_id(group_id, "group_id", dag_id=dag.dag_id, field="group_id", file=file,
                 line=line)
        self.parent: GroupScope[BaseTask] | None = current_group()
        self.group_id: str = group_id
        self.qualified_id: str = (
            f"{self.parent.qualified_id}.{group_id}" if self.parent else group_id
        )
        self.dag: DagScope[BaseTask] = dag
        self.tooltip = tooltip
        self.tasks: list[BaseTask] = []

    def __enter__(self) -> TaskGroup:
        enter_group(self)
        return self

    def __exit__(self, *exc: object) -> None:
        exit_group(self)

    def add(self, task: BaseTask) -> None:
        """A task made in this group is in every group around it too."""
        self.tasks.append(task)
        if self.parent is not None:
            self.parent.add(task)

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

    def _link_ends(self, *, upstream: bool) -> list[BaseTask]:
        if not self.tasks:
            # Linking to nothing would silently drop the dependency.
            raise self._empty()
        # Upstream of a task: the group's last tasks; downstream: its first ones.
        return self.leaves if upstream else self.roots

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
