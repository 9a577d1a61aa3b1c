"""DAG: a named graph of tasks with its triggers and defaults; the `@dag` decorator.

Pure. `validate()` runs the cycle check and returns a topological order; the loader
calls it when a file has been imported, so a bad DAG never reaches the scheduler.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from dagd.authoring import scope
from dagd.authoring.scope import caller_location
from dagd.authoring.scope import current_dag as current_dag  # re-exported: still found here
from dagd.authoring.settings import (
    DAG_CALLBACKS,
    TASK_CALLBACKS,
    TASK_DEFAULT_KEYS,
    check_callbacks,
    check_email,
    check_id,
    check_timeout,
)
from dagd.authoring.tasks import BaseTask, Callback, describe_callbacks
from dagd.errors import CycleError, DagDefinitionError

# While the loader imports a file, every DAG built is collected here.
_collector: list[DAG] | None = None


def start_collecting() -> None:
    global _collector
    _collector = []


def stop_collecting() -> list[DAG]:
    global _collector
    collected, _collector = _collector or [], None
    scope.reset()
    return collected


def _positive(value: Any, name: str, dag_id: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DagDefinitionError(
            f"{name} must be a whole number >= 1, got {value!r}", dag_id=dag_id, field=name
        )
    return value


class DAG:
    """A workflow: tasks, their dependencies, what triggers it and its limits."""

    def __init__(
        self,
        dag_id: str,
        *,
        description: str = "",
        triggers: Iterable[Any] = (),
        schedule: Any = None,
        catchup: bool = False,
        end_date: datetime | None = None,
        notifiers: Iterable[Any] = (),
        default_args: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        max_active_runs: int | None = None,
        max_active_tasks: int | None = None,
        tags: Iterable[str] = (),
        doc: str | None = None,
        on_success_callback: Callback | None = None,
        on_failure_callback: Callback | None = None,
        email: str | Iterable[str] | None = None,
        notify_on: Iterable[str] | None = None,
        dagrun_timeout: float | timedelta | None = None,
        executor: str | None = None,
    ) -> None:
        self.fileloc, self.lineno = caller_location()
        self.dag_id = check_id(
            dag_id, "dag_id", dag_id=str(dag_id), field="dag_id", file=self.fileloc,
            line=self.lineno,
        )
        self.description = description
        self.triggers = list(triggers)
        if schedule is not None:
            # Here, not at the top: `import dagd` must not pull in croniter (see dagd/__init__).
            from dagd.triggers.timers import schedule_to_trigger

            try:
                timer = schedule_to_trigger(schedule)
            except DagDefinitionError as exc:
                raise DagDefinitionError(exc.message, dag_id=dag_id, field="schedule",
                                         file=self.fileloc, line=self.lineno) from None
            if timer is not None:
                self.triggers.append(timer)
        self.catchup = bool(catchup)
        self.end_date = _check_end_date(end_date, dag_id)
        self.notifiers = _check_notifiers(list(notifiers), dag_id)
        self.default_args = dict(default_args or {})
        if executor is not None:  # where its tasks run unless they (or default_args) say
            self.default_args.setdefault("executor", executor)
        unknown = set(self.default_args) - TASK_DEFAULT_KEYS
        if unknown:
            raise DagDefinitionError(
                f"unknown default_args key(s) {sorted(unknown)}; "
                f"known: {', '.join(sorted(TASK_DEFAULT_KEYS))}",
                dag_id=dag_id,
                field="default_args",
            )
        where = {"dag_id": dag_id, "file": self.fileloc, "line": self.lineno}
        for name in TASK_CALLBACKS:  # refused here, not once per task
            check_callbacks(self.default_args.get(name), f"default_args.{name}", **where)
        # The run's callbacks: name -> callables, called once the run's end is committed.
        given = {"on_success_callback": on_success_callback,
                 "on_failure_callback": on_failure_callback}
        self.callbacks: dict[str, tuple[Callable[..., Any], ...]] = {
            name: found for name in DAG_CALLBACKS
            if (found := check_callbacks(given[name], name, **where))}
        # Who receives this DAG's run summary, and for which ends of a run.
        self.email, self.notify_on = _check_summary(email, notify_on, dag_id)
        self.params = dict(params or {})
        self.max_active_runs = _positive(max_active_runs, "max_active_runs", dag_id)
        self.max_active_tasks = _positive(max_active_tasks, "max_active_tasks", dag_id)
        # Seconds a run may take from its start; then it fails, and what runs is stopped.
        self.dagrun_timeout = check_timeout(dagrun_timeout, "dagrun_timeout", **where)
        self.tags = list(tags)
        self.doc = doc
        self.tasks: dict[str, BaseTask] = {}
        self.source: str | None = None  # the file's text, set by the loader
        if _collector is not None:
            _collector.append(self)

    def __enter__(self) -> DAG:
        scope.enter_dag(self)
        return self

    def __exit__(self, *exc: object) -> None:
        scope.exit_dag(self)

    def add_task(self, task: BaseTask) -> None:
        if task.task_id in self.tasks:
            raise DagDefinitionError(
                "duplicate task id: another task of this DAG has it already",
                dag_id=self.dag_id,
                task_id=task.task_id,
                file=task.fileloc,
                line=task.lineno,
            )
        self.tasks[task.task_id] = task

    @property
    def tasks_on_dask(self) -> bool:
        """Does any of its tasks run on a Dask cluster (executor="dask")?"""
        return any(task.executor == "dask" for task in self.tasks.values())

    def get_task(self, task_id: str) -> BaseTask:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise DagDefinitionError(
                "no such task", dag_id=self.dag_id, task_id=task_id
            ) from None

    @property
    def roots(self) -> list[BaseTask]:
        return [t for t in self.tasks.values() if not t.upstream_ids]

    @property
    def leaves(self) -> list[BaseTask]:
        return [t for t in self.tasks.values() if not t.downstream_ids]

    def validate(self) -> list[str]:
        """Check the graph; return task ids in a topological order. Raise on a cycle."""
        for t in self.tasks.values():
            missing = t.upstream_ids - self.tasks.keys()
            if missing:
                raise DagDefinitionError(
                    f"depends on unknown task(s) {sorted(missing)}",
                    dag_id=self.dag_id,
                    task_id=t.task_id,
                )
        indegree = {tid: len(t.upstream_ids) for tid, t in self.tasks.items()}
        ready = [tid for tid, n in indegree.items() if n == 0]
        order: list[str] = []
        while ready:
            tid = ready.pop()
            order.append(tid)
            for down in self.tasks[tid].downstream_ids:
                indegree[down] -= 1
                if indegree[down] == 0:
                    ready.append(down)
        if len(order) != len(self.tasks):
            cycle = self._find_cycle({tid for tid, n in indegree.items() if n > 0})
            raise CycleError(
                f"cycle in dependencies: {' -> '.join(cycle)}",
                cycle=cycle,
                dag_id=self.dag_id,
                task_id=cycle[0],
                file=self.fileloc,
                line=self.lineno,
            )
        return order

    def _find_cycle(self, candidates: set[str]) -> list[str]:
        """Walk upstream inside the unsorted remainder until a task repeats.

        Upstream, not downstream: every task left unsorted has an unsorted upstream task,
        but a task merely downstream of a cycle may have no unsorted downstream one.
        Returns the cycle in dependency order, starting and ending at its smallest id.
        """
        path: list[str] = []
        seen: dict[str, int] = {}
        node = min(candidates)
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = min(u for u in self.tasks[node].upstream_ids if u in candidates)
        loop = path[seen[node] :][::-1]
        first = loop.index(min(loop))
        loop = loop[first:] + loop[:first]
        return [*loop, loop[0]]

    def describe(self) -> dict[str, Any]:
        """JSON-ready description of the DAG, stored for the CLI and UI."""
        order = self.validate()
        return {
            "dag_id": self.dag_id,
            "description": self.description,
            "fileloc": self.fileloc,
            "line": self.lineno,
            "tags": self.tags,
            "params": self.params,
            "max_active_runs": self.max_active_runs,
            "max_active_tasks": self.max_active_tasks,
            "triggers": [describe_trigger(t) for t in self.triggers],
            "catchup": self.catchup,
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "notifiers": [n.describe() for n in self.notifiers],
            "email": list(self.email),
            "notify_on": sorted(self.notify_on),
            **({"callbacks": describe_callbacks(self.callbacks)} if self.callbacks else {}),
            "tasks": [self.tasks[tid].describe() for tid in order],
        }

    def __repr__(self) -> str:
        return f"<DAG {self.dag_id} ({len(self.tasks)} tasks)>"


def describe_trigger(trigger: Any) -> dict[str, Any]:
    describe = getattr(trigger, "describe", None)
    if callable(describe):
        result: dict[str, Any] = describe()
        return result
    return {"kind": type(trigger).__name__, "repr": repr(trigger)}


def dag(
    dag_id: str | Callable[..., Any] | None = None, **options: Any
) -> Any:
    """`@dag` / `@dag(...)`: calling the decorated function builds the DAG and returns it."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., DAG]:
        @functools.wraps(fn)
        def build(*args: Any, **kwargs: Any) -> DAG:
            the_id = dag_id if isinstance(dag_id, str) else fn.__name__
            opts = dict(options)
            opts.setdefault("description", (fn.__doc__ or "").strip().split("\n")[0])
            with DAG(the_id, **opts) as built:
                fn(*args, **kwargs)
            return built

        return build

    if callable(dag_id):
        return wrap(dag_id)
    return wrap


