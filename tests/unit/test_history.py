"""Which task-instance transitions write a history row, and the whole history read back
from the history rows and the task instances' own rows."""

from __future__ import annotations

import pytest

from dagd.states import TaskState, writes_history
from dagd.store.history import complete
from dagd.store.rows import HistoryRow, TaskInstanceRow

T = TaskState


@pytest.mark.parametrize(
    ("frm", "to", "try_number", "reason", "written"),
    [
        # A first try's happy path: the task instance's row tells it.
        (T.SCHEDULED, T.QUEUED, 0, None, False),
        (T.QUEUED, T.RUNNING, 1, None, False),
        (T.RUNNING, T.SUCCESS, 1, None, False),
        # What the row cannot tell: failures, retries, skips, reasons, later tries.
        (T.RUNNING, T.FAILED, 1, "ValueError: no", True),
        (T.RUNNING, T.UP_FOR_RETRY, 1, "ValueError: no", True),
        (T.UP_FOR_RETRY, T.QUEUED, 1, "retry delay passed", True),
        (T.QUEUED, T.RUNNING, 2, None, True),
        (T.RUNNING, T.SUCCESS, 2, None, True),
        (T.SCHEDULED, T.SKIPPED, 0, None, True),
        (T.SCHEDULED, T.UPSTREAM_FAILED, 0, None, True),
        (T.QUEUED, T.RUNNING, 0, "expanded into 3 mapped instances", True),
        (T.RUNNING, T.FAILED, 1, "interrupted: the daemon stopped", True),
        # Cleared after its first try, queued again: the row keeps the first queued time.
        (T.SCHEDULED, T.QUEUED, 1, None, True),
    ],
)
def test_only_what_the_row_cannot_tell_writes_history(
    frm: TaskState, to: TaskState, try_number: int, reason: str | None, written: bool
) -> None:
    assert writes_history(frm, to, try_number, reason) is written


def ti(ti_id: int, state: str, try_number: int, queued: float | None, started: float | None,
       ended: float | None) -> TaskInstanceRow:
    return TaskInstanceRow(id=ti_id, run_id=1, task_id=f"t{ti_id}", map_index=-1, state=state,
                           try_number=try_number, max_tries=3, next_attempt_at=None,
                           started_at=started, ended_at=ended, updated_at=ended or 0.0,
                           queued_at=queued)


def h(ti_id: int | None, frm: str | None, to: str, at: float, reason: str | None = None
      ) -> HistoryRow:
    return HistoryRow(1, ti_id, frm, to, at, reason)


def test_a_first_try_happy_path_reads_back_whole_and_in_order() -> None:
    stored = [h(None, None, "queued", 1.0, "manual run created"), h(None, "queued", "running", 2.0),
              h(None, "running", "success", 4.0)]
    # Queued and started in the tick that started the run; ended in the run's last tick.
    tis = [ti(1, "success", 1, 2.0, 2.0, 4.0)]
    assert [(r.ti_id, r.from_state, r.to_state, r.at) for r in complete(stored, tis)] == [
        (None, None, "queued", 1.0),
        (None, "queued", "running", 2.0),
        (1, "scheduled", "queued", 2.0),
        (1, "queued", "running", 2.0),
        (1, "running", "success", 4.0),
        (None, "running", "success", 4.0),
    ]


def test_a_retried_task_keeps_its_first_try_and_its_stored_rows() -> None:
    stored = [h(1, "running", "up_for_retry", 3.0, "ValueError: no"),
              h(1, "up_for_retry", "queued", 5.0, "retry delay passed"),
              h(1, "queued", "running", 5.0), h(1, "running", "success", 6.0)]
    tis = [ti(1, "success", 2, 1.0, 2.0, 6.0)]
    assert [(r.from_state, r.to_state, r.at) for r in complete(stored, tis)] == [
        ("scheduled", "queued", 1.0), ("queued", "running", 2.0),
        ("running", "up_for_retry", 3.0), ("up_for_retry", "queued", 5.0),
        ("queued", "running", 5.0), ("running", "success", 6.0),
    ]


def test_rows_stored_before_quiet_transitions_are_not_doubled() -> None:
    # A database from an older version: every transition stored, no queued_at.
    stored = [h(1, "scheduled", "queued", 1.0), h(1, "queued", "running", 2.0),
              h(1, "running", "success", 3.0)]
    tis = [ti(1, "success", 1, None, 2.0, 3.0)]
    assert complete(stored, tis) == stored


def test_since_keeps_only_the_later_transitions() -> None:
    tis = [ti(1, "success", 1, 1.0, 2.0, 3.0), ti(2, "running", 1, 1.0, 2.5, None)]
    assert [(r.ti_id, r.to_state) for r in complete([], tis, since=2.2)] == [
        (2, "running"), (1, "success")]
