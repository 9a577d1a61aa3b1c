"""The planner: trigger rules with Airflow's meanings, propagation through a run, outcome."""

from __future__ import annotations

import pytest

from dagd import DAG, PythonTask
from dagd.authoring.tasks import TRIGGER_RULES
from dagd.scheduler.planner import (
    EAGER_RULES,
    RULES,
    Decision,
    Graph,
    evaluate,
    plan,
    run_outcome,
)
from dagd.states import TaskState

SCHEDULED = TaskState.SCHEDULED
QUEUED = TaskState.QUEUED
RUNNING = TaskState.RUNNING
RETRY = TaskState.UP_FOR_RETRY
SUCCESS = TaskState.SUCCESS
FAILED = TaskState.FAILED
SKIPPED = TaskState.SKIPPED
UP_FAILED = TaskState.UPSTREAM_FAILED

WAIT = Decision.WAIT
READY = Decision.READY
SKIP = Decision.SKIP
UPSTREAM_FAILED = Decision.UPSTREAM_FAILED

# (rule, upstream states, decision): Airflow's meanings.
RULE_TABLE: list[tuple[str, tuple[TaskState, ...], Decision]] = [
    # all_success: every upstream succeeded; a failure fails it, a skip skips it.
    ("all_success", (SUCCESS, SUCCESS), READY),
    ("all_success", (SUCCESS,), READY),
    ("all_success", (SUCCESS, RUNNING), WAIT),
    ("all_success", (SUCCESS, QUEUED), WAIT),
    ("all_success", (SUCCESS, RETRY), WAIT),
    ("all_success", (SUCCESS, SCHEDULED), WAIT),
    ("all_success", (SUCCESS, FAILED), UPSTREAM_FAILED),
    ("all_success", (SUCCESS, UP_FAILED), UPSTREAM_FAILED),
    ("all_success", (RUNNING, FAILED), UPSTREAM_FAILED),  # no need to wait for the rest
    ("all_success", (SUCCESS, SKIPPED), SKIP),
    ("all_success", (RUNNING, SKIPPED), SKIP),
    ("all_success", (SKIPPED, FAILED), UPSTREAM_FAILED),  # a failure outranks a skip
    # all_failed: every upstream failed (or upstream_failed); any success or skip skips it.
    ("all_failed", (FAILED, FAILED), READY),
    ("all_failed", (FAILED, UP_FAILED), READY),
    ("all_failed", (FAILED, RUNNING), WAIT),
    ("all_failed", (FAILED, RETRY), WAIT),
    ("all_failed", (FAILED, SUCCESS), SKIP),
    ("all_failed", (RUNNING, SUCCESS), SKIP),
    ("all_failed", (FAILED, SKIPPED), SKIP),
    # all_done: every upstream finished, however.
    ("all_done", (SUCCESS, FAILED, SKIPPED, UP_FAILED), READY),
    ("all_done", (FAILED, FAILED), READY),
    ("all_done", (SUCCESS, RUNNING), WAIT),
    ("all_done", (FAILED, RETRY), WAIT),
    ("all_done", (SKIPPED, QUEUED), WAIT),
    # one_success: at least one succeeded, no need to wait for the rest.
    ("one_success", (SUCCESS, RUNNING), READY),
    ("one_success", (FAILED, SUCCESS), READY),
    ("one_success", (SKIPPED, SUCCESS), READY),
    ("one_success", (FAILED, RUNNING), WAIT),
    ("one_success", (SKIPPED, RETRY), WAIT),
    ("one_success", (FAILED, FAILED), UPSTREAM_FAILED),
    ("one_success", (SKIPPED, FAILED), UPSTREAM_FAILED),
    ("one_success", (SKIPPED, UP_FAILED), UPSTREAM_FAILED),
    ("one_success", (SKIPPED, SKIPPED), SKIP),
    # one_failed: at least one failed, no need to wait; none did once all are done: skip.
    ("one_failed", (FAILED, RUNNING), READY),
    ("one_failed", (UP_FAILED, SUCCESS), READY),
    ("one_failed", (SUCCESS, RUNNING), WAIT),
    ("one_failed", (SUCCESS, RETRY), WAIT),
    ("one_failed", (SUCCESS, SKIPPED), SKIP),
    ("one_failed", (SUCCESS, SUCCESS), SKIP),
    # none_failed: nothing failed (skips are fine) once all are done.
    ("none_failed", (SUCCESS, SKIPPED), READY),
    ("none_failed", (SKIPPED, SKIPPED), READY),
    ("none_failed", (SUCCESS, SUCCESS), READY),
    ("none_failed", (SUCCESS, RUNNING), WAIT),
    ("none_failed", (SKIPPED, RETRY), WAIT),
    ("none_failed", (SUCCESS, FAILED), UPSTREAM_FAILED),
    ("none_failed", (UP_FAILED, RUNNING), UPSTREAM_FAILED),
    # none_failed_min_one_success: the join after a branch.
    ("none_failed_min_one_success", (SUCCESS, SKIPPED), READY),
    ("none_failed_min_one_success", (SUCCESS, SUCCESS), READY),
    ("none_failed_min_one_success", (SKIPPED, SKIPPED), SKIP),
    ("none_failed_min_one_success", (SUCCESS, RUNNING), WAIT),
    ("none_failed_min_one_success", (SUCCESS, FAILED), UPSTREAM_FAILED),
    ("none_failed_min_one_success", (SKIPPED, UP_FAILED), UPSTREAM_FAILED),
    # none_skipped: nothing skipped (failures are fine) once all are done.
    ("none_skipped", (SUCCESS, FAILED), READY),
    ("none_skipped", (SUCCESS, UP_FAILED), READY),
    ("none_skipped", (SUCCESS, RUNNING), WAIT),
    ("none_skipped", (FAILED, RETRY), WAIT),
    ("none_skipped", (SUCCESS, SKIPPED), SKIP),
    ("none_skipped", (SKIPPED, RUNNING), SKIP),
    # all_skipped: every upstream skipped; a success or a failure skips it.
    ("all_skipped", (SKIPPED, SKIPPED), READY),
    ("all_skipped", (SKIPPED, RUNNING), WAIT),
    ("all_skipped", (SKIPPED, RETRY), WAIT),
    ("all_skipped", (SKIPPED, SUCCESS), SKIP),
    ("all_skipped", (RUNNING, FAILED), SKIP),  # no need to wait for the rest
    ("all_skipped", (SKIPPED, UP_FAILED), SKIP),
    # one_done: one upstream succeeded or failed, no need to wait; all skipped: skip.
    ("one_done", (SUCCESS, RUNNING), READY),
    ("one_done", (FAILED, RUNNING), READY),
    ("one_done", (UP_FAILED, SKIPPED), READY),
    ("one_done", (SKIPPED, RUNNING), WAIT),
    ("one_done", (QUEUED, RETRY), WAIT),
    ("one_done", (SKIPPED, SKIPPED), SKIP),
    # all_done_min_one_success (Airflow 3.1): all done, and one of them succeeded.
    ("all_done_min_one_success", (SUCCESS, FAILED), READY),
    ("all_done_min_one_success", (SUCCESS, SKIPPED), READY),
    ("all_done_min_one_success", (SUCCESS, RUNNING), WAIT),
    ("all_done_min_one_success", (FAILED, RETRY), WAIT),
    ("all_done_min_one_success", (FAILED, SKIPPED), UPSTREAM_FAILED),
    ("all_done_min_one_success", (UP_FAILED, FAILED), UPSTREAM_FAILED),
    ("all_done_min_one_success", (SKIPPED, SKIPPED), SKIP),
    # always: waits for nothing, whatever the upstream tasks do.
    ("always", (RUNNING, SCHEDULED), READY),
    ("always", (FAILED, UP_FAILED), READY),
    ("always", (SKIPPED, RETRY), READY),
]


