"""Authoring: every way to declare a dependency, `with DAG(...)` and `@dag`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dagd import DAG, BaseTask, DagDefinitionError, PythonTask, chain, dag, task


def noop() -> None:
    return None


def make(*task_ids: str) -> list[PythonTask]:
    return [PythonTask(task_id=tid, python_callable=noop) for tid in task_ids]


def edges(d: DAG) -> set[tuple[str, str]]:
    """The (upstream, downstream) pairs of a DAG, checked to agree from both ends."""
    down = {(t.task_id, d2) for t in d.tasks.values() for d2 in t.downstream_ids}
    up = {(u, t.task_id) for t in d.tasks.values() for u in t.upstream_ids}
    assert down == up, "upstream_ids and downstream_ids disagree"
    return down


def assert_topological(d: DAG) -> None:
    order = d.validate()
    assert sorted(order) == sorted(d.tasks)
    for up, down in edges(d):
        assert order.index(up) < order.index(down), f"{up} must come before {down}"


# -- operators -----------------------------------------------------------------------


def test_rshift_makes_right_downstream_and_chains() -> None:
    with DAG("d") as d:
        a, b, c = make("a", "b", "c")
        result = a >> b >> c
    assert result is c
    assert edges(d) == {("a", "b"), ("b", "c")}
    assert d.validate() == ["a", "b", "c"]


def test_lshift_makes_right_upstream() -> None:
    with DAG("d") as d:
        a, b, c = make("a", "b", "c")
        result = a << b << c
    assert result is c
    assert edges(d) == {("b", "a"), ("c", "b")}
    assert d.validate() == ["c", "b", "a"]


def test_list_rshift_task_fans_in() -> None:
    with DAG("d") as d:
        a, b, c = make("a", "b", "c")
        result = [a, b] >> c
    assert result is c
    assert edges(d) == {("a", "c"), ("b", "c")}
    assert d.tasks["c"].upstream_ids == {"a", "b"}


def test_task_rshift_list_fans_out_and_list_joins_again() -> None:
    with DAG("d") as d:
        a, b, c, e = make("a", "b", "c", "e")
        a >> [b, c] >> e
    assert edges(d) == {("a", "b"), ("a", "c"), ("b", "e"), ("c", "e")}
    assert_topological(d)


def test_list_lshift_task_makes_task_upstream_of_each() -> None:
    with DAG("d") as d:
        a, b, c = make("a", "b", "c")
        result = [a, b] << c
    assert result is c
    assert edges(d) == {("c", "a"), ("c", "b")}


def test_task_lshift_list_makes_each_upstream() -> None:
    with DAG("d") as d:
        a, b, c = make("a", "b", "c")
        a << [b, c]
    assert edges(d) == {("b", "a"), ("c", "a")}


def test_tuples_work_like_lists() -> None:
    with DAG("d") as d:
        a, b, c = make("a", "b", "c")
        a >> (b, c)
    assert edges(d) == {("a", "b"), ("a", "c")}


def test_set_upstream_and_set_downstream() -> None:
    with DAG("d") as d:
        a, b, c = make("a", "b", "c")
        a.set_upstream(b)
        a.set_downstream(c)
    assert edges(d) == {("b", "a"), ("a", "c")}


def test_set_upstream_and_set_downstream_accept_lists() -> None:
    with DAG("d") as d:
        a, b, c, e, f = make("a", "b", "c", "e", "f")
        a.set_upstream([b, c])
        a.set_downstream([e, f])
    assert edges(d) == {("b", "a"), ("c", "a"), ("a", "e"), ("a", "f")}


def test_declaring_the_same_edge_twice_is_harmless() -> None:
    with DAG("d") as d:
        a, b = make("a", "b")
        a >> b
        b << a
        a.set_downstream(b)
    assert edges(d) == {("a", "b")}


# -- chain ---------------------------------------------------------------------------


def test_chain_of_tasks() -> None:
    with DAG("d") as d:
        a, b, c = make("a", "b", "c")
        chain(a, b, c)
    assert edges(d) == {("a", "b"), ("b", "c")}


def test_chain_with_a_list_in_the_middle() -> None:
    with DAG("d") as d:
        a, b, c, e = make("a", "b", "c", "e")
        chain(a, [b, c], e)
    assert edges(d) == {("a", "b"), ("a", "c"), ("b", "e"), ("c", "e")}


def test_chain_of_two_equal_length_lists_pairs_them_up() -> None:
    with DAG("d") as d:
        a, b, c, e, f, g = make("a", "b", "c", "e", "f", "g")
        chain(a, [b, c], [e, f], g)
    assert edges(d) == {
        ("a", "b"),
        ("a", "c"),
        ("b", "e"),
        ("c", "f"),
        ("e", "g"),
        ("f", "g"),
    }


def test_chain_of_two_lists_of_different_lengths_is_refused() -> None:
    with DAG("d"):
        a, b, c = make("a", "b", "c")
        with pytest.raises(DagDefinitionError, match="equal lengths, got 2 and 1"):
            chain([a, b], [c])


def test_chain_accepts_taskflow_outputs() -> None:
    with DAG("d") as d:

        @task
        def first() -> int:
            return 1

        @task
        def second() -> int:
            return 2

        chain(first(), second())
    assert edges(d) == {("first", "second")}


# -- DAG and @dag ------------------------------------------------------------------


def test_with_dag_collects_tasks_and_exits_cleanly() -> None:
    with DAG("outer", description="two tasks") as d:
        make("a", "b")
    assert list(d.tasks) == ["a", "b"]
    assert all(t.dag is d for t in d.tasks.values())
    assert d.description == "two tasks"
    # After the block, a task needs an explicit dag=.
    late = PythonTask(task_id="late", python_callable=noop, dag=d)
    assert d.tasks["late"] is late


def test_nested_dag_blocks_attach_to_the_innermost() -> None:
    with DAG("outer") as outer:
        make("o1")
        with DAG("inner") as inner:
            make("i1")
        make("o2")
    assert list(outer.tasks) == ["o1", "o2"]
    assert list(inner.tasks) == ["i1"]


def test_roots_and_leaves() -> None:
    with DAG("d") as d:
        a, b, c, _lonely = make("a", "b", "c", "e")
        [a, b] >> c
    assert sorted(t.task_id for t in d.roots) == ["a", "b", "e"]
    assert sorted(t.task_id for t in d.leaves) == ["c", "e"]


def test_validate_returns_a_topological_order_of_a_diamond() -> None:
    with DAG("d") as d:
        start, left, right, end = make("start", "left", "right", "end")
        start >> [left, right] >> end
    order = d.validate()
    assert order[0] == "start"
    assert order[-1] == "end"
    assert_topological(d)


def test_describe_lists_tasks_in_dependency_order_with_their_upstreams() -> None:
    with DAG("d", tags=["etl"], max_active_runs=2) as d:
        a, b = make("a", "b")
        b << a
    described = d.describe()
    assert described["dag_id"] == "d"
    assert described["tags"] == ["etl"]
    assert described["max_active_runs"] == 2
    assert [(t["task_id"], t["upstream"]) for t in described["tasks"]] == [
        ("a", []),
        ("b", ["a"]),
    ]


def test_bare_dag_decorator_builds_a_dag_named_after_the_function() -> None:
    @dag
    def nightly_report() -> None:
        """Nightly report.

        More words that are not part of the description.
        """
        a, b = make("a", "b")
        a >> b

    built = nightly_report()
    assert isinstance(built, DAG)
    assert built.dag_id == "nightly_report"
    assert built.description == "Nightly report."
    assert edges(built) == {("a", "b")}


def test_dag_decorator_with_id_and_options() -> None:
    @dag("custom_id", max_active_runs=3, tags=["ml"])
    def pipeline() -> None:
        make("only")

    built = pipeline()
    assert built.dag_id == "custom_id"
    assert built.max_active_runs == 3
    assert built.tags == ["ml"]
    assert list(built.tasks) == ["only"]


def test_dag_decorator_with_parentheses_and_arguments() -> None:
    @dag()
    def parametrised(n: int) -> None:
        make(*(f"t{i}" for i in range(n)))

    assert list(parametrised(3).tasks) == ["t0", "t1", "t2"]


def test_each_call_of_a_dag_function_builds_a_fresh_dag() -> None:
    @dag
    def twice() -> None:
        make("a")

    first, second = twice(), twice()
    assert first is not second
    assert first.tasks["a"] is not second.tasks["a"]


def test_taskflow_outputs_link_with_operators() -> None:
    with DAG("d") as d:
        (plain,) = make("plain")

        @task
        def produce() -> int:
            return 1

        out = produce()
        out >> plain
        other = produce()
        plain << other
    assert edges(d) == {("produce", "plain"), ("produce__1", "plain")}


@pytest.mark.parametrize(
    "link",
    [
        lambda a, b: a >> b,
        lambda a, b: b << a,
        lambda a, b: a.set_downstream(b),
        lambda a, b: b.set_upstream(a),
        lambda a, b: [a] >> b,
        lambda a, b: chain(a, b),
    ],
    ids=[">>", "<<", "set_downstream", "set_upstream", "list>>", "chain"],
)
def test_every_form_records_the_same_edge(
    link: Callable[[BaseTask, BaseTask], object],
) -> None:
    with DAG("d") as d:
        a, b = make("a", "b")
        link(a, b)
    assert edges(d) == {("a", "b")}
    assert d.validate() == ["a", "b"]
