"""Where a definition is being made: the open `with DAG()` and `with TaskGroup()`
blocks, and the line of the user's file that made it. Pure.

The bottom of authoring: tasks, groups and DAGs all ask it, and it imports none of
them. It knows a DAG and a group only by the little that the tasks built inside them
need (`DagScope`, `GroupScope`); `dag.DAG` and `groups.TaskGroup` are those.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, TypeVar

TaskT = TypeVar("TaskT")
TaskT_contra = TypeVar("TaskT_contra", contravariant=True)


class DagScope(Protocol[TaskT]):
    """A DAG as the tasks and groups built in it see it (and code that holds a task)."""

    dag_id: str
    fileloc: str | None
    source: str | None
    default_args: dict[str, Any]
    tasks: dict[str, TaskT]

    def add_task(self, task: TaskT) -> None: ...


class GroupScope(Protocol[TaskT_contra]):
    """A task group as the tasks built in it see it."""

    qualified_id: str

    def add(self, task: TaskT_contra) -> None: ...


_dags: list[DagScope[Any]] = []
_groups: list[GroupScope[Any]] = []


def current_dag() -> DagScope[Any] | None:
    """The innermost open `with DAG(...)`, if any."""
    return _dags[-1] if _dags else None


def enter_dag(dag: DagScope[Any]) -> None:
    _dags.append(dag)


def exit_dag(dag: DagScope[Any]) -> None:
    if _dags and _dags[-1] is dag:
        _dags.pop()


def current_group() -> GroupScope[Any] | None:
    """The innermost open `with TaskGroup(...)`, if any."""
    return _groups[-1] if _groups else None


def group_prefix() -> str:
    """What the innermost open group puts before a task id: "outer.inner." or ""."""
    group = current_group()
    return f"{group.qualified_id}." if group else ""


def enter_group(group: GroupScope[Any]) -> None:
    _groups.append(group)


def exit_group(group: GroupScope[Any]) -> None:
    if _groups and _groups[-1] is group:
        _groups.pop()


def reset() -> None:
    """Forget every open block: a DAG file that raised inside one never closed it."""
    _dags.clear()
    _groups.clear()


def caller_location() -> tuple[str | None, int | None]:
    """File and line of the first frame outside the dagd package: where the user wrote it."""
    frame = sys._getframe(1)
    package_dir = __file__.rsplit("/authoring/", 1)[0]
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(package_dir):
            return filename, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None, None
