"""The Airflow context of an attempt: the dict an Airflow task gets as `context` (and
as `**kwargs`, or by parameter name), built from dagd's `Context`; `ti` and `dag_run`
as Airflow spells them, `macros`, and `get_current_context()`.

`ti.xcom_pull` reads the XComs dagd hands the attempt: for an Airflow DAG's task, those
of every task before it (`DAG.validate` sets its `xcom_sources`); `ti.xcom_push` keeps
keys for `dagd.compat.airflow.xcom.pack`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import os
import random
import time
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagd.authoring.context import TEST_MODE
from dagd.authoring.context import Context as DagdContext
from dagd.compat.airflow.dates import to_pendulum
from dagd.compat.airflow.exceptions import AirflowException
from dagd.compat.airflow.xcom import RETURN, pull
from dagd.compat.hook import airflow_imports, unsupported
from dagd.triggers.timers import Cron, Interval, timers_of

Context = dict  # `def execute(self, context: Context)`: Airflow's context is a dict

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "dagd_airflow_context", default=None)
# A timer's run carries these in its conf (dagd.triggers.timers.fire_conf).
TIMER_KEYS = ("logical_date", "data_interval_start", "data_interval_end")


def ds_add(ds: str, days: int) -> str:
    """`ds` plus `days` days, as YYYY-MM-DD."""
    if not days:
        return str(ds)
    return (dt.datetime.strptime(str(ds), "%Y-%m-%d") + dt.timedelta(days=days)).strftime(
        "%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """`ds` read with one strftime format, written with another."""
    return dt.datetime.strptime(str(ds), input_format).strftime(output_format)


def datetime_diff_for_humans(then: dt.datetime, since: dt.datetime | None = None) -> str:
    since = since or dt.datetime.now(dt.UTC)
    return f"{abs((since - then).total_seconds()):.0f} seconds"


macros = types.SimpleNamespace(
    ds_add=ds_add, ds_format=ds_format, datetime=dt.datetime, timedelta=dt.timedelta,
    time=time, uuid=uuid, random=random, json=json,
    datetime_diff_for_humans=datetime_diff_for_humans,
)


class _Refused:
    """`var` and `conn` in a template: dagd has no Airflow variables or connections."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise unsupported(f"airflow.models.Variable ({{{{ {self._name}.{attr} }}}})")


class DagRun:
    """The run, as Airflow's `dag_run`: `conf` (without the keys dagd gives a timer's or
    a backfill's run), `run_id`, dates, `run_type`."""

    def __init__(self, ctx: DagdContext, run_id: str, run_type: str,
                 dates: dict[str, Any]) -> None:
        self.dag_id = ctx.dag_id
        self.run_id = run_id
        self.id = ctx.run_id
        conf = dict(ctx.conf) if isinstance(ctx.conf, dict) else {"value": ctx.conf}
        if run_type != "manual":
            for key in (*TIMER_KEYS, "backfill"):
                conf.pop(key, None)
        self.conf = conf
        self.run_type = run_type
        self.external_trigger = run_type == "manual"
        self.logical_date = self.execution_date = dates["logical_date"]
        self.data_interval_start = dates["data_interval_start"]
        self.data_interval_end = dates["data_interval_end"]
        self.start_date = dates["logical_date"]

    def __repr__(self) -> str:
        return f"<DagRun {self.dag_id} @ {self.logical_date}: {self.run_id}>"


