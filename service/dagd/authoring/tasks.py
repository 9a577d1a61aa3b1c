"""Tasks and their dependencies: BaseTask, PythonTask, the `@task` decorator, XComArg, chain.

Pure: building a task validates its settings and registers it on its DAG; nothing
here runs anything. `a >> b`, `a << b`, lists on either side, `set_upstream`,
`set_downstream` and `chain` all end in `BaseTask._relate`. A task finds its DAG and
group through `scope`, and a group is linked through `Linkable._link_ends`: this module
imports neither `dag` nor `groups`.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from dagd.authoring.context import INJECTABLE, Context
from dagd.authoring.scope import (
    DagScope,
    GroupScope,
    caller_location,
    current_dag,
    current_group,
    group_prefix,
)
from dagd.authoring.settings import (
    TASK_CALLBACKS,
    build_retry_policy,
    check_callbacks,
    check_email,
    check_flag,
    check_id,
    check_inherit_env,
    check_isolation,
    check_memory_limit,
    check_on_dask,
    check_resources,
    check_timeout,
    check_trigger_rule,
    with_defaults,
)
from dagd.authoring.settings import (
    TRIGGER_RULES as TRIGGER_RULES,  # re-exported: still found here
)
from dagd.errors import DagDefinitionError

PYTHON_MODES = ("normal", "branch", "short_circuit")


def _owner(task_id: Any, dag: DagScope[BaseTask] | None, **where: Any) -> DagScope[BaseTask]:
    """The DAG a new task belongs to: the one given, or the innermost `with DAG()`."""
    owner = dag or current_dag()
    if owner is None:
        raise DagDefinitionError(
            f"task {task_id!r} is created outside a DAG: use `with DAG(...):` or pass dag=",
            task_id=str(task_id),
            **where,
        )
    return owner


def _qualified_id(task_id: Any, owner: DagScope[BaseTask]) -> str:
    """The task id checked, with the prefix of the groups it is created in."""
    checked = check_id(task_id, "task_id", dag_id=owner.dag_id, task_id=str(task_id))
    return group_prefix() + checked


class Linkable:
    """`>>` and `<<`, with a task, a group or a list on either side, in terms of
    `set_upstream` and `set_downstream`; the right-hand side is returned for chaining."""

    def set_upstream(self, other: Any) -> None:
        raise NotImplementedError

    def set_downstream(self, other: Any) -> None:
        raise NotImplementedError

    def _link_ends(self, *, upstream: bool) -> list[BaseTask] | None:
        """The tasks a link to this thing ends at: upstream of a task (its last ones)
        or downstream of it (its first ones). None: not something a task links to."""
        return None

    def __rshift__(self, other: Any) -> Any:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> Any:
        # [a, b] >> self
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> Any:
        # [a, b] << self
        self.set_downstream(other)
        return self


class BaseTask(Linkable):
    """One node of a DAG. Subclasses set `kind` and implement how they run."""

    kind: ClassVar[str] = "base"
    # The tasks whose XComs an attempt of this task is handed (`Context.upstream`); None:
    # its direct upstream tasks. An Airflow task, which may pull from any task before it,
    # has all its ancestors here (dagd.compat.airflow.dag).
    xcom_sources: tuple[str, ...] | None = None
    # May run on a Dask worker (executor="dask"): a kind that needs nothing of the
    # daemon's but the DAG file's text (a Python function, a shell command).
    runs_on_dask: ClassVar[bool] = False

    def __init__(
        self,
        *,
        task_id: str,
        dag: DagScope[BaseTask] | None = None,
        retries: int | None = None,
        retry_delay: float | timedelta | None = None,
        retry_exponential_backoff: bool | None = None,
        max_retry_delay: float | timedelta | None = None,
        retry_jitter: float | None = None,
        retry_on: Iterable[type[BaseException]] | type[BaseException] | None = None,
        execution_timeout: float | timedelta | None = None,
        trigger_rule: str | None = None,
        isolation: str | None = None,
        inherit_env: bool | None = None,
        memory_limit: int | str | None = None,
        executor: str | None = None,
        resources: dict[str, float | int | str] | None = None,
        doc: str | None = None,
        on_execute_callback: Callback | None = None,
        on_success_callback: Callback | None = None,
        on_failure_callback: Callback | None = None,
        on_retry_callback: Callback | None = None,
        email: str | Iterable[str] | None = None,
        email_on_failure: bool | None = None,
        email_on_retry: bool | None = None,
        email_on_success: bool | None = None,
    ) -> None:
        self.fileloc, self.lineno = caller_location()
        owner = _owner(task_id, dag, file=self.fileloc, line=self.lineno)
        self.task_id: str = _qualified_id(task_id, owner)
        self.group: GroupScope[BaseTask] | None = current_group()
        self.dag: DagScope[BaseTask] = owner
        self.doc = doc
        where: dict[str, Any] = {"dag_id": owner.dag_id, "task_id": self.task_id}
        settings = with_defaults(
            owner.default_args,
            retries=retries,
            retry_delay=retry_delay,
            retry_exponential_backoff=retry_exponential_backoff,
            max_retry_delay=max_retry_delay,
            retry_jitter=retry_jitter,
            retry_on=retry_on,
            execution_timeout=execution_timeout,
            trigger_rule=trigger_rule,
            isolation=isolation,
            inherit_env=inherit_env,
            memory_limit=memory_limit,
            executor=executor,
            resources=resources,
            on_execute_callback=on_execute_callback,
            on_success_callback=on_success_callback,
            on_failure_callback=on_failure_callback,
            on_retry_callback=on_retry_callback,
            email=email,
            email_on_failure=email_on_failure,
            email_on_retry=email_on_retry,
            email_on_success=email_on_success,
        )
        self._email_settings(settings, where)
        self.retry_policy = build_retry_policy(settings, **where)
        # name -> the callables the daemon calls with the context once that state is
        # committed (dagd.scheduler.callbacks); empty when none is set.
        self.callbacks: dict[str, tuple[Callable[..., Any], ...]] = {
            name: found for name in TASK_CALLBACKS
            if (found := check_callbacks(settings[name], name, **where))}
        self.execution_timeout = check_timeout(settings["execution_timeout"], **where)
        self.trigger_rule: str = check_trigger_rule(settings["trigger_rule"], **where)
        self.isolation: str | None = check_isolation(settings["isolation"], **where)
        # A worker process gets a clean environment unless the task asks for the daemon's.
        self.inherit_env: bool = check_inherit_env(settings["inherit_env"], **where)
        # Bytes a worker process may allocate (enforced for isolation="process" only).
        self.memory_limit: int | None = check_memory_limit(settings["memory_limit"], **where)
        if memory_limit is not None and type(self).runs_in_loop is BaseTask.runs_in_loop:
            raise DagDefinitionError(
                f"memory_limit is enforced only for Python functions run in a worker "
                f"process; a {self.kind} task runs in the daemon's event loop: drop it",
                field="memory_limit", **where)
        if memory_limit is not None and self.isolation == "thread":
            raise DagDefinitionError(
                "memory_limit is enforced only in a worker process (a thread shares the "
                "daemon's memory): drop it or use isolation=\"process\"",
                field="memory_limit", **where)
        # "local" (this machine) or "dask" (a Dask cluster), and the Dask worker
        # resources each attempt needs there.
        self.executor, self.resources = check_on_dask(
            self, settings["executor"], check_resources(settings["resources"], **where),
            isolation=isolation, **where)
        self.upstream_ids: set[str] = set()
        self.downstream_ids: set[str] = set()
        self._register()

    def _email_settings(self, settings: dict[str, Any], where: dict[str, Any]) -> None:
        """Who is emailed about this task, as Airflow spells it: on failure and on retry
        by default once `email` is set; on success only when asked."""
        self.email: tuple[str, ...] = check_email(settings["email"], **where)
        self.email_on_failure = check_flag(settings["email_on_failure"], "email_on_failure",
                                           True, **where)
        self.email_on_retry = check_flag(settings["email_on_retry"], "email_on_retry", True,
                                         **where)
        self.email_on_success = check_flag(settings["email_on_success"], "email_on_success",
                                           False, **where)

    def _register(self) -> None:
        """Add the task to its DAG (which refuses a duplicate id), then to its groups."""
        self.dag.add_task(self)
        if self.group is not None:
            self.group.add(self)

    # -- dependencies -------------------------------------------------------------
    def _relate(self, other: Any, *, upstream: bool) -> None:
        # Check every item before linking any, so a refused list leaves no half-made edges.
        items = _as_tasks(other, self, upstream=upstream)
        for item in items:
            if item is self:
                raise DagDefinitionError(
                    "a task cannot depend on itself",
                    dag_id=self.dag.dag_id,
                    task_id=self.task_id,
                    file=caller_location()[0],
                    line=caller_location()[1],
                )
            if item.dag is not self.dag:
                raise DagDefinitionError(
                    f"cannot link tasks of different DAGs ({item.dag.dag_id!r} "
                    f"task {item.task_id!r})",
                    dag_id=self.dag.dag_id,
                    task_id=self.task_id,
                )
        for item in items:
            up, down = (item, self) if upstream else (self, item)
            up.downstream_ids.add(down.task_id)
            down.upstream_ids.add(up.task_id)

    def _link_ends(self, *, upstream: bool) -> list[BaseTask]:
        return [self]

    def set_upstream(self, other: TaskLike | Sequence[TaskLike]) -> None:
        """`other` must finish before this task starts."""
        self._relate(other, upstream=True)

    def set_downstream(self, other: TaskLike | Sequence[TaskLike]) -> None:
        """This task must finish before `other` starts."""
        self._relate(other, upstream=False)

    # -- running ----------------------------------------------------------------------
    @property
    def runs_in_loop(self) -> bool:
        """True: `execute` is awaited in the daemon's loop; False: `call_sync` runs in a
        worker process (or a thread with isolation="thread")."""
        return True

    async def execute(self, context: Context) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    def call_sync(self, context: Context) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement call_sync()")

    # -- description ----------------------------------------------------------------
    @property
    def max_tries(self) -> int:
        return self.retry_policy.max_tries

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings, stored with the DAG for the CLI and UI."""
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "upstream": sorted(self.upstream_ids),
            "trigger_rule": self.trigger_rule,
            "retries": self.retry_policy.retries,
            "execution_timeout": self.execution_timeout,
            "isolation": self.isolation,
            "memory_limit": self.memory_limit,
            **({"executor": "dask", "resources": self.resources}
               if self.executor == "dask" else {}),
            "email": list(self.email),
            "doc": self.doc,
            "line": self.lineno,
            "group": self.group.qualified_id if self.group else None,
            **({"callbacks": describe_callbacks(self.callbacks)} if self.callbacks else {}),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dag.dag_id}.{self.task_id}>"