@pytest.mark.parametrize(
    ("rule", "upstream", "decision"),
    RULE_TABLE,
    ids=[f"{r}-{'+'.join(s)}" for r, s, _ in RULE_TABLE],
)
def test_trigger_rule(rule: str, upstream: tuple[TaskState, ...], decision: Decision) -> None:
    assert evaluate(rule, upstream) is decision
    # The order of the upstream tasks never matters.
    assert evaluate(rule, reversed(upstream)) is decision


def test_the_table_covers_every_trigger_rule_and_decision() -> None:
    assert {rule for rule, _, _ in RULE_TABLE} == TRIGGER_RULES
    assert set(RULES) == TRIGGER_RULES  # what authoring accepts, the planner decides
    for rule in TRIGGER_RULES - EAGER_RULES:
        decisions = {d for r, _, d in RULE_TABLE if r == rule}
        assert {READY, WAIT} <= decisions, rule
    assert {d for r, _, d in RULE_TABLE if r in EAGER_RULES} == {READY}


def test_a_task_that_waits_for_no_upstream_is_considered_when_the_run_starts() -> None:
    g = graph([("a", "b"), ("b", "c"), ("a", "d")], rules={"c": "always"})
    assert g.roots == ["a", "c"]
    states = dict.fromkeys("abcd", SCHEDULED)
    assert plan(g, states, g.roots) == [("a", QUEUED), ("c", QUEUED)]


@pytest.mark.parametrize("rule", sorted(TRIGGER_RULES))
def test_a_task_without_upstream_is_ready_whatever_its_rule(rule: str) -> None:
    assert evaluate(rule, []) is READY


def test_an_unknown_rule_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown trigger rule 'sometimes'"):
        evaluate("sometimes", [SUCCESS])


# -- plan ------------------------------------------------------------------------


def graph(edges: list[tuple[str, str]], rules: dict[str, str] | None = None) -> Graph:
    ids = sorted({t for edge in edges for t in edge})
    rules = rules or {}
    return Graph(
        upstream={t: tuple(sorted(u for u, d in edges if d == t)) for t in ids},
        downstream={t: tuple(sorted(d for u, d in edges if u == t)) for t in ids},
        rules={t: rules.get(t, "all_success") for t in ids},
        position={t: i for i, t in enumerate(ids)},
    )


CHAIN = [("a", "b"), ("b", "c"), ("c", "d")]


