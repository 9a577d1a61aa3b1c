"""TaskFlow `@task`, XComArg, argument building with context injection, Context, defaults."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from dagd import DAG, Context, DagDefinitionError, DagdError, PythonTask, XComArg, task
from dagd.authoring.context import (
    get_current_context,
    reset_current_context,
    set_current_context,
)


def noop() -> None:
    return None


def ctx(**overrides: Any) -> Context:
    values: dict[str, Any] = {
        "dag_id": "etl",
        "task_id": "load",
        "run_id": 42,
        "try_number": 1,
        "attempt_id": 7,
    }
    values.update(overrides)
    return Context(**values)


# -- @task wiring ------------------------------------------------------------------


def test_nested_calls_wire_upstreams() -> None:
    with DAG("ml") as d:

        @task
        def ingest() -> list[int]:
            return [1, 2, 3]

        @task
        def preprocess(rows: list[int]) -> list[int]:
            return rows

        @task
        def train(data: list[int]) -> float:
            return 0.9

        model = train(preprocess(ingest()))

    assert isinstance(model, XComArg)
    assert model.task is d.tasks["train"]
    assert d.tasks["ingest"].upstream_ids == set()
    assert d.tasks["preprocess"].upstream_ids == {"ingest"}
    assert d.tasks["train"].upstream_ids == {"preprocess"}
    assert d.validate() == ["ingest", "preprocess", "train"]


def test_decorated_task_is_a_python_task_running_the_function() -> None:
    with DAG("d") as d:

        @task
        def double(x: int) -> int:
            return 2 * x

        double(21)
    created = d.tasks["double"]
    assert isinstance(created, PythonTask)
    assert created.kind == "python"
    assert created.call_sync(ctx()) == 42
    assert created.is_async is False
    assert created.runs_in_loop is False


def test_async_function_runs_in_the_loop() -> None:
    with DAG("d") as d:

        @task
        async def fetch() -> int:
            return 1

        fetch()
    assert d.tasks["fetch"].runs_in_loop is True


def test_calling_the_same_task_again_gets_a_numbered_id() -> None:
    with DAG("d") as d:

        @task
        def step() -> None:
            return None

        ids = [step().task.task_id for _ in range(3)]
    assert ids == ["step", "step__1", "step__2"]
    assert list(d.tasks) == ids


def test_task_options_set_id_and_retries() -> None:
    with DAG("d") as d:

        @task(task_id="load_rows", retries=3, retry_delay=timedelta(seconds=30))
        def load() -> None:
            return None

        load()
    created = d.tasks["load_rows"]
    assert "load" not in d.tasks
    assert created.retry_policy.retries == 3
    assert created.retry_policy.retry_delay == 30.0
    assert created.max_tries == 4


def test_override_changes_options_for_one_call_only() -> None:
    with DAG("d") as d:

        @task(retries=1)
        def fetch() -> None:
            return None

        fetch()
        fetch.override(task_id="fetch_eu", retries=5, trigger_rule="all_done")()
        fetch()
    assert list(d.tasks) == ["fetch", "fetch_eu", "fetch__1"]
    assert d.tasks["fetch_eu"].retry_policy.retries == 5
    assert d.tasks["fetch_eu"].trigger_rule == "all_done"
    assert d.tasks["fetch__1"].retry_policy.retries == 1
    assert d.tasks["fetch__1"].trigger_rule == "all_success"


def test_subscripted_output_wires_upstream_and_resolves_the_key() -> None:
    with DAG("d") as d:

        @task
        def split() -> dict[str, list[int]]:
            return {"train": [1, 2], "test": [3]}

        @task
        def fit(rows: list[int], first_test: int) -> None:
            return None

        parts = split()
        fit(parts["train"], first_test=parts["test"][0])
    fit_task = d.tasks["fit"]
    assert isinstance(fit_task, PythonTask)
    assert fit_task.upstream_ids == {"split"}
    upstream = {"split": {"train": [1, 2], "test": [3]}}
    args, kwargs = fit_task.build_call(ctx(upstream=upstream))
    assert args == [[1, 2]]
    assert kwargs == {"first_test": 3}


def test_outputs_nested_in_lists_and_dicts_are_wired_and_resolved() -> None:
    with DAG("d") as d:

        @task
        def part(n: int) -> int:
            return n

        @task
        def combine(items: list[int], named: dict[str, int]) -> int:
            return sum(items) + sum(named.values())

        combine([part(1), part(2)], named={"x": part(3)})
    combined = d.tasks["combine"]
    assert isinstance(combined, PythonTask)
    assert combined.upstream_ids == {"part", "part__1", "part__2"}
    upstream = {"part": 1, "part__1": 2, "part__2": 3}
    assert combined.call_sync(ctx(upstream=upstream)) == 6


def test_python_task_op_args_with_xcom_args_are_wired() -> None:
    with DAG("d") as d:

        @task
        def source() -> str:
            return "hello"

        PythonTask(task_id="echo", python_callable=str.upper, op_args=[source()])
    echo = d.tasks["echo"]
    assert isinstance(echo, PythonTask)
    assert echo.upstream_ids == {"source"}
    assert echo.call_sync(ctx(upstream={"source": "hello"})) == "HELLO"


# -- build_call: context injection ---------------------------------------------------


def test_build_call_injects_every_context_field_by_parameter_name() -> None:
    seen: dict[str, Any] = {}

    def fn(
        x: int,
        context: Context,
        run_id: int,
        conf: dict[str, Any],
        params: dict[str, Any],
        logical_date: datetime,
        ds: str,
        try_number: int,
        attempt_id: int,
        ti_key: str,
    ) -> None:
        seen.update(locals())

    with DAG("etl") as d:
        PythonTask(task_id="load", python_callable=fn, op_args=[5])
    context = ctx(
        run_id=42,
        try_number=2,
        attempt_id=9,
        logical_date=datetime(2024, 3, 1, 6, 30),
        conf={"path": "/in/file.csv"},
        params={"limit": 10},
    )
    load = d.tasks["load"]
    assert isinstance(load, PythonTask)
    args, kwargs = load.build_call(context)
    assert args == [5]
    assert kwargs == {
        "context": context,
        "run_id": 42,
        "conf": {"path": "/in/file.csv"},
        "params": {"limit": 10},
        "logical_date": datetime(2024, 3, 1, 6, 30),
        "ds": "2024-03-01",
        "try_number": 2,
        "attempt_id": 9,
        "ti_key": "etl/42/load",
    }
    load.call_sync(context)
    assert seen["x"] == 5
    assert seen["context"] is context


def test_build_call_injects_keyword_only_parameters() -> None:
    def fn(*, ds: str | None, dag_id: str, task_id: str) -> None:
        return None

    with DAG("etl"):
        t = PythonTask(task_id="load", python_callable=fn)
    assert t.build_call(ctx()) == ([], {"ds": None, "dag_id": "etl", "task_id": "load"})


def test_build_call_leaves_other_parameters_alone() -> None:
    def fn(path: str, retries_left: int = 3, **extra: Any) -> None:
        return None

    with DAG("etl"):
        t = PythonTask(task_id="load", python_callable=fn, op_kwargs={"path": "/x"})
    assert t.build_call(ctx()) == ([], {"path": "/x"})


def test_explicit_arguments_win_over_injection() -> None:
    def fn(run_id: int, conf: dict[str, Any]) -> None:
        return None

    with DAG("etl"):
        t = PythonTask(
            task_id="load", python_callable=fn, op_args=[99], op_kwargs={"conf": {"mine": 1}}
        )
    assert t.build_call(ctx(conf={"theirs": 2})) == ([99], {"conf": {"mine": 1}})


def test_build_call_resolves_xcom_args_from_the_context_upstream() -> None:
    with DAG("d") as d:

        @task
        def extract() -> dict[str, int]:
            return {"rows": 3}

        @task
        def report(count: int, ds: str | None) -> str:
            return f"{count} rows on {ds}"

        report(extract()["rows"])
    rep = d.tasks["report"]
    assert isinstance(rep, PythonTask)
    context = ctx(upstream={"extract": {"rows": 3}}, logical_date=datetime(2024, 1, 2))
    assert rep.build_call(context) == ([3], {"ds": "2024-01-02"})
    assert rep.call_sync(context) == "3 rows on 2024-01-02"


def test_builtin_callable_without_signature_gets_its_args_unchanged() -> None:
    with DAG("d"):
        t = PythonTask(task_id="m", python_callable=max, op_args=[3, 7])
    assert t.build_call(ctx()) == ([3, 7], {})
    assert t.call_sync(ctx()) == 7


# -- Context -----------------------------------------------------------------------


def test_ti_key_is_stable_across_tries_and_attempts() -> None:
    first = ctx(try_number=1, attempt_id=10)
    second = ctx(try_number=2, attempt_id=11)
    assert first.ti_key == second.ti_key == "etl/42/load"
    assert ctx(run_id=43).ti_key != first.ti_key
    assert ctx(map_index=2).ti_key == "etl/42/load/2"


def test_ds_is_the_logical_date_or_none() -> None:
    assert ctx().ds is None
    assert ctx(logical_date=datetime(2024, 12, 31, 23, 59)).ds == "2024-12-31"


def test_xcom_pull_reads_upstream_values_with_a_default() -> None:
    context = ctx(upstream={"extract": [1, 2], "empty": None})
    assert context.xcom_pull("extract") == [1, 2]
    assert context.xcom_pull("empty", default="d") is None
    assert context.xcom_pull("missing") is None
    assert context.xcom_pull("missing", default=0) == 0


def test_context_survives_the_trip_to_a_worker_process() -> None:
    context = ctx(
        logical_date=datetime(2024, 5, 6, 7, 8, 9),
        conf={"a": 1},
        params={"p": True},
        upstream={"up": [1]},
        map_index=3,
    )
    assert Context.from_json(context.to_json()) == context


def test_get_current_context_inside_and_outside_a_task() -> None:
    with pytest.raises(DagdError, match="outside a running task"):
        get_current_context()
    context = ctx()
    token = set_current_context(context)
    try:
        assert get_current_context() is context
    finally:
        reset_current_context(token)
    with pytest.raises(DagdError):
        get_current_context()


# -- default_args ------------------------------------------------------------------


def test_default_args_apply_to_every_task() -> None:
    defaults = {
        "retries": 2,
        "retry_delay": 10,
        "retry_exponential_backoff": True,
        "max_retry_delay": 60,
        "retry_jitter": 0.1,
        "retry_on": [ValueError],
        "execution_timeout": timedelta(minutes=1),
        "trigger_rule": "all_done",
        "isolation": "thread",
    }
    with DAG("d", default_args=defaults) as d:
        PythonTask(task_id="plain", python_callable=noop)

        @task
        def flow() -> None:
            return None

        flow()
    for t in d.tasks.values():
        policy = t.retry_policy
        assert (policy.retries, policy.retry_delay, policy.max_retry_delay) == (2, 10.0, 60.0)
        assert policy.retry_exponential_backoff is True
        assert policy.jitter == 0.1
        assert policy.retry_on == ("builtins.ValueError",)
        assert t.execution_timeout == 60.0
        assert t.trigger_rule == "all_done"
        assert t.isolation == "thread"


def test_task_settings_beat_default_args_even_when_falsy() -> None:
    with DAG("d", default_args={"retries": 3, "trigger_rule": "all_done"}) as d:
        PythonTask(task_id="t", python_callable=noop, retries=0, trigger_rule="one_success")
    t = d.tasks["t"]
    assert t.retry_policy.retries == 0
    assert t.max_tries == 1
    assert t.trigger_rule == "one_success"


def test_task_defaults_without_default_args() -> None:
    with DAG("d") as d:
        t = PythonTask(task_id="t", python_callable=noop)
    assert d.tasks["t"] is t
    assert t.retry_policy.retries == 0
    assert t.retry_policy.retry_delay == 300.0
    assert t.execution_timeout is None
    assert t.trigger_rule == "all_success"
    assert t.isolation is None


def test_unknown_default_args_key_is_refused_naming_the_key() -> None:
    with pytest.raises(DagDefinitionError) as info:
        DAG("d", default_args={"retries": 1, "retires": 2})
    exc = info.value
    assert exc.dag_id == "d"
    assert exc.field == "default_args"
    assert "'retires'" in str(exc)
    assert "retries" in exc.message  # the known keys are listed as a hint
