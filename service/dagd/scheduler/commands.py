"""What a person does to runs and task instances: clear, mark success, mark failed.

The UI's and the API's actions, applied by the engine inside a tick (see
`Engine.clear`): each is checked in full against the working copy (an active run) or
the rows read just before (a run that has ended) before anything is written into the
tick's batch, so a refused action writes nothing. The moves they make beyond the
scheduler's own lifecycle are `states.USER_TASK` and `states.USER_RUN`.

- clear: a task instance (and, with `downstream`, every task after it) goes back to
  `scheduled` with its own tries again (counted from its last one) and no XCom; a run
  that had ended runs again.
- mark: a task instance, or every unfinished one of a run, ends as the person says; a
  running attempt is stopped (the engine stops the attempts these return, once the
  batch is committed). A run marked ends in that state, whatever its tasks say, and
  sends no alert.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dagd.errors import InvalidInput, NotFound, StateError
from dagd.scheduler.model import TI, ActiveRun, parse_date
from dagd.scheduler.recovery import load_rows
from dagd.scheduler.runs import Runs
from dagd.states import CLEARABLE, MARKABLE, RUN_TERMINAL, TASK_TERMINAL, RunState, TaskState
from dagd.store import Batch
from dagd.store.rows import RunRow, TaskInstanceRow

log = logging.getLogger(__name__)


class Again(Exception):
    """The run changed between reading its rows and the tick (it just ended): read
    them again and retry."""


@dataclass
class Rows:
    """A run's rows as read just before the tick: what an action on a run that is not
    in the working copy works from."""

    run: RunRow
    tis: list[TaskInstanceRow]
    xcoms: dict[int, Any]


def _state(value: object, allowed: frozenset[Any], field: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value)[:60]
        raise InvalidInput(f"{field} must be one of {sorted(str(s) for s in allowed)}, "
                           f"got {shown}", field=field)
    return value


def _active(runs: Runs, rows: Rows) -> ActiveRun | None:
    """The run's working copy; None for a run that has ended (its rows are the truth).
    `Again` when the rows were read while it was still running."""
    run_id = rows.run.id
    if run_id in runs.ending:  # its final state is being committed right now
        raise Again
    run = runs.active.get(run_id)
    if run is None and rows.run.state not in RUN_TERMINAL:
        if any(r.id == run_id for q in runs.queued.values() for r in q):
            return None
        raise Again  # ended since the rows were read
    return run


def _find(run: ActiveRun, task_id: str, map_index: int) -> TI:
    try:
        return run.ti(task_id, map_index)
    except (KeyError, IndexError):
        where = f"task {task_id!r}" + (f" map index {map_index}" if map_index >= 0 else "")
        raise NotFound(f"run {run.id} has no {where}", task_id=task_id) from None


def _row(rows: Rows, task_id: str, map_index: int) -> TaskInstanceRow:
    for row in rows.tis:
        if row.task_id == task_id and row.map_index == map_index:
            return row
    raise NotFound(f"run {rows.run.id} has no task {task_id!r}"
                   + (f" map index {map_index}" if map_index >= 0 else ""), task_id=task_id)


# -- mark --------------------------------------------------------------------------------
def _mark_one(runs: Runs, batch: Batch, run: ActiveRun, ti: TI, to: TaskState,
              reason: str | None = None) -> None:
    if ti.state == to:
        return
    reason = reason or f"marked {to} by a person"
    if ti.state in TASK_TERMINAL:  # one end for another: nothing opens or closes
        batch.user_ti_change(run.id, ti.id, ti.state, to, try_number=ti.try_number,
                             reason=reason, names=(run.dag.dag_id, ti.task_id, ti.map_index))
        ti.state = to
        if ti.map_index < 0:
            runs.reconsider(run, run.graph.downstream[ti.task_id])
        return
    if ti.state == TaskState.RUNNING and ti.task_id not in run.children:
        runs.stop(ti.attempt_id, f"stopped: {reason}")
    with batch.by_user():
        runs.set_ti(batch, run, ti, to, reason=reason)


def mark_task(runs: Runs, batch: Batch, rows: Rows, *, task_id: str, map_index: int,
              state: str) -> None:
    """Mark a task instance success or failed (a running attempt is stopped)."""
    to = TaskState(_state(state, MARKABLE, "state"))
    run = _active(runs, rows)
    if run is None:  # an ended (or not yet started) run: the row alone changes
        row = _row(rows, task_id, map_index)
        if row.state != to:
            batch.user_ti_change(rows.run.id, row.id, TaskState(row.state), to,
                                 try_number=row.try_number, reason=f"marked {to} by a person",
                                 names=(rows.run.dag_id, row.task_id, row.map_index))
        return
    ti = _find(run, task_id, map_index)
    # A mapped task's own instance: its instances are what run; marking them ends it.
    for child in run.children.get(task_id, []) if map_index < 0 else []:
        if child.state not in TASK_TERMINAL:
            _mark_one(runs, batch, run, child, to)
    _mark_one(runs, batch, run, ti, to)


def mark_run(runs: Runs, batch: Batch, rows: Rows, *, state: str) -> None:
    """Mark a run success or failed: its unfinished task instances end (success: as
    success; failed: running ones failed, the ones not started skipped)."""
    to = RunState(_state(state, RUN_TERMINAL, "state"))
    row = rows.run
    run = _active(runs, rows)
    if run is None:
        if row.state == to:
            return
        if row.state == RunState.QUEUED:
            queue = runs.queued[row.dag_id]
            for queued in list(queue):
                if queued.id == row.id:
                    queue.remove(queued)
            runs.ended.append(row.id)
        batch.transition_run(row.id, RunState(row.state), to, f"marked {to} by a person",
                             dag_id=row.dag_id, run_type=row.run_type, conf=row.conf,
                             by_user=True)
        return
    end_run(runs, batch, run, to)


def end_run(runs: Runs, batch: Batch, run: ActiveRun, to: RunState,
            reason: str | None = None) -> None:
    """End an active run as `to`, whatever its tasks say: its unfinished task instances
    end with it (success: as success; failed: running ones failed, the ones not started
    skipped)."""
    run.forced, run.forced_reason = to, reason
    unfinished = [c for children in run.children.values() for c in children]
    unfinished += [ti for ti in run.tis.values() if ti.task_id not in run.children]
    unfinished += [run.tis[task_id] for task_id in run.children]  # after their instances
    for ti in unfinished:
        if ti.state in TASK_TERMINAL:
            continue
        if to == RunState.SUCCESS:
            target = TaskState.SUCCESS
        elif ti.state in (TaskState.SCHEDULED, TaskState.QUEUED):
            target = TaskState.SKIPPED
        else:
            target = TaskState.FAILED
        _mark_one(runs, batch, run, ti, target, reason)
    if run.open == 0:
        runs.finishing.add(run.id)


def expire(runs: Runs, batch: Batch) -> None:
    """Fail the runs past their DAG's `dagrun_timeout`, stopping what they run."""
    for run in runs.overdue(batch.now):
        limit = run.dag.dagrun_timeout
        log.error("%s timed out after %gs (dagrun_timeout)", f"{run.dag.dag_id}[run {run.id}]",
                  limit, extra={"dag_id": run.dag.dag_id, "run_id": run.id})
        end_run(runs, batch, run, RunState.FAILED,
                f"the run took longer than its dagrun_timeout ({limit:g}s)")


