"""The scheduler's working copy of an active run: its task instances, XComs and mapped
instances. Rebuilt from the rows at boot; the rows stay the truth."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dagd.authoring.dag import DAG
from dagd.scheduler.planner import Graph
from dagd.states import RunState, TaskState


@dataclass(slots=True)  # one per task instance of every active run: cheap to build
class TI:
    id: int
    run_id: int
    task_id: str
    state: TaskState
    try_number: int
    max_tries: int
    map_index: int = -1
    next_attempt_at: float | None = None
    attempt_id: int = 0  # its latest attempt's (the one running, while it runs)


@dataclass
class ActiveRun:
    id: int
    dag: DAG
    graph: Graph
    conf: dict[str, Any]
    logical_date: datetime | None
    tis: dict[str, TI] = field(default_factory=dict)
    xcoms: dict[str, Any] = field(default_factory=dict)
    open: int = 0
    params: dict[str, Any] | None = None
    # Mapped tasks: the instances of each (by map index) and their return values. The
    # task's own instance (map index -1) stands for them all in the graph.
    children: dict[str, list[TI]] = field(default_factory=dict)
    child_xcoms: dict[str, dict[int, Any]] = field(default_factory=dict)
    children_open: dict[str, int] = field(default_factory=dict)  # not yet ended, by task
    run_type: str = "manual"  # what started it: manual, cron, file, webhook, ...
    # Marked by a person: the state it ends in, whatever its tasks' states say.
    forced: RunState | None = None
    forced_reason: str | None = None
    deadline: float | None = None  # when its DAG's dagrun_timeout fails it
    # task instance id -> task id, built when first asked (only the changes port asks)
    _task_ids: dict[int, str] | None = field(default=None, repr=False)

    def ti(self, task_id: str, map_index: int = -1) -> TI:
        return self.tis[task_id] if map_index < 0 else self.children[task_id][map_index]

    def task_of(self, ti_id: int) -> str | None:
        """The task id of one of this run's task instances (mapped ones included)."""
        names = self._task_ids
        if names is None or ti_id not in names:  # new instances since: look again
            names = {ti.id: ti.task_id for ti in self.tis.values()}
            for children in self.children.values():
                names.update((c.id, c.task_id) for c in children)
            self._task_ids = names
        return names.get(ti_id)


class States(Mapping[str, TaskState]):
    """A read-only view of a run's task states, for the planner, without copying."""

    def __init__(self, tis: dict[str, TI]) -> None:
        self._tis = tis

    def __getitem__(self, key: str) -> TaskState:
        return self._tis[key].state

    def __iter__(self) -> Iterator[str]:
        return iter(self._tis)

    def __len__(self) -> int:
        return len(self._tis)


def parse_date(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


