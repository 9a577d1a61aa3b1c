"""Airflow's `DAG` and `@dag`, as dagd DAGs: each argument honoured, or accepted and
documented as ignored (the README's "Coming from Airflow" lists which).

Two generations, two defaults. Through `from airflow import DAG` (Airflow 2) a DAG
without a schedule runs daily and `catchup` is on; through `airflow.sdk` (Airflow 3) it
has no schedule and `catchup` is off. A cron schedule runs in the timezone of
`start_date` (UTC when naive), as Airflow's does; a timedelta schedule counts from
`start_date`; `end_date` (UTC when naive) ends both: no run dated after it. `@once`
gives no timer (trigger the run), `@continuous` and timetables are refused with what to
use instead.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dagd.authoring.dag import DAG as DagdDAG
from dagd.authoring.settings import TASK_DEFAULT_KEYS
from dagd.compat.airflow.context import callback_context
from dagd.compat.airflow.dates import zone_name
from dagd.compat.airflow.links import dagd_rule
from dagd.compat.airflow.params import param_schemas, plain_params
from dagd.compat.hook import unsupported
from dagd.errors import DagDefinitionError

VERSION = "2.10.5"  # the Airflow whose names these are, for a DAG file that asks

NOTSET: Any = object()
PRESETS = {"@quarterly": "0 0 1 */3 *"}  # dagd's Cron knows the other presets
# Accepted, and without effect in dagd (see the README's "Coming from Airflow").
IGNORED_ARGS = frozenset({
    "sla_miss_callback", "default_view", "orientation", "access_control",
    "is_paused_upon_creation", "jinja_environment_kwargs", "owner_links", "auto_register",
    "fail_stop", "dag_display_name", "full_filepath", "template_undefined",
    "max_consecutive_failed_dag_runs", "deadline",
    "has_on_success_callback", "has_on_failure_callback", "disable_bundle_versioning",
})


def _dagd_schedule(schedule: Any, start_date: datetime | None) -> Any:
    """An Airflow schedule as a dagd Cron or Interval (None: no timer)."""
    from dagd.triggers.timers import Cron, Interval

    if schedule is None or schedule == "@once":
        return None
    if isinstance(schedule, timedelta):
        anchor = start_date if start_date is None or start_date.tzinfo else \
            start_date.replace(tzinfo=UTC)
        return Interval(seconds=schedule.total_seconds(), start=anchor)
    if isinstance(schedule, str):
        if schedule == "@continuous":
            raise unsupported("schedule @continuous")
        return Cron(PRESETS.get(schedule, schedule), timezone=zone_name(start_date))
    if isinstance(schedule, Cron | Interval):
        return schedule
    raise unsupported(f"schedule {type(schedule).__name__}")


# default_args keys that dagd's tasks take but that mean Airflow's own things in an
# Airflow DAG file (its executor's name, its Resources object): ignored, as Airflow's.
AIRFLOW_MEANINGS = frozenset({"executor", "resources"})


def _split_default_args(default_args: dict[str, Any]) -> dict[str, Any]:
    """The default_args dagd applies to each task; the rest stay Airflow's (ignored)."""
    given = {k: v for k, v in default_args.items()
             if k in TASK_DEFAULT_KEYS and k not in AIRFLOW_MEANINGS}
    if "trigger_rule" in given:
        given["trigger_rule"] = dagd_rule(given["trigger_rule"])
    return given


def _first_line(doc: str | None) -> str:
    """The first line of text of a doc_md (what the UI shows as the description)."""
    for line in (doc or "").splitlines():
        text = line.strip().lstrip("#").strip()
        if text:
            return text
    return ""