# -- clear -------------------------------------------------------------------------------
def _targets(run: ActiveRun, task_id: str, downstream: bool) -> list[str]:
    if task_id not in run.tis:
        raise NotFound(f"run {run.id} has no task {task_id!r}", task_id=task_id)
    if task_id not in run.dag.tasks:
        raise StateError(f"task {task_id!r} is no longer in DAG {run.dag.dag_id!r}",
                         task_id=task_id)
    chosen = {task_id}
    if downstream:
        todo = [task_id]
        while todo:
            for after in run.graph.downstream[todo.pop()]:
                if after not in chosen:
                    chosen.add(after)
                    todo.append(after)
    return [t for t in run.dag.tasks if t in chosen]  # in the DAG's own order


def _check_clearable(run: ActiveRun, task_ids: list[str]) -> list[TI]:
    """The task instances to reset (those already waiting to run stay as they are);
    refused whole if one of them runs or is a mapped task."""
    out = []
    for task_id in task_ids:
        ti = run.tis[task_id]
        if ti.state == TaskState.RUNNING:
            raise StateError(f"task {task_id!r} of run {run.id} is running: mark it "
                             "failed or success first", task_id=task_id)
        if getattr(run.dag.tasks.get(task_id), "mapped", None) is not None and (
                task_id in run.children):
            raise StateError(f"task {task_id!r} is mapped: clearing a mapped task "
                             "after it expanded is not supported; trigger a new run",
                             task_id=task_id)
        if ti.state in CLEARABLE:
            out.append(ti)
    return out