class TaskInstance:
    """The attempt, as Airflow's `ti`: ids, `try_number`, `xcom_push`, `xcom_pull`."""

    def __init__(self, ctx: DagdContext, task: Any, run_id: str) -> None:
        self.task = task
        self.task_id = ctx.task_id
        self.dag_id = ctx.dag_id
        self.run_id = run_id
        self.try_number = ctx.try_number
        self.map_index = ctx.map_index
        self.max_tries = getattr(task, "max_tries", 1)
        self.state = "running"
        self.hostname = ""
        self.log_url = ""
        self._upstream = ctx.upstream
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        """Keep `value` under `key`; downstream tasks read it with xcom_pull(key=...)."""
        self.pushed[str(key)] = value

    def xcom_pull(self, task_ids: str | list[str] | tuple[str, ...] | None = None,
                  dag_id: str | None = None, key: str | None = RETURN,
                  include_prior_dates: bool = False, map_indexes: Any = None,
                  default: Any = None) -> Any:
        """The value of `key` from an upstream task (or a list, for a list of ids)."""
        tasks = getattr(self.task.dag, "tasks", {})
        if isinstance(task_ids, list | tuple):
            return [pull(self._upstream, tasks.get(t), t, key) for t in task_ids]
        if task_ids is None:
            if key and key in self.pushed:
                return self.pushed[key]
            for tid in sorted(self._upstream):
                found = pull(self._upstream, tasks.get(tid), tid, key)
                if found is not None:
                    return found
            return default
        value = pull(self._upstream, tasks.get(task_ids), task_ids, key)
        return default if value is None else value

    def __repr__(self) -> str:
        return f"<TaskInstance: {self.dag_id}.{self.task_id} {self.run_id} [running]>"


def _manual_interval(logical: dt.datetime, dag: Any) -> tuple[dt.datetime, dt.datetime]:
    """A manual run's data interval, as Airflow infers it from the DAG's schedule: for a
    cron, the last whole interval before the run (a daily DAG run by hand at 01:00 on
    the 25th covers the 24th); for a timedelta, the period that ends at the run; with
    no schedule, the run's own moment."""
    timer = next(iter(timers_of(getattr(dag, "triggers", None) or [])), None)
    if isinstance(timer, Interval):
        return logical - timer.period, logical
    if isinstance(timer, Cron):
        end = timer.prev_fire(logical + dt.timedelta(microseconds=1))
        return timer.prev_fire(end), end
    return logical, logical


def _previous(logical: dt.datetime, dag: Any) -> dict[str, Any]:
    """Airflow 2's prev_ds, prev_ds_nodash, prev_execution_date: the schedule's fire
    before the logical date (None without a schedule)."""
    timer = next(iter(timers_of(getattr(dag, "triggers", None) or [])), None)
    prev = to_pendulum(timer.prev_fire(logical)) if timer is not None else None
    return {"prev_execution_date": prev,
            "prev_ds": prev.strftime("%Y-%m-%d") if prev else None,
            "prev_ds_nodash": prev.strftime("%Y%m%d") if prev else None,
            "prev_execution_date_success": None}


def _dates(ctx: DagdContext, dag: Any = None) -> tuple[dict[str, Any], str]:
    """The run's dates, and its run type: scheduled (a timer's), backfill or manual."""
    conf = ctx.conf if isinstance(ctx.conf, dict) else {}
    scheduled = all(isinstance(conf.get(k), str) for k in TIMER_KEYS)
    logical = to_pendulum(ctx.logical_date or dt.datetime.now(dt.UTC))
    if scheduled:
        start = to_pendulum(dt.datetime.fromisoformat(conf["data_interval_start"]))
        end = to_pendulum(dt.datetime.fromisoformat(conf["data_interval_end"]))
    else:
        start, end = map(to_pendulum, _manual_interval(logical, dag))
    run_type = ("backfill" if conf.get("backfill") is True else "scheduled") if scheduled \
        else "manual"
    return {"logical_date": logical, "data_interval_start": start,
            "data_interval_end": end}, run_type


