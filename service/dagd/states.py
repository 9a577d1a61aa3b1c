"""Run and task-instance states, and the one table of allowed transitions.

Pure: no I/O. The store applies transitions as compare-and-set writes and checks them
against `TRANSITIONS` here; nothing else changes a state.
"""

from __future__ import annotations

from enum import StrEnum

from dagd.errors import StateError


class RunState(StrEnum):
    __hash__ = str.__hash__  # see the note on hashing below

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class TaskState(StrEnum):
    __hash__ = str.__hash__  # see the note on hashing below

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"


class AttemptState(StrEnum):
    __hash__ = str.__hash__  # see the note on hashing below

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


# Hashing: Enum hashes a member by its name, in Python; these enums hash as their
# string value instead (in C), which the scheduler's hot path feels, and which makes
# `"success" in TASK_TERMINAL` true, as a string enum should.

RUN_TERMINAL = frozenset({RunState.SUCCESS, RunState.FAILED})
RUN_ACTIVE = frozenset({RunState.QUEUED, RunState.RUNNING})

TASK_TERMINAL = frozenset(
    {TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED}
)
TASK_ACTIVE = frozenset(
    {TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING, TaskState.UP_FOR_RETRY}
)
# States in which a task instance's current try has ended: its `ended_at` is set (a
# task up for retry has ended a try, though the instance is still active).
TASK_TRY_ENDED = TASK_TERMINAL | {TaskState.UP_FOR_RETRY}
# States that count as "failed" for trigger rules and for the run's outcome.
TASK_FAILED = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED})

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.FAILED}),
    RunState.RUNNING: frozenset({RunState.SUCCESS, RunState.FAILED}),
    RunState.SUCCESS: frozenset(),
    RunState.FAILED: frozenset(),
}

TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.SCHEDULED: frozenset(
        {TaskState.QUEUED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED, TaskState.FAILED}
    ),
    TaskState.QUEUED: frozenset(
        {TaskState.RUNNING, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED, TaskState.FAILED}
    ),
    TaskState.RUNNING: frozenset(
        {TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY, TaskState.SKIPPED}
    ),
    TaskState.UP_FOR_RETRY: frozenset({TaskState.QUEUED, TaskState.FAILED}),
    TaskState.SUCCESS: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.SKIPPED: frozenset(),
    TaskState.UPSTREAM_FAILED: frozenset(),
}


ALLOWED_TASK = frozenset((f, t) for f, targets in TRANSITIONS.items() for t in targets)

# What a person may do beyond the scheduler's lifecycle (the UI's and API's actions),
# kept apart so that the scheduler itself can never take these ways:
# - clear: a task instance that has ended a try goes back to `scheduled` to run again;
# - mark success / mark failed: any task instance, from any other state;
# - a run that has ended goes back to `running` when one of its tasks is cleared, and a
#   run may be marked success or failed from any other state.
CLEARABLE = TASK_TERMINAL | {TaskState.UP_FOR_RETRY}
MARKABLE = frozenset({TaskState.SUCCESS, TaskState.FAILED})
USER_TASK = frozenset(
    {(f, TaskState.SCHEDULED) for f in CLEARABLE}
    | {(f, t) for t in MARKABLE for f in TaskState if f != t}
)
USER_RUN = frozenset(
    {(f, RunState.RUNNING) for f in RUN_TERMINAL}
    | {(f, t) for t in RUN_TERMINAL for f in RunState if f != t}
)

# The happy path of a task instance's first try. Its own row records when each happened
# (queued_at, started_at, ended_at), so these write no history row: a history row is
# kept for what the row cannot tell (a retry, a failure, a skip, a reason, a later try).
QUIET_TASK_TRANSITIONS = frozenset({
    (TaskState.SCHEDULED, TaskState.QUEUED),
    (TaskState.QUEUED, TaskState.RUNNING),
    (TaskState.RUNNING, TaskState.SUCCESS),
})


def writes_history(
    from_state: TaskState, to_state: TaskState, try_number: int, reason: str | None
) -> bool:
    """Does this task-instance transition get a row in the state history?"""
    return (reason is not None or try_number > 1
            or (from_state, to_state) not in QUIET_TASK_TRANSITIONS
            # a cleared one queued again: its row keeps the first time it was queued
            or (try_number > 0 and from_state == TaskState.SCHEDULED))


def check_task(from_state: TaskState, to_state: TaskState) -> None:
    if (from_state, to_state) not in ALLOWED_TASK:
        raise StateError(f"task instance cannot go from {from_state} to {to_state}")


def check_run(from_state: RunState, to_state: RunState) -> None:
    if to_state not in RUN_TRANSITIONS[from_state]:
        raise StateError(f"run cannot go from {from_state} to {to_state}")


def check_user_task(from_state: TaskState, to_state: TaskState) -> None:
    """May a person (clear, mark) move a task instance so?"""
    if (from_state, to_state) not in USER_TASK and (from_state, to_state) not in ALLOWED_TASK:
        raise StateError(f"task instance cannot go from {from_state} to {to_state}")


def check_user_run(from_state: RunState, to_state: RunState) -> None:
    """May a person (clear a task, mark the run) move a run so?"""
    if (from_state, to_state) not in USER_RUN and to_state not in RUN_TRANSITIONS[from_state]:
        raise StateError(f"run cannot go from {from_state} to {to_state}")