class XComArg(Linkable):
    """The (future) return value of a task, usable as another task's argument."""

    def __init__(self, task: BaseTask, path: tuple[Any, ...] = ()) -> None:
        self.task = task
        self.path = path

    def __getitem__(self, key: Any) -> XComArg:
        return XComArg(self.task, (*self.path, key))

    def resolve(self, upstream: dict[str, Any]) -> Any:
        value: Any = upstream.get(self.task.task_id)
        for key in self.path:
            value = value[key]
        return value

    def _link_ends(self, *, upstream: bool) -> list[BaseTask]:
        return [self.task]

    def set_upstream(self, other: Any) -> None:
        self.task.set_upstream(other)

    def set_downstream(self, other: Any) -> None:
        self.task.set_downstream(other)

    def __repr__(self) -> str:
        return f"XComArg({self.task.task_id}{''.join(f'[{k!r}]' for k in self.path)})"


TaskLike = BaseTask | XComArg
# A callback setting: a function of the context (sync or async), or a list of them.
Callback = Callable[..., Any] | Sequence[Callable[..., Any]]


def describe_callbacks(callbacks: dict[str, tuple[Callable[..., Any], ...]]
                       ) -> dict[str, list[str]]:
    """name -> the callables' qualified names, for the stored description."""
    return {name: [f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
                   for fn in fns] for name, fns in callbacks.items()}