def _params(ctx: DagdContext, task: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """The DAG's params, the task's own over them, then the run's conf over both (each
    of its keys, as Airflow's dag_run_conf_overrides_params does)."""
    return {**ctx.params, **(getattr(task, "airflow_params", None) or {}), **conf}


def build(ctx: DagdContext, task: Any) -> dict[str, Any]:
    """The Airflow context of this attempt."""
    dates, run_type = _dates(ctx, getattr(task, "dag", None))
    logical = dates["logical_date"]
    run_id = f"{run_type}__{logical.isoformat()}"
    ti = TaskInstance(ctx, task, run_id)
    dag_run = DagRun(ctx, run_id, run_type, dates)
    ds = logical.strftime("%Y-%m-%d")
    ts = logical.isoformat()
    return {
        "ds": ds,
        "ds_nodash": ds.replace("-", ""),
        "ts": ts,
        "ts_nodash": logical.strftime("%Y%m%dT%H%M%S"),
        "ts_nodash_with_tz": ts.replace("-", "").replace(":", ""),
        "yesterday_ds": ds_add(ds, -1),
        "yesterday_ds_nodash": ds_add(ds, -1).replace("-", ""),
        "tomorrow_ds": ds_add(ds, 1),
        "tomorrow_ds_nodash": ds_add(ds, 1).replace("-", ""),
        # Airflow 2's deprecated names for the end of the data interval.
        "next_ds": dates["data_interval_end"].strftime("%Y-%m-%d"),
        "next_ds_nodash": dates["data_interval_end"].strftime("%Y%m%d"),
        "next_execution_date": dates["data_interval_end"],
        **_previous(logical, getattr(task, "dag", None)),
        **dates,
        "execution_date": logical,
        "prev_data_interval_start_success": None,
        "prev_data_interval_end_success": None,
        "prev_start_date_success": None,
        "dag": task.dag,
        "task": task,
        "dag_run": dag_run,
        "ti": ti,
        "task_instance": ti,
        "params": _params(ctx, task, dag_run.conf),
        "run_id": run_id,
        "task_instance_key_str": f"{ctx.dag_id}__{ctx.task_id}__{ds.replace('-', '')}",
        "test_mode": os.environ.get(TEST_MODE) == "1",  # dagd test, dagd tasks test
        "macros": macros,
        "map_index_template": None,
        "inlets": [],
        "outlets": [],
        "triggering_dataset_events": {},
        "var": _Refused("var"),
        "conn": _Refused("conn"),
        "expanded_ti_count": None,
    }


class _RunOnly:
    """What `build` reads of a task, for a DAG's own callback (it has none)."""

    def __init__(self, dag: Any) -> None:
        self.dag = dag
        self.max_tries = 0


def _when(seconds: float | None) -> Any:
    return to_pendulum(dt.datetime.fromtimestamp(seconds, dt.UTC)) if seconds else None


def callback_context(dagd: dict[str, Any]) -> dict[str, Any]:
    """What an Airflow DAG's callback gets: dagd's callback context
    (`dagd.scheduler.callbacks.callback_context`) with Airflow's own values over it:
    `run_id` as Airflow's string, `dag_run` and `ti` as in a task (`ti.xcom_pull` with
    keys), `ds_nodash`, `macros` and the other date keys."""
    run, info, dag = dagd["dag_run"], dagd.get("ti"), dagd["dag"]
    task = dagd.get("task")
    ctx = DagdContext(
        dag_id=dag.dag_id, task_id=info.task_id if info else "", run_id=run.run_id,
        try_number=info.try_number if info else 0,
        attempt_id=(info.attempt_id or 0) if info else 0, logical_date=run.logical_date,
        conf=run.conf, params=dict(dag.params),
        upstream=dict(info.xcoms) if info else {}, map_index=info.map_index if info else -1)
    airflow = build(ctx, task if task is not None else _RunOnly(dag))
    dag_run = airflow["dag_run"]
    dag_run.state = run.state
    dag_run.start_date, dag_run.end_date = _when(run.started_at), _when(run.ended_at)
    if info is None:
        for key in ("task", "ti", "task_instance", "task_instance_key_str"):
            airflow.pop(key)
    else:
        ti = airflow["ti"]
        ti.state, ti.max_tries = info.state, info.max_tries
        ti.start_date, ti.end_date = _when(info.started_at), _when(info.ended_at)
        ti.duration = (info.ended_at - info.started_at) if (
            info.started_at and info.ended_at) else None
        ti.attempt_id, ti.error, ti.log_path = info.attempt_id, info.error, info.log_path
    airflow.pop("test_mode")
    return {**dagd, **airflow, "exception": dagd["exception"]}


@contextmanager
def running(ctx: DagdContext, task: Any,
            context: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """For the time of an attempt: its Airflow context (`context`, if it is made
    already), `get_current_context()` and `import airflow` (a task body may import from
    it)."""
    context = build(ctx, task) if context is None else context
    token = _current.set(context)
    try:
        with airflow_imports():
            yield context
    finally:
        _current.reset(token)


def get_current_context() -> dict[str, Any]:
    """The Airflow context of the attempt running now."""
    context = _current.get()
    if context is None:
        raise AirflowException("get_current_context() called outside a running task")
    return context