def _check_end_date(value: Any, dag_id: str) -> datetime | None:
    """A DAG's `end_date=`: its timers fire no run whose logical date is after it."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise DagDefinitionError(f"end_date must be a timezone-aware datetime, got {value!r}",
                                 dag_id=dag_id, field="end_date")
    return value


def _is_notifier(value: Any) -> bool:
    """A notifier by its shape: a `name`, the events it wants (`on`), `send` and `describe`.
    (`dagd.notify.base.Notifier` is one; authoring need not know it.)"""
    on = getattr(value, "on", None)
    return (
        isinstance(getattr(value, "name", None), str)
        and isinstance(on, Collection)
        and not isinstance(on, str)
        and all(isinstance(event, str) for event in on)
        and callable(getattr(value, "send", None))
        and callable(getattr(value, "describe", None))
    )


def _check_notifiers(notifiers: list[Any], dag_id: str) -> list[Any]:
    names: set[str] = set()
    for n in notifiers:
        if not _is_notifier(n):
            raise DagDefinitionError(f"notifiers must be Notifier instances, got {n!r}",
                                     dag_id=dag_id, field="notifiers")
        if n.name in names:
            raise DagDefinitionError(f"two notifiers are named {n.name!r}: pass name=",
                                     dag_id=dag_id, field="notifiers")
        names.add(n.name)
    return notifiers


NOTIFY_ON = ("failure", "success")


def _check_summary(email: Any, notify_on: Any, dag_id: str) -> tuple[tuple[str, ...],
                                                                     frozenset[str]]:
    """A DAG's `email=` and `notify_on=`: one run summary per run that ends so."""
    addresses = check_email(email, dag_id=dag_id)
    if notify_on is None:
        return addresses, frozenset({"failure"} if addresses else ())
    chosen = (notify_on,) if isinstance(notify_on, str) else tuple(notify_on)
    unknown = [c for c in chosen if c not in NOTIFY_ON]
    if unknown:
        raise DagDefinitionError(f"notify_on must be among {', '.join(NOTIFY_ON)}, got "
                                 f"{notify_on!r}", dag_id=dag_id, field="notify_on")
    if chosen and not addresses:
        raise DagDefinitionError("notify_on needs email=: who receives the run summary",
                                 dag_id=dag_id, field="notify_on")
    return addresses, frozenset(chosen)
