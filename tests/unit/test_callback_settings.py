"""Callback settings as a DAG file writes them: one function or a list, on a task, in
default_args or on a DAG; anything else is refused naming the DAG, task and field."""

from __future__ import annotations

from typing import Any

import pytest

from dagd import DAG, DagDefinitionError, task
from dagd.scheduler.callbacks import RunInfo, TaskInstanceInfo, callback_context


def notify(context: dict[str, Any]) -> None:
    pass


async def notify_async(context: dict[str, Any]) -> None:
    pass


def test_a_task_takes_each_callback_and_default_args_give_the_rest() -> None:
    with DAG("cb", default_args={"on_failure_callback": [notify, notify_async],
                                 "on_retry_callback": notify}) as dag:
        @task(on_success_callback=notify_async, on_retry_callback=notify_async)
        def a() -> None: ...

        a()
    callbacks = dag.tasks["a"].callbacks
    assert callbacks == {"on_success_callback": (notify_async,),
                         "on_failure_callback": (notify, notify_async),
                         "on_retry_callback": (notify_async,)}  # the task's own wins
    described = dag.describe()["tasks"][0]["callbacks"]
    assert described["on_failure_callback"] == [f"{__name__}.notify", f"{__name__}.notify_async"]


def test_a_dag_takes_run_callbacks() -> None:
    with DAG("cb", on_success_callback=notify, on_failure_callback=[notify]) as dag:
        task(notify)()
    assert dag.callbacks == {"on_success_callback": (notify,),
                             "on_failure_callback": (notify,)}
    assert "callbacks" in dag.describe()


@pytest.mark.parametrize("where", ["task", "default_args", "dag"])
def test_a_callback_that_is_not_callable_is_refused_naming_the_field(where: str) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        if where == "dag":
            DAG("cb", on_failure_callback="page-oncall")  # type: ignore[arg-type]
        elif where == "default_args":
            DAG("cb", default_args={"on_failure_callback": [notify, "page-oncall"]})
        else:
            with DAG("cb"):
                task(on_failure_callback=42)(notify)()
    message = str(caught.value)
    assert "DAG 'cb'" in message
    assert "must be a function (or a list of functions) taking the context" in message
    field = {"task": "on_failure_callback", "dag": "on_failure_callback",
             "default_args": "default_args.on_failure_callback"}[where]
    assert caught.value.field == field
    if where == "task":
        assert "task 'notify'" in message


def test_the_context_has_airflows_names() -> None:
    with DAG("cb", params={"region": "eu"}) as dag:
        task(notify)()
    run = RunInfo(dag_id="cb", run_id=7, state="running", run_type="manual",
                  logical_date=None, conf={"region": "us", "other": 1})
    ti = TaskInstanceInfo(dag_id="cb", task_id="notify", run_id=7, map_index=-1,
                          state="failed", try_number=2, max_tries=2, attempt_id=9,
                          error="ValueError: bad")
    context = callback_context(dag, run, task=dag.tasks["notify"], ti=ti)
    assert context["dag"] is dag and context["task"] is dag.tasks["notify"]
    assert context["ti"] is context["task_instance"] is ti
    assert context["dag_run"] is context["run"] is run
    assert (context["try_number"], context["run_id"], context["params"]) == (2, 7,
                                                                             {"region": "us"})
    assert str(context["exception"]) == "ValueError: bad"
    assert context["ti_key"] == "cb/7/notify"


def test_ti_xcom_pull_reads_the_return_values_it_was_given() -> None:
    ti = TaskInstanceInfo(dag_id="cb", task_id="load", run_id=7, map_index=-1,
                          state="success", try_number=1, max_tries=1,
                          xcoms={"load": {"rows": 3}, "extract": [1, 2]})
    assert ti.xcom_pull() == {"rows": 3}
    assert ti.xcom_pull(task_ids="extract") == [1, 2]
    assert ti.xcom_pull(task_ids=["extract", "gone"], default=0) == [[1, 2], 0]
    assert ti.xcom_pull(task_ids="load", key="other", default="x") == "x"


def test_a_callback_that_cannot_take_the_context_is_refused_at_load() -> None:
    from dagd import DAG, DagDefinitionError, task

    def no_arguments() -> None:
        pass

    with pytest.raises(DagDefinitionError) as info, DAG(
            "cb_arity", default_args={"on_failure_callback": no_arguments}):
        @task
        def t() -> None:
            pass

        t()
    assert info.value.field == "default_args.on_failure_callback"
    assert "'no_arguments' must take one argument, the context" in info.value.message
