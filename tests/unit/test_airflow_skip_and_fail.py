"""What a task can say about its own end, as Airflow's exceptions say it: `SkipTask`
ends it skipped, `FailTask` fails it without its retries, and a short-circuit with
`skip_all_downstream` skips every task after it. Pure."""

from __future__ import annotations

from dagd import DAG, PythonTask
from dagd.compat.airflow.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
)
from dagd.errors import FAIL_TASK, SKIP_TASK, FailTask, SkipTask
from dagd.retry import RetryPolicy, exception_names
from dagd.scheduler.flow import to_skip


def test_airflow_exceptions_are_dagds_skip_and_fail() -> None:
    assert SKIP_TASK in exception_names(AirflowSkipException)
    assert FAIL_TASK in exception_names(AirflowFailException)
    assert issubclass(AirflowSkipException, AirflowException)
    assert issubclass(AirflowSkipException, SkipTask)
    assert issubclass(AirflowFailException, FailTask)
    assert SKIP_TASK not in exception_names(AirflowException)


def test_fail_task_is_never_retried() -> None:
    policy = RetryPolicy.build(retries=5)
    assert policy.should_retry(1, exception_names(AirflowException))
    assert not policy.should_retry(1, exception_names(AirflowFailException))
    policy = RetryPolicy.build(retries=5, retry_on=[AirflowFailException])
    assert not policy.should_retry(1, exception_names(AirflowFailException))
    # dagd's own interruptions (a stop, a crash) are still not the task's failure
    assert policy.should_retry(1, exception_names(AirflowFailException), "daemon stopped")


def test_short_circuit_skips_all_downstream_or_only_the_direct_ones() -> None:
    with DAG("d"):
        gate = PythonTask(task_id="gate", python_callable=bool, mode="short_circuit")
        a = PythonTask(task_id="a", python_callable=bool)
        b = PythonTask(task_id="b", python_callable=bool, trigger_rule="all_done")
        c = PythonTask(task_id="c", python_callable=bool)
        gate >> a >> b >> c
    assert to_skip(gate, False) == ({"a"}, None)
    assert to_skip(gate, True) == (set(), None)
    gate.skip_all_downstream = True  # type: ignore[attr-defined]
    assert to_skip(gate, False) == ({"a", "b", "c"}, None)
    assert to_skip(gate, 1) == (set(), None)
