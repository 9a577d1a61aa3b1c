"""Mistakes in a DAG are refused when it is defined or validated, naming DAG, task, field."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import pytest

from dagd import DAG, CycleError, DagDefinitionError, PythonTask, task


def noop() -> None:
    return None


def here() -> int:
    """The line number of the caller."""
    return sys._getframe(1).f_lineno


def make(*task_ids: str, **options: Any) -> list[PythonTask]:
    return [PythonTask(task_id=tid, python_callable=noop, **options) for tid in task_ids]


# -- cycles --------------------------------------------------------------------------


def test_cycle_is_reported_with_its_tasks_in_order() -> None:
    with DAG("loop") as d:
        a, b, c = make("a", "b", "c")
        a >> b >> c >> a
    with pytest.raises(CycleError) as info:
        d.validate()
    exc = info.value
    assert exc.cycle == ["a", "b", "c", "a"]
    assert exc.dag_id == "loop"
    assert exc.task_id == "a"
    assert "cycle in dependencies: a -> b -> c -> a" in str(exc)
    assert "DAG 'loop'" in str(exc)
    assert exc.file == __file__


def test_cycle_behind_a_root_lists_only_the_tasks_on_the_cycle() -> None:
    with DAG("loop") as d:
        start, x, y = make("start", "x", "y")
        start >> x >> y >> x
    with pytest.raises(CycleError) as info:
        d.validate()
    assert info.value.cycle == ["x", "y", "x"]
    assert info.value.task_id == "x"
    assert "x -> y -> x" in info.value.message


def test_cycle_with_a_task_downstream_of_it_is_reported() -> None:
    # "cleanup" sorts first and hangs off the cycle: it is unsorted but not on it.
    with DAG("loop") as d:
        x, y, cleanup = make("x", "y", "cleanup")
        x >> y >> x
        y >> cleanup
    with pytest.raises(CycleError) as info:
        d.validate()
    assert info.value.cycle == ["x", "y", "x"]
    assert info.value.dag_id == "loop"


def test_two_task_cycle_through_lists() -> None:
    with DAG("loop") as d:
        a, b, c = make("a", "b", "c")
        a >> [b, c]
        c >> a
    with pytest.raises(CycleError) as info:
        d.validate()
    exc = info.value
    assert exc.cycle[0] == exc.cycle[-1]
    assert exc.cycle == ["a", "c", "a"]
    assert " -> ".join(exc.cycle) in str(exc)


def test_describe_refuses_a_cyclic_dag_too() -> None:
    with DAG("loop") as d:
        a, b = make("a", "b")
        a >> b >> a
    with pytest.raises(CycleError):
        d.describe()


def test_cycle_error_is_a_definition_error_with_a_json_form() -> None:
    with DAG("loop") as d:
        a, b = make("a", "b")
        a >> b >> a
    with pytest.raises(DagDefinitionError) as info:
        d.validate()
    data = info.value.to_dict()
    assert data["error"] == "cycle"
    assert data["dag_id"] == "loop"
    assert data["task_id"] == "a"
    assert "a -> b -> a" in data["message"]


# -- self-dependency, duplicates, linking ------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        lambda a, b: a >> a,
        lambda a, b: a << a,
        lambda a, b: a.set_upstream(a),
        lambda a, b: a.set_downstream([b, a]),
        lambda a, b: [b, a] >> a,
    ],
    ids=["a>>a", "a<<a", "set_upstream(a)", "set_downstream([b,a])", "[b,a]>>a"],
)
def test_a_task_cannot_depend_on_itself(link: Any) -> None:
    with DAG("selfish"):
        a, b = make("a", "b")
        with pytest.raises(DagDefinitionError) as info:
            link(a, b)
    exc = info.value
    assert exc.dag_id == "selfish"
    assert exc.task_id == "a"
    assert "cannot depend on itself" in str(exc)
    assert exc.file == __file__
    assert not a.upstream_ids and not a.downstream_ids


def test_self_dependency_points_at_the_line_that_wrote_it() -> None:
    with DAG("selfish"):
        (a,) = make("a")
        line = here() + 2
        with pytest.raises(DagDefinitionError) as info:
            a >> a
    assert (info.value.file, info.value.line) == (__file__, line)


def test_self_dependency_through_taskflow_output() -> None:
    with DAG("selfish"):

        @task
        def step() -> None:
            return None

        out = step()
        with pytest.raises(DagDefinitionError, match="cannot depend on itself") as info:
            out >> out
    assert (info.value.dag_id, info.value.task_id) == ("selfish", "step")


def test_duplicate_task_id_is_refused_where_it_is_written() -> None:
    with DAG("dups") as d:
        make("a")
        line = here() + 2
        with pytest.raises(DagDefinitionError) as info:
            PythonTask(task_id="a", python_callable=noop)
    exc = info.value
    assert exc.dag_id == "dups"
    assert exc.task_id == "a"
    assert "duplicate task id" in str(exc)
    assert (exc.file, exc.line) == (__file__, line)
    assert list(d.tasks) == ["a"]


def test_linking_something_that_is_not_a_task_is_refused() -> None:
    with DAG("d"):
        (a,) = make("a")
        with pytest.raises(DagDefinitionError) as info:
            a >> "b"
    exc = info.value
    assert (exc.dag_id, exc.task_id) == ("d", "a")
    assert "can only link tasks" in exc.message
    assert "'b'" in exc.message


def test_linking_tasks_of_different_dags_is_refused() -> None:
    with DAG("one"):
        (a,) = make("a")
    with DAG("two"):
        (b,) = make("b")
    with pytest.raises(DagDefinitionError) as info:
        a >> b
    exc = info.value
    assert (exc.dag_id, exc.task_id) == ("one", "a")
    assert "different DAGs" in exc.message
    assert "'two'" in exc.message
    assert not a.downstream_ids and not b.upstream_ids


# -- task settings ---------------------------------------------------------------


def test_unknown_trigger_rule_is_refused_with_the_known_ones() -> None:
    with DAG("rules"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="t", python_callable=noop, trigger_rule="all_sucess")
    exc = info.value
    assert (exc.dag_id, exc.task_id, exc.field) == ("rules", "t", "trigger_rule")
    assert "unknown trigger rule 'all_sucess'" in str(exc)
    assert "all_success" in exc.message


def test_unknown_trigger_rule_in_default_args_names_the_task() -> None:
    with DAG("rules", default_args={"trigger_rule": "sometimes"}):
        with pytest.raises(DagDefinitionError) as info:
            PythonTask(task_id="t", python_callable=noop)
    assert (info.value.dag_id, info.value.task_id) == ("rules", "t")
    assert "'sometimes'" in info.value.message


@pytest.mark.parametrize(
    ("settings", "field", "fragment"),
    [
        ({"retries": -1}, "retries", "retries must be a whole number >= 0, got -1"),
        ({"retries": "3"}, "retries", "got '3'"),
        ({"retries": 1.5}, "retries", "got 1.5"),
        ({"retries": True}, "retries", "got True"),
        ({"retry_delay": -5}, "retry_delay", "retry_delay must not be negative"),
        ({"retry_delay": timedelta(seconds=-1)}, "retry_delay", "must not be negative"),
        ({"retry_delay": "10"}, "retry_delay", "number of seconds or a timedelta"),
        ({"max_retry_delay": -1}, "max_retry_delay", "must not be negative"),
        ({"retry_jitter": 2}, "retry_jitter", "retry_jitter must be a fraction"),
        ({"retry_jitter": -0.1}, "retry_jitter", "between 0 and 1"),
        ({"retry_on": [int]}, "retry_on", "exception classes, got <class 'int'>"),
        ({"retry_on": [ValueError, "KeyError"]}, "retry_on", "got 'KeyError'"),
        ({"retry_on": "ValueError"}, "retry_on", "got 'ValueError'"),
        ({"retry_on": 42}, "retry_on", "got 42"),
    ],
)
def test_bad_retry_settings_are_refused(
    settings: dict[str, Any], field: str, fragment: str
) -> None:
    with DAG("retrying"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="flaky", python_callable=noop, **settings)
    exc = info.value
    assert (exc.dag_id, exc.task_id, exc.field) == ("retrying", "flaky", field)
    assert fragment in exc.message
    assert str(exc).startswith(f"DAG 'retrying', task 'flaky', field '{field}': ")


@pytest.mark.parametrize(
    ("timeout", "shown"),
    [
        (0, "0"),
        (-1, "-1"),
        ("5", "'5'"),
        (True, "True"),
        (0.0, "0.0"),
        (timedelta(0), "0.0"),
        (timedelta(seconds=-3), "-3.0"),
    ],
)
def test_bad_execution_timeout_is_refused(timeout: Any, shown: str) -> None:
    with DAG("slow"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="t", python_callable=noop, execution_timeout=timeout)
    exc = info.value
    assert (exc.dag_id, exc.task_id, exc.field) == ("slow", "t", "execution_timeout")
    assert "positive number of seconds" in exc.message
    assert exc.message.endswith(f"got {shown}")


@pytest.mark.parametrize(
    ("timeout", "seconds"), [(5, 5.0), (0.5, 0.5), (timedelta(minutes=2), 120.0), (None, None)]
)
def test_good_execution_timeouts_are_kept_in_seconds(
    timeout: Any, seconds: float | None
) -> None:
    with DAG("slow"):
        (t,) = make("t", execution_timeout=timeout)
    assert t.execution_timeout == seconds


@pytest.mark.parametrize("isolation", ["proces", "PROCESS", "", 1])
def test_bad_isolation_is_refused(isolation: Any) -> None:
    with DAG("iso"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="t", python_callable=noop, isolation=isolation)
    exc = info.value
    assert (exc.dag_id, exc.task_id, exc.field) == ("iso", "t", "isolation")
    assert f"got {isolation!r}" in exc.message
    assert "'process', 'fresh' or 'thread'" in exc.message


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_good_isolation_is_kept(isolation: str) -> None:
    with DAG("iso"):
        (t,) = make("t", isolation=isolation)
    assert t.isolation == isolation


def test_python_callable_must_be_callable() -> None:
    with DAG("d"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="t", python_callable="print")  # type: ignore[arg-type]
    exc = info.value
    assert (exc.dag_id, exc.task_id, exc.field) == ("d", "t", "python_callable")
    assert "must be callable" in exc.message


# -- ids and placement ---------------------------------------------------------------


@pytest.mark.parametrize("dag_id", ["has space", "", "x" * 251, "semi;colon", "slash/y"])
def test_bad_dag_id_is_refused(dag_id: str) -> None:
    line = here() + 2
    with pytest.raises(DagDefinitionError) as info:
        DAG(dag_id)
    exc = info.value
    assert exc.dag_id == dag_id
    assert exc.task_id is None
    assert exc.field == "dag_id"
    assert f"got {dag_id!r}" in exc.message
    assert "letters, digits" in exc.message
    assert (exc.file, exc.line) == (__file__, line)


@pytest.mark.parametrize("dag_id", ["etl", "etl.daily", "ml-v2", "_private", "x" * 250])
def test_good_dag_ids_are_accepted(dag_id: str) -> None:
    assert DAG(dag_id).dag_id == dag_id


def test_bad_task_id_names_the_dag_and_the_id() -> None:
    with DAG("d"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="has space", python_callable=noop)
    exc = info.value
    assert (exc.dag_id, exc.task_id) == ("d", "has space")
    assert "task_id must be" in exc.message


def test_task_created_outside_a_dag_is_refused() -> None:
    line = here() + 2
    with pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="orphan", python_callable=noop)
    exc = info.value
    assert exc.dag_id is None
    assert exc.task_id == "orphan"
    assert "created outside a DAG" in exc.message
    assert "with DAG(...)" in exc.message
    assert (exc.file, exc.line) == (__file__, line)


def test_taskflow_call_outside_a_dag_is_refused() -> None:
    @task
    def orphan() -> None:
        return None

    with pytest.raises(DagDefinitionError, match="outside a DAG") as info:
        orphan()
    assert info.value.task_id == "orphan"


def test_dag_limits_must_be_positive() -> None:
    with pytest.raises(DagDefinitionError) as info:
        DAG("limited", max_active_runs=0)
    assert (info.value.dag_id, info.value.field) == ("limited", "max_active_runs")
    with pytest.raises(DagDefinitionError) as info:
        DAG("limited", max_active_tasks=-2)
    assert info.value.field == "max_active_tasks"


def test_get_task_for_an_unknown_id_names_dag_and_task() -> None:
    with DAG("d") as d:
        make("a")
    assert d.get_task("a").task_id == "a"
    with pytest.raises(DagDefinitionError) as info:
        d.get_task("nope")
    assert (info.value.dag_id, info.value.task_id) == ("d", "nope")