def test_a_failure_propagates_down_a_chain_in_one_call() -> None:
    states = {"a": FAILED, "b": SCHEDULED, "c": SCHEDULED, "d": SCHEDULED}
    before = dict(states)
    assert plan(graph(CHAIN), states, ["b"]) == [
        ("b", UP_FAILED),
        ("c", UP_FAILED),
        ("d", UP_FAILED),
    ]
    assert states == before  # the input is not modified


def test_a_skip_propagates_down_a_chain_in_one_call() -> None:
    states = {"a": SKIPPED, "b": SCHEDULED, "c": SCHEDULED, "d": SCHEDULED}
    assert plan(graph(CHAIN), states, ["b"]) == [("b", SKIPPED), ("c", SKIPPED), ("d", SKIPPED)]


def test_success_queues_only_the_next_task() -> None:
    states = {"a": SUCCESS, "b": SCHEDULED, "c": SCHEDULED, "d": SCHEDULED}
    assert plan(graph(CHAIN), states, ["b"]) == [("b", QUEUED)]


def test_propagation_stops_at_a_cleanup_task_that_runs_anyway() -> None:
    g = graph(CHAIN, rules={"c": "all_done"})
    states = {"a": FAILED, "b": SCHEDULED, "c": SCHEDULED, "d": SCHEDULED}
    assert plan(g, states, ["b"]) == [("b", UP_FAILED), ("c", QUEUED)]


def test_a_join_after_a_skipped_branch_runs_with_none_failed() -> None:
    # branch >> [left, right] >> join; left was skipped, right succeeded.
    g = graph(
        [("branch", "left"), ("branch", "right"), ("left", "after_left"),
         ("after_left", "join"), ("right", "join")],
        rules={"join": "none_failed"},
    )
    states = {
        "branch": SUCCESS,
        "left": SKIPPED,
        "right": SUCCESS,
        "after_left": SCHEDULED,
        "join": SCHEDULED,
    }
    assert plan(g, states, ["after_left"]) == [("after_left", SKIPPED), ("join", QUEUED)]


def test_a_task_waits_while_another_upstream_is_unfinished() -> None:
    g = graph([("a", "c"), ("b", "c"), ("c", "d")])
    states = {"a": SUCCESS, "b": RUNNING, "c": SCHEDULED, "d": SCHEDULED}
    assert plan(g, states, ["c"]) == []
    states["b"] = SUCCESS
    assert plan(g, states, ["c"]) == [("c", QUEUED)]


def test_only_scheduled_candidates_are_decided() -> None:
    g = graph([("a", "b")])
    states = {"a": SUCCESS, "b": RUNNING}
    assert plan(g, states, ["a", "b"]) == []


def test_all_roots_are_ready_at_the_start_of_a_run() -> None:
    g = graph([("a", "c"), ("b", "c")])
    states = dict.fromkeys(["a", "b", "c"], SCHEDULED)
    assert g.roots == ["a", "b"]
    assert plan(g, states, g.roots) == [("a", QUEUED), ("b", QUEUED)]


def test_a_task_reached_twice_is_decided_once() -> None:
    # a fails; b and c both lead to d.
    g = graph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    states = {"a": FAILED, "b": SCHEDULED, "c": SCHEDULED, "d": SCHEDULED}
    decided = plan(g, states, ["b", "c"])
    assert sorted(decided) == [("b", UP_FAILED), ("c", UP_FAILED), ("d", UP_FAILED)]


def test_graph_from_dag_keeps_edges_and_rules() -> None:
    with DAG("d") as d:
        a = PythonTask(task_id="a", python_callable=print)
        b = PythonTask(task_id="b", python_callable=print)
        c = PythonTask(task_id="c", python_callable=print, trigger_rule="one_failed")
        a >> [b, c]
    g = Graph.from_dag(d)
    assert g.upstream == {"a": (), "b": ("a",), "c": ("a",)}
    assert g.downstream == {"a": ("b", "c"), "b": (), "c": ()}
    assert g.rules == {"a": "all_success", "b": "all_success", "c": "one_failed"}
    assert g.roots == ["a"]
    states = {"a": FAILED, "b": SCHEDULED, "c": SCHEDULED}
    assert plan(g, states, ["b", "c"]) == [("b", UP_FAILED), ("c", QUEUED)]


# -- run_outcome -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "outcome"),
    [
        ([SUCCESS, SUCCESS], SUCCESS),
        ([SUCCESS, SKIPPED], SUCCESS),
        ([SKIPPED, SKIPPED], SUCCESS),
        ([SUCCESS, FAILED], FAILED),
        ([SUCCESS, UP_FAILED], FAILED),
        ([FAILED, SKIPPED], FAILED),
        ([SUCCESS, RUNNING], None),
        ([FAILED, RUNNING], None),
        ([FAILED, RETRY], None),
        ([SUCCESS, SCHEDULED], None),
        ([SUCCESS, QUEUED], None),
        ([], SUCCESS),
    ],
)
def test_run_outcome(states: list[TaskState], outcome: TaskState | None) -> None:
    assert run_outcome(states) == outcome
