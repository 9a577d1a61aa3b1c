"""Trigger rules end to end: real runs, real rows; the states Airflow users expect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from integration.harness import StartEngine

pytestmark = pytest.mark.anyio

RULES_DAGS = """
from dagd import DAG, PythonTask

RULES = ["all_success", "all_failed", "all_done", "one_success", "one_failed",
         "none_failed", "none_skipped", "all_skipped", "one_done", "all_done_min_one_success",
         "always"]


async def ok():
    return None


async def bad():
    raise RuntimeError("boom")


def rules_dag(dag_id, upstream):
    # One downstream task per rule, each with the same upstream tasks. An upstream
    # "skipped" is a one_failed task whose only upstream succeeded.
    with DAG(dag_id) as d:
        ups = []
        for i, kind in enumerate(upstream):
            if kind == "skipped":
                source = PythonTask(task_id=f"source{i}", python_callable=ok)
                gate = PythonTask(task_id=f"up{i}_skipped", python_callable=ok,
                                  trigger_rule="one_failed")
                source >> gate
                ups.append(gate)
            else:
                fn = ok if kind == "success" else bad
                ups.append(PythonTask(task_id=f"up{i}_{kind}", python_callable=fn))
        for rule in RULES:
            ups >> PythonTask(task_id=rule, python_callable=ok, trigger_rule=rule)
    return d


all_success_up = rules_dag("all_success_up", ["success", "success"])
mixed_up = rules_dag("mixed_up", ["success", "failed"])
all_failed_up = rules_dag("all_failed_up", ["failed", "failed"])
skipped_up = rules_dag("skipped_up", ["skipped"])
success_skipped_up = rules_dag("success_skipped_up", ["success", "skipped"])

with DAG("chains") as chains:
    broken = PythonTask(task_id="broken", python_callable=bad)
    c1 = PythonTask(task_id="c1", python_callable=ok)
    c2 = PythonTask(task_id="c2", python_callable=ok)
    c3 = PythonTask(task_id="c3", python_callable=ok)
    cleanup = PythonTask(task_id="cleanup", python_callable=ok, trigger_rule="all_done")
    broken >> c1 >> c2 >> c3 >> cleanup

    fine = PythonTask(task_id="fine", python_callable=ok)
    gate = PythonTask(task_id="gate", python_callable=ok, trigger_rule="one_failed")
    s1 = PythonTask(task_id="s1", python_callable=ok)
    s2 = PythonTask(task_id="s2", python_callable=ok)
    after_skip = PythonTask(task_id="after_skip", python_callable=ok,
                            trigger_rule="none_failed")
    fine >> gate >> s1 >> s2 >> after_skip
"""

S, F, K, UF = "success", "failed", "skipped", "upstream_failed"

# (DAG, rule -> expected state of the task with that rule, expected run state)
CASES = {
    "all upstream succeeded": (
        "all_success_up",
        {"all_success": S, "all_failed": K, "all_done": S, "one_success": S,
         "one_failed": K, "none_failed": S, "none_skipped": S, "all_skipped": K,
         "one_done": S, "all_done_min_one_success": S, "always": S},
        "success",
    ),
    "one succeeded, one failed": (
        "mixed_up",
        {"all_success": UF, "all_failed": K, "all_done": S, "one_success": S,
         "one_failed": S, "none_failed": UF, "none_skipped": S, "all_skipped": K,
         "one_done": S, "all_done_min_one_success": S, "always": S},
        "failed",
    ),
    "all upstream failed": (
        "all_failed_up",
        {"all_success": UF, "all_failed": S, "all_done": S, "one_success": UF,
         "one_failed": S, "none_failed": UF, "none_skipped": S, "all_skipped": K,
         "one_done": S, "all_done_min_one_success": UF, "always": S},
        "failed",
    ),
    "upstream skipped": (
        "skipped_up",
        {"all_success": K, "all_failed": K, "all_done": S, "one_success": K,
         "one_failed": K, "none_failed": S, "none_skipped": K, "all_skipped": S,
         "one_done": K, "all_done_min_one_success": K, "always": S},
        "success",
    ),
    "one succeeded, one skipped": (
        "success_skipped_up",
        {"all_success": K, "all_failed": K, "all_done": S, "one_success": S,
         "one_failed": K, "none_failed": S, "none_skipped": K, "all_skipped": K,
         "one_done": S, "all_done_min_one_success": S, "always": S},
        "success",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_trigger_rule_in_a_real_run(
    case: str, write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    dag_id, expected, run_state = CASES[case]
    write_dag("rules.py", RULES_DAGS)
    async with start_engine() as h:
        run_id, state = await h.run(dag_id)
        states = await h.states(run_id)
    assert {rule: states[rule] for rule in expected} == expected
    assert state == run_state
    # Every task of the DAG has a final state.
    assert set(states.values()) <= {S, F, K, UF}


async def test_upstream_failed_and_skipped_propagate_down_chains(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("rules.py", RULES_DAGS)
    async with start_engine() as h:
        run_id, state = await h.run("chains")
        tis = await h.tis(run_id)
        never_ran = {
            task_id: await h.attempts(run_id, task_id)
            for task_id in ("c1", "c2", "c3", "gate", "s1", "s2")
        }
        run_history = [
            (r.from_state, r.to_state) for r in await h.store.run_history(run_id)
            if r.ti_id is None
        ]
    assert {t: ti.state for t, ti in tis.items()} == {
        "broken": F, "c1": UF, "c2": UF, "c3": UF, "cleanup": S,
        "fine": S, "gate": K, "s1": K, "s2": K, "after_skip": S,
    }
    assert never_ran == {task_id: [] for task_id in never_ran}
    assert all(tis[t].try_number == 0 for t in never_ran)
    # A failed task fails the run even when a later all_done task succeeds.
    assert state == "failed"
    assert run_history == [(None, "queued"), ("queued", "running"), ("running", "failed")]
