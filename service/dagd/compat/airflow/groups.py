"""Airflow's `TaskGroup` as a dagd TaskGroup: its tasks' ids get the group's prefix
(`group.task`), and it links as a whole. `prefix_group_id=False` is refused (dagd's ids
always carry their groups); colours and a group's `default_args` are ignored."""

from __future__ import annotations

from typing import Any

from dagd.authoring.groups import TaskGroup as DagdTaskGroup
from dagd.compat.airflow.links import Linking
from dagd.compat.hook import unsupported

IGNORED = frozenset({"ui_color", "ui_fgcolor", "default_args", "dag", "parent_group",
                     "add_suffix_on_collision", "group_display_name"})


class TaskGroup(Linking, DagdTaskGroup):
    def __init__(self, group_id: str, tooltip: str = "", *, prefix_group_id: bool = True,
                 **ignored: Any) -> None:
        if not prefix_group_id:
            raise unsupported("TaskGroup(prefix_group_id=False)")
        unknown = set(ignored) - IGNORED
        if unknown:
            raise TypeError(f"TaskGroup() got unexpected argument(s) {sorted(unknown)}")
        super().__init__(group_id, tooltip=tooltip)

    @property
    def children(self) -> dict[str, Any]:
        return {t.task_id: t for t in self.tasks}