class DAG(DagdDAG):
    """Airflow 2's DAG (`from airflow import DAG`)."""

    generation = 2

    def __init__(
        self,
        dag_id: str | None = None,
        description: str | None = None,
        *,
        schedule: Any = NOTSET,
        schedule_interval: Any = NOTSET,
        timetable: Any = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        default_args: dict[str, Any] | None = None,
        catchup: bool | None = None,
        tags: list[str] | None = None,
        doc_md: str | None = None,
        params: dict[str, Any] | None = None,
        max_active_runs: int | None = None,
        max_active_tasks: int | None = None,
        concurrency: int | None = None,
        template_searchpath: str | list[str] | None = None,
        user_defined_macros: dict[str, Any] | None = None,
        user_defined_filters: dict[str, Callable[..., Any]] | None = None,
        render_template_as_native_obj: bool = False,
        on_success_callback: Any = None,
        on_failure_callback: Any = None,
        dagrun_timeout: Any = None,
        **ignored: Any,
    ) -> None:
        if dag_id is None:
            raise DagDefinitionError("DAG() needs a dag_id", field="dag_id")
        unknown = set(ignored) - IGNORED_ARGS
        if unknown:
            raise DagDefinitionError(f"DAG() got unknown argument(s) {sorted(unknown)}",
                                     dag_id=dag_id, field=sorted(unknown)[0])
        if timetable is not None:
            raise unsupported("DAG(timetable=...)")
        args = dict(default_args or {})
        start_date = start_date or args.get("start_date")
        self.start_date = start_date
        end_date = end_date or args.get("end_date")
        if isinstance(end_date, datetime) and end_date.tzinfo is None:
            end_date = end_date.replace(tzinfo=UTC)  # Airflow's default timezone
        if schedule is NOTSET:
            schedule = schedule_interval
        if schedule is NOTSET:
            schedule = timedelta(days=1) if self.generation == 2 else None
        self.schedule_interval = schedule
        self.airflow_default_args = args
        self.template_searchpath = ([template_searchpath] if isinstance(
            template_searchpath, str) else list(template_searchpath or []))
        self.user_defined_macros = dict(user_defined_macros or {})
        self.user_defined_filters = dict(user_defined_filters or {})
        self.render_template_as_native_obj = bool(render_template_as_native_obj)
        self.airflow_params = {**plain_params(args.get("params")), **plain_params(params)}
        # What a manual run's conf is checked against (dagd.authoring.params.check_conf).
        self.param_schemas = {**param_schemas(args.get("params")), **param_schemas(params)}
        self.jinja: Any = None  # the template environment, made on first use
        self.shell_jinja: Any = None  # bash_command's, made on first use
        timer = _dagd_schedule(schedule, start_date)
        super().__init__(
            dag_id, description=description or _first_line(doc_md),
            triggers=[timer] if timer else [],
            catchup=(self.generation == 2) if catchup is None else catchup, end_date=end_date,
            default_args=_split_default_args(args), params=self.airflow_params,
            max_active_runs=max_active_runs, max_active_tasks=max_active_tasks or concurrency,
            tags=list(tags or []), doc=doc_md, dagrun_timeout=dagrun_timeout,
            on_success_callback=on_success_callback, on_failure_callback=on_failure_callback)

    @property
    def doc_md(self) -> str | None:
        return self.doc

    @doc_md.setter
    def doc_md(self, value: str | None) -> None:
        """`dag.doc_md = __doc__` after the DAG is made, as Airflow's tutorial does."""
        self.doc = value
        if not self.description:
            self.description = _first_line(value)

    @property
    def folder(self) -> str | None:
        """The DAG file's folder (template files are found there too)."""
        from pathlib import Path

        return str(Path(self.fileloc).parent) if self.fileloc else None

    def validate(self) -> list[str]:
        """The graph checked; then each task is handed the XComs of all the tasks before
        it (Airflow's xcom_pull reads any task of the run, not only the direct
        upstream ones)."""
        order = super().validate()
        before: dict[str, set[str]] = {}
        for tid in order:
            task = self.tasks[tid]
            seen = set(task.upstream_ids)
            for up in task.upstream_ids:
                seen |= before[up]
            before[tid] = seen
            task.xcom_sources = tuple(sorted(seen))
        return order

    @property
    def task_dict(self) -> dict[str, Any]:
        return self.tasks

    @property
    def task_ids(self) -> list[str]:
        return list(self.tasks)

    def has_task(self, task_id: str) -> bool:
        return task_id in self.tasks

    def test(self, *, run_conf: dict[str, Any] | None = None, conf: dict[str, Any] |
             None = None, **_: Any) -> int:
        """Run this DAG once in the foreground, as `dagd test` does; its exit code."""
        import json
        import subprocess
        import sys

        command = [sys.executable, "-m", "dagd.cli", "test", self.dag_id,
                   "--conf", json.dumps(run_conf or conf or {})]
        env = {**__import__("os").environ, "DAGD_DAGS_FOLDER": self.folder or "."}
        return subprocess.run(command, env=env, check=False).returncode

    def adapt_callback_context(self, context: dict[str, Any]) -> dict[str, Any]:
        """A callback's context with Airflow's values (`run_id` as Airflow's string,
        `ti.xcom_pull` with keys, `ds_nodash`, `macros`...)."""
        return callback_context(context)

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data["airflow"] = {"generation": self.generation,
                           "start_date": self.start_date.isoformat() if self.start_date
                           else None,
                           "schedule": str(self.schedule_interval)}
        data["doc_md"] = self.doc_md
        for task in data["tasks"]:  # a Label's text, on the edge it names
            labels = getattr(self.tasks[task["task_id"]], "edge_labels", None)
            if labels:
                task["edge_labels"] = dict(sorted(labels.items()))
        return data


class DAG3(DAG):
    """Airflow 3's DAG (`from airflow.sdk import DAG`): no schedule and no catchup by
    default."""

    generation = 3


def _dag_decorator(cls: type[DAG]) -> Callable[..., Any]:
    def dag(dag_id: Any = None, **options: Any) -> Any:
        """`@dag` / `@dag(...)`: calling the function builds the DAG and returns it;
        its parameters with defaults become the DAG's params."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., DAG]:
            @functools.wraps(fn)
            def build(*args: Any, **kwargs: Any) -> DAG:
                opts = dict(options)
                the_id = opts.pop("dag_id", None) or (
                    dag_id if isinstance(dag_id, str) else fn.__name__)
                defaults = {name: p.default for name, p in
                            inspect.signature(fn).parameters.items()
                            if p.default is not inspect.Parameter.empty}
                opts["params"] = {**defaults, **(opts.get("params") or {})}
                if fn.__doc__ and "doc_md" not in opts:
                    opts["doc_md"] = inspect.cleandoc(fn.__doc__)
                built = cls(the_id, **opts)
                with built:
                    fn(*args, **kwargs)
                return built

            return build

        if callable(dag_id):
            return wrap(dag_id)
        return wrap

    return dag


dag = _dag_decorator(DAG)
dag3 = _dag_decorator(DAG3)