def _as_tasks(other: Any, owner: BaseTask, *, upstream: bool = True) -> list[BaseTask]:
    items = other if isinstance(other, list | tuple | set) else [other]
    out: list[BaseTask] = []
    for item in items:
        ends = item._link_ends(upstream=upstream) if isinstance(item, Linkable) else None
        if ends is None:
            raise DagDefinitionError(
                f"can only link tasks (or lists of tasks), got {item!r}",
                dag_id=owner.dag.dag_id,
                task_id=owner.task_id,
            )
        out.extend(ends)
    return out


def _find_xcom_args(value: Any) -> Iterable[XComArg]:
    if isinstance(value, XComArg):
        yield value
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _find_xcom_args(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _find_xcom_args(item)


def resolve_args(value: Any, upstream: dict[str, Any]) -> Any:
    """Replace every XComArg inside `value` with the upstream task's return value."""
    if isinstance(value, XComArg):
        return value.resolve(upstream)
    if isinstance(value, list):
        return [resolve_args(v, upstream) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve_args(v, upstream) for v in value)
    if isinstance(value, dict):
        return {k: resolve_args(v, upstream) for k, v in value.items()}
    return value


class PythonTask(BaseTask):
    """Run a Python callable. Async functions run in the daemon's event loop; sync ones
    in a worker process by default (`isolation="thread"` runs them in a thread)."""

    kind = "python"
    runs_on_dask = True

    def __init__(
        self,
        *,
        task_id: str,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        mode: str = "normal",
        expand: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id=task_id, **kwargs)
        if mode not in PYTHON_MODES:
            raise DagDefinitionError(
                f"mode must be one of {', '.join(PYTHON_MODES)}, got {mode!r}",
                dag_id=self.dag.dag_id, task_id=self.task_id, field="mode",
            )
        # "branch": returns the id(s) of the downstream task(s) to follow; the others are
        # skipped. "short_circuit": a falsy return value skips everything downstream.
        self.mode = mode
        if not callable(python_callable):
            raise DagDefinitionError(
                f"python_callable must be callable, got {python_callable!r}",
                dag_id=self.dag.dag_id,
                task_id=self.task_id,
                field="python_callable",
            )
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.is_async = inspect.iscoroutinefunction(python_callable)
        if self.is_async and kwargs.get("memory_limit") is not None:
            raise DagDefinitionError(
                "memory_limit is enforced only in a worker process, and an async function "
                "runs in the daemon's event loop: drop it or make the function a plain def",
                dag_id=self.dag.dag_id, task_id=self.task_id, field="memory_limit")
        # expand: keyword -> a list, or an upstream task's output (a list at run time);
        # one task instance per item (per combination, for several keywords).
        self.mapped: dict[str, Any] | None = dict(expand) if expand else None
        if self.mapped is not None:
            for name, values in self.mapped.items():
                if not isinstance(values, list | tuple | XComArg):
                    raise DagDefinitionError(
                        f"expand({name}=...) needs a list or another task's output, "
                        f"got {type(values).__name__}",
                        dag_id=self.dag.dag_id, task_id=self.task_id, field=name,
                    )
                if name in self.op_kwargs:
                    # Each instance's item would silently replace the fixed value.
                    raise DagDefinitionError(
                        f"{name!r} is given both as a fixed argument (partial) and to "
                        "expand(); give it to one of them",
                        dag_id=self.dag.dag_id, task_id=self.task_id, field=name,
                    )
        xcom_args = list(_find_xcom_args([self.op_args, self.op_kwargs, self.mapped or {}]))
        self._has_xcom_args = bool(xcom_args)
        for arg in xcom_args:
            self.set_upstream(arg.task)
        self._injectable = self._injectable_params()

    def build_call(self, context: Context) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for this attempt, context injected by name."""
        if self._has_xcom_args:
            args = resolve_args(self.op_args, context.upstream)
            kwargs = resolve_args(self.op_kwargs, context.upstream)
        else:
            args, kwargs = list(self.op_args), dict(self.op_kwargs)
        if self.mapped is not None:
            items = self.expand_items(context.upstream)
            if not 0 <= context.map_index < len(items):
                raise DagDefinitionError(
                    f"map index {context.map_index} is out of range ({len(items)} items)",
                    dag_id=self.dag.dag_id, task_id=self.task_id,
                )
            kwargs.update(items[context.map_index])
        for position, name in self._injectable:
            if position >= len(args) and name not in kwargs:
                kwargs[name] = context.value(name)
        return args, kwargs

    def expand_items(self, upstream: dict[str, Any]) -> list[dict[str, Any]]:
        """The keyword arguments of each mapped instance, in map-index order."""
        assert self.mapped is not None
        names, lists = [], []
        for name, values in self.mapped.items():
            resolved = resolve_args(values, upstream)
            if isinstance(resolved, dict):
                resolved = list(resolved.items())
            if not isinstance(resolved, list | tuple):
                raise DagDefinitionError(
                    f"expand({name}=...) must resolve to a list, got "
                    f"{type(resolved).__name__}",
                    dag_id=self.dag.dag_id, task_id=self.task_id, field=name,
                )
            names.append(name)
            lists.append(list(resolved))
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]

    def _injectable_params(self) -> list[tuple[int, str]]:
        """(position, name) of the callable's parameters that take context values."""
        try:
            sig = inspect.signature(self.python_callable)
        except (TypeError, ValueError):
            return []
        found: list[tuple[int, str]] = []
        for position, p in enumerate(sig.parameters.values()):
            if p.name not in INJECTABLE:
                continue
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                found.append((position, p.name))
            elif p.kind == p.KEYWORD_ONLY:
                found.append((sys.maxsize, p.name))  # never filled positionally
        return found

    @property
    def runs_in_loop(self) -> bool:
        return self.is_async

    async def execute(self, context: Context) -> Any:
        args, kwargs = self.build_call(context)
        return await self.python_callable(*args, **kwargs)

    def call_sync(self, context: Context) -> Any:
        args, kwargs = self.build_call(context)
        return self.python_callable(*args, **kwargs)

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        fn = self.python_callable
        data["callable"] = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
        data["is_async"] = self.is_async
        if self.mode != "normal":
            data["kind"] = self.mode
        if self.mapped is not None:
            data["mapped"] = sorted(self.mapped)
        return data


class _TaskDecorator:
    """`@task` / `@task(...)`: calling the function inside a DAG adds a PythonTask."""

    def __init__(
        self, fn: Callable[..., Any], options: dict[str, Any],
        fixed: dict[str, Any] | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.options = options
        self.fixed = fixed or {}

    def partial(self, **kwargs: Any) -> _TaskDecorator:
        """Arguments shared by every mapped instance: `train.partial(epochs=3).expand(...)`."""
        return _TaskDecorator(self.fn, self.options, {**self.fixed, **kwargs})

    def expand(self, **mapped: Any) -> XComArg:
        """One task instance per item: `train.expand(params=[...])`, or over an upstream
        task's output at run time. Downstream tasks receive the list of results."""
        if not mapped:
            raise DagDefinitionError(f"{self.fn.__name__}.expand() needs a keyword to map")
        return self._create((), dict(self.fixed), expand=mapped)

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        return self._create(args, {**self.fixed, **kwargs})

    def _create(self, args: Any, kwargs: dict[str, Any], **extra: Any) -> XComArg:
        options = dict(self.options)
        base_id = options.pop("task_id", None) or self.fn.__name__
        dag = options.get("dag") or current_dag()
        task_id = base_id
        if dag is not None:
            prefix = group_prefix()
            n = 1
            while prefix + task_id in dag.tasks:
                task_id = f"{base_id}__{n}"
                n += 1
        created = PythonTask(
            task_id=task_id,
            python_callable=self.fn,
            op_args=args,
            op_kwargs=kwargs,
            **options,
            **extra,
        )
        return XComArg(created)

    def override(self, **options: Any) -> _TaskDecorator:
        return _TaskDecorator(self.fn, {**self.options, **options}, self.fixed)


class _TaskFactory:
    """`@task`, `@task(...)`, `@task.branch` and `@task.short_circuit`."""

    def __call__(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Turn a function into a task factory; its return value becomes its XCom."""
        if fn is not None:
            return _TaskDecorator(fn, options)
        return lambda f: _TaskDecorator(f, options)

    def branch(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """The function returns the task id (or list of ids) to follow, among the tasks
        directly downstream; the others are skipped."""
        return self(fn, mode="branch", **options)

    def short_circuit(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """A falsy return value skips every task downstream; truthy lets them run."""
        return self(fn, mode="short_circuit", **options)


task = _TaskFactory()


def chain(*items: TaskLike | Sequence[TaskLike]) -> None:
    """chain(a, b, c) is a >> b >> c; a list links every item to the next element."""
    for up, down in itertools.pairwise(items):
        if isinstance(up, list | tuple) and isinstance(down, list | tuple):
            if len(up) != len(down):
                raise DagDefinitionError(
                    f"chain() of two lists needs equal lengths, got {len(up)} and {len(down)}"
                )
            for a, b in zip(up, down, strict=True):
                a >> b
        elif isinstance(up, list | tuple):
            for a in up:
                a >> down
        else:
            up >> down  # type: ignore[operator]
