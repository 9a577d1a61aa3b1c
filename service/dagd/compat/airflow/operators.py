"""Airflow's operators as dagd tasks: `BaseOperator` (a user's subclass with
`execute(self, context)` and `template_fields`), `BaseBranchOperator` (a subclass with
`choose_branch(self, context)`), `PythonOperator`, `BranchPythonOperator`,
`ShortCircuitOperator`, `EmptyOperator` (`DummyOperator`) and `LatestOnlyOperator`;
`BashOperator` is in `bash`.

An operator's Airflow arguments are sorted by `task_args`: dagd's own settings (retries,
retry_delay, execution_timeout, trigger_rule, callbacks, email...) are honoured, the rest
(owner, pool, queue, priority_weight, depends_on_past, ...) accepted and ignored. Python
code runs in a worker process with its Airflow context; branching, short-circuits and
mapping are dagd's own (`mode`, `expand`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from dagd.authoring.context import Context as DagdContext
from dagd.authoring.tasks import BaseTask, PythonTask
from dagd.compat.airflow.context import running
from dagd.compat.airflow.links import Linking, SetupTeardownScope, dagd_rule
from dagd.compat.airflow.params import plain_params
from dagd.compat.airflow.templates import Renderer, rendered_fields
from dagd.compat.airflow.xcom import XComArg, pack
from dagd.compat.hook import unsupported
from dagd.errors import DagDefinitionError

DAGD_ARGS = frozenset({
    "retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay",
    "execution_timeout", "on_execute_callback", "on_success_callback",
    "on_failure_callback", "on_retry_callback", "email", "email_on_failure",
    "email_on_retry", "isolation", "memory_limit", "retry_jitter", "retry_on",
    "inherit_env", "dag",
})
IGNORED_ARGS = frozenset({
    "owner", "depends_on_past", "wait_for_downstream", "pool", "pool_slots", "queue",
    "priority_weight", "weight_rule", "sla", "resources", "run_as_user",
    "task_concurrency", "max_active_tis_per_dag", "max_active_tis_per_dagrun",
    "executor_config", "inlets", "outlets", "start_date", "end_date", "ui_color",
    "ui_fgcolor", "task_display_name", "on_skipped_callback", "map_index_template",
    "show_return_value_in_logs", "executor", "doc_rst", "doc_json", "doc_yaml",
    "wait_for_past_depends_before_skipping", "task_group", "allow_nested_operators",
    "logger_name", "output_encoding", "email_on_success",
    "multiple_outputs", "provide_context",
})


def task_args(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """An operator's Airflow arguments as dagd task settings (the ignored ones dropped)."""
    given = dict(kwargs)
    for key, value in (given.pop("default_args", None) or {}).items():
        given.setdefault(key, value)  # an operator's own default_args
    out: dict[str, Any] = {}
    doc = given.pop("doc_md", None) or given.pop("doc", None)
    if doc is not None:
        out["doc"] = doc
    rule = given.pop("trigger_rule", None)
    if rule is not None:
        out["trigger_rule"] = dagd_rule(rule)
    unknown = sorted(set(given) - DAGD_ARGS - IGNORED_ARGS)
    if unknown:
        raise DagDefinitionError(f"{where} got unknown argument(s) {unknown}",
                                 task_id=str(kwargs.get("task_id")), field=unknown[0])
    out.update({k: v for k, v in given.items() if k in DAGD_ARGS})
    return out


