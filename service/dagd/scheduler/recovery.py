"""Boot and recovery: settle what a dead daemon left behind and reload the active runs.

A boot step, run once before the daemon says it is ready, through the public verbs of
the engine's working copy (`Runs`). Attempts left `running` are recorded failed
("daemon restarted") and retried; queued task instances go back to their queues,
retries keep their due time, and every running run is carried on to a final state. A
run whose DAG is gone fails with that reason.

An attempt that ran inside the daemon's own process (a `def` task with
`isolation="thread"`) may be what killed it (a segfault in C code): it is recorded with
that said, and what to do about it, instead of "daemon restarted". So is an in-loop
attempt (an async task) when the previous daemon left a crash report (the daemon
writes one with `faulthandler` when a fatal signal kills it), which is also logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagd.authoring.context import Context
from dagd.executors.base import AttemptResult, AttemptSpec
from dagd.executors.procgroup import signal_group
from dagd.scheduler.model import TI, ActiveRun, parse_date
from dagd.scheduler.planner import Graph
from dagd.states import TASK_TERMINAL, RunState, TaskState
from dagd.store.rows import AttemptRow, RunRow, TaskInstanceRow

if TYPE_CHECKING:
    from dagd.scheduler.runs import Runs
    from dagd.store import Batch, Store

log = logging.getLogger(__name__)


RESTARTED = "daemon restarted"
IN_DAEMON = ("the daemon died while this attempt was running in the daemon's own process "
             "({where}): run it with isolation=\"process\"")
IN_LOOP = ("the daemon died while this attempt was running in the daemon's own process "
           "(in its event loop, an async task): make it a plain def, which runs in a worker "
           "process")
CRASH_REPORT = "crash.txt"  # in the data directory: what faulthandler wrote at a crash


def crash_report_path(data_dir: Path) -> Path:
    return data_dir / CRASH_REPORT


def _read_crash_report(data_dir: Path) -> str:
    """What the previous daemon wrote as it crashed (a fatal signal), or "" if nothing."""
    try:
        return crash_report_path(data_dir).read_text(errors="replace").strip()
    except OSError:
        return ""


def _isolation(runs: Runs, dag_id: str | None, task_id: str) -> str:
    """Where the task runs: "loop", "thread", "process" or "dask" ("" if no longer
    defined)."""
    dag = runs.dags.get(dag_id) if dag_id is not None else None
    task = dag.tasks.get(task_id) if dag is not None else None
    if task is None:
        return ""
    if task.executor == "dask":  # on the cluster: it cannot have killed the daemon
        return "dask"
    if task.runs_in_loop:
        return "loop"
    return task.isolation or runs.settings.default_isolation


def _error_for(isolation: str, crashed: bool) -> str:
    if isolation == "thread":
        return IN_DAEMON.format(where="isolation=thread")
    if isolation == "loop" and crashed:
        return IN_LOOP
    return RESTARTED


async def boot(store: Store, runs: Runs, *,
               on_found: Callable[[int], object] | None = None) -> None:
    """Settle what a dead daemon left running and load the active runs into `runs`;
    `on_found` is told how many attempts it left running, before they are settled."""
    batch = store.batch()
    batch.now = runs.clock()
    crash = _read_crash_report(runs.settings.data_dir)
    if crash:
        log.error("the previous daemon crashed; its crash report:\n%s", crash)
    tis_by_run: dict[int, list[Any]] = defaultdict(list)
    task_of: dict[int, TaskInstanceRow] = {}
    for row in await store.active_tis():
        tis_by_run[row.run_id].append(row)
        task_of[row.id] = row
    active = await store.active_runs()
    dag_of = {run.id: run.dag_id for run in active}
    attempts = await store.running_attempts()
    if on_found is not None:
        on_found(len(attempts))
    errors: dict[int, str] = {}  # ti id -> why its running attempt failed
    for attempt in attempts:
        _kill_leftover_worker(attempt)
        ti = task_of.get(attempt.ti_id)
        isolation = _isolation(runs, dag_of.get(ti.run_id), ti.task_id) if ti else ""
        error = errors[attempt.ti_id] = _error_for(isolation, bool(crash))
        if error != RESTARTED:
            assert ti is not None
            log.warning("%s.%s[run %d #%d]: %s", dag_of.get(ti.run_id), ti.task_id,
                        ti.run_id, attempt.try_number, error,
                        extra={"dag_id": dag_of.get(ti.run_id), "run_id": ti.run_id,
                               "task_id": ti.task_id, "try_number": attempt.try_number,
                               "attempt_id": attempt.id})
        batch.finish_attempt(attempt.id, success=False, error=error)
    xcoms = await store.active_xcoms()
    for run in active:
        if run.state == RunState.QUEUED:
            runs.queue(run)
        else:
            _recover_run(runs, batch, run, tis_by_run[run.id], xcoms, errors)
    await store.commit(batch)
    if attempts:
        log.warning("recovered %d attempt(s) left running by a previous daemon", len(attempts))
    if crash:
        crash_report_path(runs.settings.data_dir).unlink(missing_ok=True)


def _recover_run(runs: Runs, batch: Batch, run: RunRow, rows: list[Any],
                 xcoms: dict[int, Any], errors: dict[int, str]) -> None:
    dag = runs.dags.get(run.dag_id)
    if dag is None:
        _fail_orphan_run(batch, run, rows)
        return
    active = ActiveRun(run.id, dag, Graph.from_dag(dag), run.conf,
                       parse_date(run.logical_date), run_type=run.run_type)
    runs.adopt(active, started_at=run.started_at)
    load_rows(active, rows, xcoms)
    for task_id in dag.tasks.keys() - active.tis.keys():
        runs.add_ti(batch, active, task_id)
    for ti in list(active.tis.values()):
        if ti.task_id in active.children:
            continue  # a mapped task's own instance: its instances are resumed below
        _resume_ti(runs, batch, active, ti, errors)
    for children in active.children.values():
        for child in children:
            _resume_ti(runs, batch, active, child, errors)
    runs.reconsider(active, dag.tasks)


def _resume_ti(runs: Runs, batch: Batch, run: ActiveRun, ti: TI,
               errors: dict[int, str]) -> None:
    if ti.task_id not in run.dag.tasks:
        if ti.state not in TASK_TERMINAL:
            runs.set_ti(batch, run, ti, TaskState.FAILED, reason="task no longer in DAG")
    elif ti.state == TaskState.RUNNING:
        # The reason stays "daemon restarted": an interruption, retried by that rule.
        restarted = AttemptResult.failure(
            _stub_spec(run, ti), error=errors.get(ti.id, RESTARTED), reason=RESTARTED
        )
        runs.after_failure(batch, run, ti, restarted)
    elif ti.state == TaskState.QUEUED:
        runs.make_ready(run, ti)
    elif ti.state == TaskState.UP_FOR_RETRY:
        due = ti.next_attempt_at if ti.next_attempt_at is not None else runs.clock()
        runs.retry_at(run, ti, due)


def _stub_spec(run: ActiveRun, ti: TI) -> AttemptSpec:
    """Enough of a spec to describe an attempt that a dead daemon left behind."""
    context = Context(dag_id=run.dag.dag_id, task_id=ti.task_id, run_id=run.id,
                      try_number=ti.try_number, attempt_id=0)
    return AttemptSpec(
        attempt_id=0, ti_id=ti.id, run_id=run.id, dag_id=run.dag.dag_id, task_id=ti.task_id,
        try_number=ti.try_number, task=run.dag.tasks[ti.task_id], context=context,
        dag_file="", log_path="", timeout=None, isolation="process",
    )


def _kill_leftover_worker(attempt: AttemptRow) -> None:
    """A worker whose daemon died normally dies with it; make sure, by its pid's cmdline,
    and end what its task left in its process group.

    With the worker gone, a process group with its pid can only be the one it led (Linux
    gives no new process a pid that is still a group's id): the task's processes, which
    outlived it. A worker of this daemon's own pool (`--parent` this pid) is left alone.
    """
    if not attempt.pid:
        return
    try:
        cmdline = Path(f"/proc/{attempt.pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if not cmdline:  # gone, or a zombie (where PID 1 does not reap orphans)
        _kill_session_group(attempt.pid)
        return
    mine = f"--parent\0{os.getpid()}\0".encode()
    if b"dagd.executors.worker" in cmdline and mine not in cmdline:
        signal_group(attempt.pid, signal.SIGKILL)


def _kill_session_group(leader: int) -> None:
    """SIGKILL the processes whose process group and session are both `leader`'s pid:
    what a worker (a session leader) left behind. A group some other process leads
    since would have that process's own session."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 3 and int(fields[2]) == leader and int(fields[3]) == leader:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), signal.SIGKILL)


def _fail_orphan_run(batch: Batch, run: RunRow, rows: list[TaskInstanceRow]) -> None:
    for row in rows:
        state = TaskState(row.state)
        if state not in TASK_TERMINAL:
            batch.transition_ti(run_id=run.id, ti_id=row.id, frm=state, to=TaskState.FAILED,
                                try_number=row.try_number, reason="DAG is no longer defined")
    batch.transition_run(run.id, RunState.RUNNING, RunState.FAILED, "DAG is no longer defined",
                         dag_id=run.dag_id, run_type=run.run_type, conf=run.conf)


def load_rows(active: ActiveRun, rows: list[TaskInstanceRow], xcoms: dict[int, Any]) -> None:
    for row in sorted(rows, key=lambda r: (r.task_id, r.map_index)):
        ti = TI(row.id, active.id, row.task_id, TaskState(row.state), row.try_number,
                row.max_tries, row.map_index, row.next_attempt_at)
        if row.map_index >= 0:
            active.children.setdefault(row.task_id, []).append(ti)
            if row.id in xcoms:
                active.child_xcoms.setdefault(row.task_id, {})[row.map_index] = xcoms[row.id]
        else:
            active.tis[row.task_id] = ti
            if row.id in xcoms:
                active.xcoms[row.task_id] = xcoms[row.id]
        if ti.state not in TASK_TERMINAL:
            active.open += 1
