"""States: the transitions table allows the lifecycle in DESIGN.md and nothing else."""

from __future__ import annotations

import itertools

import pytest

from dagd.errors import StateError
from dagd.states import (
    RUN_ACTIVE,
    RUN_TERMINAL,
    RUN_TRANSITIONS,
    TASK_ACTIVE,
    TASK_TERMINAL,
    TRANSITIONS,
    RunState,
    TaskState,
    check_run,
    check_task,
)

T = TaskState
R = RunState

# The task-instance lifecycle, written out by hand from DESIGN.md.
TASK_ALLOWED = {
    (T.SCHEDULED, T.QUEUED),
    (T.SCHEDULED, T.SKIPPED),
    (T.SCHEDULED, T.UPSTREAM_FAILED),
    (T.SCHEDULED, T.FAILED),
    (T.QUEUED, T.RUNNING),
    (T.QUEUED, T.SKIPPED),
    (T.QUEUED, T.UPSTREAM_FAILED),
    (T.QUEUED, T.FAILED),
    (T.RUNNING, T.SUCCESS),
    (T.RUNNING, T.FAILED),
    (T.RUNNING, T.UP_FOR_RETRY),
    (T.RUNNING, T.SKIPPED),
    (T.UP_FOR_RETRY, T.QUEUED),
    (T.UP_FOR_RETRY, T.FAILED),
}
RUN_ALLOWED = {
    (R.QUEUED, R.RUNNING),
    (R.QUEUED, R.FAILED),
    (R.RUNNING, R.SUCCESS),
    (R.RUNNING, R.FAILED),
}
TASK_PAIRS = list(itertools.product(TaskState, TaskState))
RUN_PAIRS = list(itertools.product(RunState, RunState))


def test_the_table_allows_exactly_the_designed_lifecycle() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == TASK_ALLOWED
    assert {(a, b) for a, targets in RUN_TRANSITIONS.items() for b in targets} == RUN_ALLOWED


@pytest.mark.parametrize(("src", "dst"), sorted(TASK_ALLOWED), ids=lambda s: str(s))
def test_allowed_task_transition_passes(src: TaskState, dst: TaskState) -> None:
    check_task(src, dst)


@pytest.mark.parametrize(("src", "dst"), sorted(RUN_ALLOWED), ids=lambda s: str(s))
def test_allowed_run_transition_passes(src: RunState, dst: RunState) -> None:
    check_run(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (T.SUCCESS, T.RUNNING),
        (T.SCHEDULED, T.SUCCESS),
        (T.SCHEDULED, T.RUNNING),
        (T.QUEUED, T.SUCCESS),
        (T.RUNNING, T.QUEUED),
        (T.RUNNING, T.RUNNING),
        (T.UP_FOR_RETRY, T.RUNNING),
        (T.FAILED, T.QUEUED),
        (T.SKIPPED, T.QUEUED),
        (T.UPSTREAM_FAILED, T.SCHEDULED),
    ],
    ids=lambda s: str(s),
)
def test_forbidden_task_transition_raises_naming_both_states(
    src: TaskState, dst: TaskState
) -> None:
    with pytest.raises(StateError) as info:
        check_task(src, dst)
    assert str(info.value) == f"task instance cannot go from {src} to {dst}"
    assert info.value.status == 409


@pytest.mark.parametrize(
    ("src", "dst"),
    [(R.SUCCESS, R.RUNNING), (R.FAILED, R.RUNNING), (R.QUEUED, R.SUCCESS), (R.RUNNING, R.QUEUED)],
    ids=lambda s: str(s),
)
def test_forbidden_run_transition_raises(src: RunState, dst: RunState) -> None:
    with pytest.raises(StateError, match=f"run cannot go from {src} to {dst}"):
        check_run(src, dst)


@pytest.mark.parametrize(("src", "dst"), TASK_PAIRS, ids=lambda s: str(s))
def test_every_task_pair_outside_the_lifecycle_raises(src: TaskState, dst: TaskState) -> None:
    if (src, dst) in TASK_ALLOWED:
        check_task(src, dst)
    else:
        with pytest.raises(StateError):
            check_task(src, dst)


@pytest.mark.parametrize(("src", "dst"), RUN_PAIRS, ids=lambda s: str(s))
def test_every_run_pair_outside_the_lifecycle_raises(src: RunState, dst: RunState) -> None:
    if (src, dst) in RUN_ALLOWED:
        check_run(src, dst)
    else:
        with pytest.raises(StateError):
            check_run(src, dst)


def test_terminal_task_states_have_no_exits() -> None:
    assert TASK_TERMINAL == {T.SUCCESS, T.FAILED, T.SKIPPED, T.UPSTREAM_FAILED}
    for src in TASK_TERMINAL:
        assert TRANSITIONS[src] == frozenset()
        for dst in TaskState:
            with pytest.raises(StateError):
                check_task(src, dst)


def test_terminal_run_states_have_no_exits() -> None:
    assert RUN_TERMINAL == {R.SUCCESS, R.FAILED}
    for src in RUN_TERMINAL:
        for dst in RunState:
            with pytest.raises(StateError):
                check_run(src, dst)


def test_every_active_state_can_still_end() -> None:
    for src in TASK_ACTIVE:
        assert TRANSITIONS[src], f"{src} has no way out"
        assert T.FAILED in TRANSITIONS[src], f"{src} cannot be failed (e.g. on recovery)"
    for run_src in RUN_ACTIVE:
        assert R.FAILED in RUN_TRANSITIONS[run_src]


def test_state_sets_partition_the_states() -> None:
    assert TASK_ACTIVE | TASK_TERMINAL == set(TaskState)
    assert not TASK_ACTIVE & TASK_TERMINAL
    assert RUN_ACTIVE | RUN_TERMINAL == set(RunState)
    assert not RUN_ACTIVE & RUN_TERMINAL


def test_states_are_their_stored_strings() -> None:
    assert TaskState("up_for_retry") is T.UP_FOR_RETRY
    assert f"{T.UPSTREAM_FAILED}" == "upstream_failed"
    assert RunState("running") is R.RUNNING


def test_a_person_may_clear_an_ended_try_and_mark_any_state_but_the_scheduler_may_not() -> None:
    from dagd.states import USER_RUN, USER_TASK, check_user_run, check_user_task

    for src in TASK_TERMINAL | {T.UP_FOR_RETRY}:
        check_user_task(src, T.SCHEDULED)
        with pytest.raises(StateError):
            check_task(src, T.SCHEDULED)
    for src in TaskState:
        for dst in (T.SUCCESS, T.FAILED):
            if src != dst:
                check_user_task(src, dst)
    with pytest.raises(StateError, match="cannot go from running to scheduled"):
        check_user_task(T.RUNNING, T.SCHEDULED)
    with pytest.raises(StateError):
        check_user_task(T.SUCCESS, T.QUEUED)
    assert (T.SCHEDULED, T.QUEUED) not in USER_TASK  # the scheduler's own ways stay apart
    for run_src in RUN_TERMINAL:
        check_user_run(run_src, R.RUNNING)
    check_user_run(R.QUEUED, R.SUCCESS)
    check_user_run(R.FAILED, R.SUCCESS)
    with pytest.raises(StateError):
        check_user_run(R.RUNNING, R.QUEUED)
    assert (R.QUEUED, R.RUNNING) not in USER_RUN