def context_kwargs(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any],
                   context: dict[str, Any]) -> dict[str, Any]:
    """Airflow's rule: the context keys the callable names (all of them, with
    **kwargs), not given positionally or in op_kwargs."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return kwargs
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params)
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                        p.POSITIONAL_OR_KEYWORD)]
    filled = set(positional[:len(args)])
    named = {p.name for p in params if p.kind is not p.VAR_POSITIONAL}
    extra = {k: v for k, v in context.items()
             if (takes_all or k in named) and k not in filled and k not in kwargs}
    return {**extra, **kwargs}


class OperatorMixin(SetupTeardownScope, Linking):
    """What every Airflow operator has: `.output`, `template_fields`, Airflow's flags."""

    template_fields: Sequence[str] = ()
    template_ext: Sequence[str] = ()

    @property
    def log(self) -> logging.Logger:
        """Airflow's `self.log`: a logger named after the operator's class; what it
        logs goes to the attempt's log."""
        cls = type(self)
        return logging.getLogger(f"airflow.task.operators.{cls.__module__}.{cls.__name__}")

    template_fields_renderers: dict[str, str] = {}
    ui_color = "#fff"
    do_xcom_push = True
    multiple_outputs = False
    airflow_params: dict[str, Any] = {}

    def _airflow_flags(self, *, params: Any, do_xcom_push: bool,
                       multiple_outputs: bool | None) -> None:
        self.airflow_params = plain_params(params)
        self.do_xcom_push = do_xcom_push
        self.multiple_outputs = bool(multiple_outputs)

    @property
    def doc_md(self) -> str | None:
        return getattr(self, "doc", None)

    @doc_md.setter
    def doc_md(self, value: str | None) -> None:
        """`task.doc_md = ...` after the task is made, as Airflow's tutorial does."""
        self.doc = value

    @property
    def output(self) -> XComArg:
        return XComArg(self)  # type: ignore[arg-type]

    @property
    def params(self) -> dict[str, Any]:
        return self.airflow_params

    @params.setter
    def params(self, value: Any) -> None:
        self.airflow_params = plain_params(value)

    def result(self, value: Any, pushed: dict[str, Any]) -> Any:
        """What the attempt stores as XCom."""
        mode = getattr(self, "mode", "normal")
        if mode == "branch":
            return self._branch_ids(value)
        if not self.do_xcom_push:
            value = None
        if mode != "normal":
            return value  # a short-circuit's condition: as returned
        return pack(value, pushed)

    def _branch_ids(self, value: Any) -> Any:
        """A branch may name a task group: that is its first tasks after this one."""
        chosen = value if isinstance(value, list | tuple) else [value]
        downstream: set[str] = getattr(self, "downstream_ids", set())
        out: list[Any] = []
        for item in chosen:
            inside = sorted(t for t in downstream if isinstance(item, str)
                            and t.startswith(f"{item}."))
            out.extend(inside if item not in downstream and inside else [item])
        return out if isinstance(value, list | tuple) or len(out) != 1 else out[0]

    @classmethod
    def partial(cls, **_: Any) -> Any:
        raise unsupported(f"{cls.__name__}.partial(...).expand(...)")


