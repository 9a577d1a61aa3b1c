"""Airflow's TaskFlow decorators: `@task` (with `multiple_outputs`, `.override()`,
`.partial()`, `.expand()`), `@task.python`, `@task.bash`, `@task.branch`,
`@task.short_circuit`, `@task_group`, `@setup` and `@teardown`.

Calling a decorated function inside a DAG adds a task and returns its `XComArg`; a
second call adds `name__1`, as in Airflow. The other `@task.<kind>` decorators
(virtualenv, docker, kubernetes, sensor, ...) are refused with what to use instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from dagd.authoring.scope import current_dag, group_prefix
from dagd.compat.airflow.bash import BashDecorated
from dagd.compat.airflow.groups import TaskGroup
from dagd.compat.airflow.operators import (
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from dagd.compat.airflow.xcom import XComArg
from dagd.compat.hook import unsupported


def _free_id(base: str, dag: Any) -> str:
    """`base`, or `base__1`, `base__2`... if the DAG has it already."""
    if dag is None:
        return base
    prefix, task_id, n = group_prefix(), base, 1
    while prefix + task_id in dag.tasks:
        task_id = f"{base}__{n}"
        n += 1
    return task_id


class Decorated:
    """A function made a task factory by `@task` and its kinds."""

    def __init__(self, fn: Callable[..., Any], operator: type, options: dict[str, Any],
                 fixed: dict[str, Any] | None = None) -> None:
        functools.update_wrapper(self, fn)
        self.function = fn
        self.operator = operator
        self.options = options
        self.fixed = fixed or {}

    def override(self, **options: Any) -> Decorated:
        return Decorated(self.function, self.operator, {**self.options, **options}, self.fixed)

    def partial(self, **kwargs: Any) -> Decorated:
        return Decorated(self.function, self.operator, self.options, {**self.fixed, **kwargs})

    def expand(self, **mapped: Any) -> XComArg:
        return self._create((), dict(self.fixed), expand=mapped)

    def expand_kwargs(self, *_: Any, **__: Any) -> Any:
        raise unsupported(f"{self.function.__name__}.expand_kwargs")

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        return self._create(args, {**self.fixed, **kwargs})

    def _create(self, args: Any, kwargs: dict[str, Any], **extra: Any) -> XComArg:
        options = dict(self.options)
        setup, teardown = options.pop("_setup", False), options.pop("_teardown", False)
        base = options.pop("task_id", None) or self.function.__name__
        task_id = _free_id(base, options.get("dag") or current_dag())
        if self.function.__doc__ and "doc_md" not in options:
            options["doc_md"] = self.function.__doc__.strip()
        made = self.operator(task_id=task_id, python_callable=self.function,
                             op_args=list(args), op_kwargs=kwargs, **options, **extra)
        arg = XComArg(made)
        if setup:
            arg.as_setup()
        if teardown:
            arg.as_teardown()
        return arg


def _decorator(operator: type, **preset: Any) -> Callable[..., Any]:
    def make(python_callable: Callable[..., Any] | None = None, **options: Any) -> Any:
        opts = {**preset, **options}
        if python_callable is not None:
            return Decorated(python_callable, operator, opts)
        return lambda fn: Decorated(fn, operator, opts)

    return make


class _TaskFactory:
    """`@task`, `@task(...)`, and `@task.python`, `.bash`, `.branch`, `.short_circuit`."""

    def __init__(self) -> None:
        self.python = _decorator(PythonOperator)
        self.bash = _decorator(BashDecorated)
        self.branch = _decorator(BranchPythonOperator)
        self.short_circuit = _decorator(ShortCircuitOperator)

    def __call__(self, python_callable: Callable[..., Any] | None = None,
                 **options: Any) -> Any:
        return self.python(python_callable, **options)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise unsupported(f"airflow.decorators.task.{name}")


task = _TaskFactory()


def setup(python_callable: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`@setup`: a task that prepares what others use (a normal task in dagd)."""
    return task(python_callable, _setup=True, **options)


def teardown(python_callable: Callable[..., Any] | None = None, *,
             on_failure_fail_dagrun: bool = False, **options: Any) -> Any:
    """`@teardown`: runs once its upstream tasks are done, whatever their state."""
    return task(python_callable, _teardown=True, **options)


class _GroupFactory:
    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        functools.update_wrapper(self, fn)
        self.function = fn
        self.options = options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        options = dict(self.options)
        base = options.pop("group_id", None) or self.function.__name__
        group_id = _free_group_id(base)
        if self.function.__doc__:
            options.setdefault("tooltip", self.function.__doc__.strip())
        with TaskGroup(group_id, **options) as group:
            value = self.function(*args, **kwargs)
        # Airflow's rule: a function that returns a task links through it; otherwise
        # the group links as a whole.
        return value if value is not None else group

    def override(self, **options: Any) -> _GroupFactory:
        return _GroupFactory(self.function, {**self.options, **options})

    def expand(self, **_: Any) -> Any:
        raise unsupported(f"{self.function.__name__}.expand (a mapped task group)")

    partial = expand


def _free_group_id(base: str) -> str:
    dag = current_dag()
    if dag is None:
        return base
    prefix, group_id, n = group_prefix(), base, 1
    while any(t.startswith(f"{prefix}{group_id}.") for t in dag.tasks):
        group_id = f"{base}__{n}"
        n += 1
    return group_id


def task_group(python_callable: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`@task_group` / `@task_group(group_id=..., tooltip=...)`."""
    if python_callable is not None:
        return _GroupFactory(python_callable, options)
    return lambda fn: _GroupFactory(fn, options)