def _reopen(runs: Runs, batch: Batch, rows: Rows, task_id: str) -> ActiveRun:
    """A run that has ended, back in the working copy, running again."""
    row = rows.run
    dag = runs.dags.get(row.dag_id)
    if dag is None:
        raise StateError(f"DAG {row.dag_id!r} is not loaded (see `dagd dags errors`): "
                         "its runs cannot run again", dag_id=row.dag_id)
    if row.state not in RUN_TERMINAL:
        raise StateError(f"run {row.id} has not started yet", dag_id=row.dag_id)
    run = ActiveRun(row.id, dag, runs.graph(dag), row.conf, parse_date(row.logical_date),
                    run_type=row.run_type)
    load_rows(run, rows.tis, rows.xcoms)
    return run


def clear(runs: Runs, batch: Batch, rows: Rows, *, task_id: str, map_index: int,
          downstream: bool) -> list[str]:
    """Clear a task instance (and, with `downstream`, the tasks after it) to run again;
    the task ids cleared."""
    if map_index >= 0:
        raise StateError("clearing one mapped instance is not supported; clear the run's "
                         "tasks after it, or trigger a new run", task_id=task_id)
    run = _active(runs, rows)
    reopened = run is None
    if run is None:
        run = _reopen(runs, batch, rows, task_id)
    tis = _check_clearable(run, _targets(run, task_id, downstream))
    if reopened:
        if not tis:
            return []
        batch.transition_run(run.id, RunState(rows.run.state), RunState.RUNNING,
                             f"{task_id} cleared by a person", dag_id=run.dag.dag_id,
                             by_user=True)
        runs.adopt(run, started_at=batch.now)
        for missing in run.dag.tasks.keys() - run.tis.keys():  # added to the DAG since
            runs.add_ti(batch, run, missing)
    for ti in tis:
        task = run.dag.tasks[ti.task_id]
        max_tries = ti.try_number + task.max_tries
        batch.user_ti_change(run.id, ti.id, ti.state, TaskState.SCHEDULED,
                             try_number=ti.try_number, reason="cleared by a person",
                             max_tries=max_tries, names=(run.dag.dag_id, ti.task_id, -1))
        if ti.state in TASK_TERMINAL:
            run.open += 1
        ti.state = TaskState.SCHEDULED
        ti.max_tries = max_tries
        ti.next_attempt_at = None
        run.xcoms.pop(ti.task_id, None)
    run.forced = run.forced_reason = None
    runs.reconsider(run, [ti.task_id for ti in tis] + (list(run.dag.tasks) if reopened else []))
    return [ti.task_id for ti in tis]