class BaseOperator(OperatorMixin, BaseTask):
    """Airflow's BaseOperator: subclass it and write `execute(self, context)`; it runs
    in a worker process, its `template_fields` rendered first."""

    kind = "airflow"

    def __init__(self, *, task_id: str, params: Any = None, do_xcom_push: bool = True,
                 multiple_outputs: bool | None = None, **kwargs: Any) -> None:
        super().__init__(task_id=task_id, **task_args(kwargs, type(self).__name__))
        self._airflow_flags(params=params, do_xcom_push=do_xcom_push,
                            multiple_outputs=multiple_outputs)

    @property
    def runs_in_loop(self) -> bool:
        return False

    def execute(self, context: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define execute(self, context)")

    def render_template_fields(self, context: dict[str, Any]) -> None:
        """Airflow's hook for rendering; dagd renders the fields around `execute`."""

    def call_sync(self, context: DagdContext) -> Any:
        return call_operator(self, context, self.execute)

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data["operator"] = type(self).__name__
        return data


class BaseBranchOperator(BaseOperator):
    """Airflow's BaseBranchOperator: subclass it and write `choose_branch(self,
    context)`, which returns the task id(s) to follow; the other direct downstream tasks
    are skipped, as a BranchPythonOperator's."""

    mode = "branch"

    def choose_branch(self, context: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define choose_branch(self, context)")

    def execute(self, context: Any) -> Any:
        return self.choose_branch(context)


def call_operator(task: Any, context: DagdContext, execute: Callable[[Any], Any]) -> Any:
    """An Airflow operator's attempt: its fields rendered, `execute(context)` called with
    the Airflow context, its XCom with the keys it pushed."""
    with running(context, task) as airflow_context:
        with rendered_fields(task, airflow_context, context):
            value = execute(airflow_context)
        return task.result(value, airflow_context["ti"].pushed)


class PythonOperator(OperatorMixin, PythonTask):
    """Airflow's PythonOperator (and what `@task` makes): the callable gets op_args,
    op_kwargs and the context keys it names (all of them with **kwargs)."""

    kind = "python"
    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")
    airflow_mode = "normal"

    def __init__(self, *, task_id: str, python_callable: Callable[..., Any],
                 op_args: Sequence[Any] | None = None, op_kwargs: dict[str, Any] | None = None,
                 templates_dict: dict[str, Any] | None = None,
                 templates_exts: Sequence[str] | None = None, params: Any = None,
                 do_xcom_push: bool = True, multiple_outputs: bool | None = None,
                 expand: dict[str, Any] | None = None, **kwargs: Any) -> None:
        extra = task_args(kwargs, type(self).__name__)
        super().__init__(task_id=task_id, python_callable=python_callable,
                         op_args=list(op_args or []), op_kwargs=dict(op_kwargs or {}),
                         mode=self.airflow_mode, expand=expand, **extra)
        self._injectable = []  # the Airflow context is passed by Airflow's rule instead
        self.templates_dict = templates_dict
        if templates_exts:  # templates_dict values ending so are template files
            self.template_ext = tuple(templates_exts)
        self._airflow_flags(params=params, do_xcom_push=do_xcom_push,
                            multiple_outputs=multiple_outputs)

    @property
    def runs_in_loop(self) -> bool:
        return False

    def call_sync(self, context: DagdContext) -> Any:
        with running(context, self) as airflow_context:
            with rendered_fields(self, airflow_context, context) as renderer:
                airflow_context["templates_dict"] = self.templates_dict
                value = self.execute_callable(context, airflow_context, renderer)
            return self.result(value, airflow_context["ti"].pushed)

    def execute_callable(self, context: DagdContext, airflow_context: dict[str, Any],
                         renderer: Renderer) -> Any:
        args, kwargs = self.build_call(context)
        kwargs = context_kwargs(self.python_callable, args, kwargs, airflow_context)
        return self.python_callable(*args, **kwargs)

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data["operator"] = type(self).__name__
        return data


class BranchPythonOperator(PythonOperator):
    """The callable returns the task id(s) to follow; the other direct downstream tasks
    are skipped."""

    airflow_mode = "branch"


class ShortCircuitOperator(PythonOperator):
    """A falsy return value skips what follows: every task after it
    (`ignore_downstream_trigger_rules=True`, the default) or only the direct ones,
    the rest by their trigger rules."""

    airflow_mode = "short_circuit"

    def __init__(self, *, ignore_downstream_trigger_rules: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skip_all_downstream = bool(ignore_downstream_trigger_rules)


class EmptyOperator(OperatorMixin, BaseTask):
    """Does nothing (in the daemon's loop, at once): a join or a marker."""

    kind = "empty"

    def __init__(self, *, task_id: str, params: Any = None, **kwargs: Any) -> None:
        super().__init__(task_id=task_id, **task_args(kwargs, type(self).__name__))
        self._airflow_flags(params=params, do_xcom_push=False, multiple_outputs=False)

    async def execute(self, context: DagdContext) -> Any:
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass with Airflow's `execute(self, context)` (a DummyOperator that raises
        AirflowSkipException, say) runs it as a BaseOperator's: in a worker process,
        with the Airflow context."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("execute")
        if own is not None and not inspect.iscoroutinefunction(own):
            cls.airflow_execute = own  # type: ignore[attr-defined]
            cls.execute = EmptyOperator.execute  # type: ignore[method-assign]
            cls.runs_in_loop = property(lambda self: False)  # type: ignore[assignment]
            cls.call_sync = _call_airflow_execute  # type: ignore[method-assign]
            cls.kind = "airflow"


def _call_airflow_execute(self: Any, context: DagdContext) -> Any:
    return call_operator(self, context, lambda ctx: self.airflow_execute(ctx))


class LatestOnlyOperator(OperatorMixin, BaseTask):
    """Skips what follows unless this is the latest scheduled run (the next fire after
    its data interval has not come yet); a triggered run always goes on."""

    kind = "latest_only"
    mode = "short_circuit"

    def __init__(self, *, task_id: str, params: Any = None, **kwargs: Any) -> None:
        super().__init__(task_id=task_id, **task_args(kwargs, type(self).__name__))
        self._airflow_flags(params=params, do_xcom_push=False, multiple_outputs=False)

    async def execute(self, context: DagdContext) -> Any:
        return is_latest(getattr(self.dag, "triggers", []), context, datetime.now(UTC))


def is_latest(triggers: list[Any], context: DagdContext, now: datetime) -> bool:
    """True if the run is manual, or the latest scheduled one at `now`."""
    from dagd.triggers.timers import timers_of

    conf = context.conf if isinstance(context.conf, dict) else {}
    end = conf.get("data_interval_end")
    timers = timers_of(triggers)
    if not isinstance(end, str) or not timers:
        return True
    interval_end = datetime.fromisoformat(end)
    return interval_end < now <= timers[0].next_fire(interval_end)


def is_venv_installed() -> bool:
    """Airflow's check before a virtualenv task: dagd runs none, so False."""
    return False
