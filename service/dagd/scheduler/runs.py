"""The scheduler's working copy of the active runs, and the tick's steps over it.

`Runs` owns, in memory, what the rows say about active runs (rebuilt from them at boot
by `recovery`): the queued runs per DAG, the running runs and their task instances, the
ready queues, the retry heap, the running counts, and which task instances must be
reconsidered. Each step writes its state changes into the tick's `Batch` and updates
the copy to match; nothing here awaits or does I/O, so the engine's loop stays a thin
async shell (`loop.Engine`) and the steps can be driven by plain sync code.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import orjson

from dagd.authoring.alerts import BUILTIN_EMAIL, emailed
from dagd.authoring.context import Context
from dagd.authoring.dag import DAG
from dagd.config import Settings
from dagd.errors import SKIP_TASK, DagdError
from dagd.executors.base import XCOM_OPTIONS, AttemptResult, AttemptSpec
from dagd.executors.logs import attempt_log_path
from dagd.retry import INFRASTRUCTURE_REASONS
from dagd.scheduler.flow import NOTHING, to_skip
from dagd.scheduler.model import TI, ActiveRun, States, parse_date
from dagd.scheduler.planner import Graph, plan, run_outcome
from dagd.states import TASK_FAILED, TASK_TERMINAL, RunState, TaskState
from dagd.store import Batch
from dagd.store.rows import RunRow

log = logging.getLogger(__name__)

# Attempts started per tick at most. Smaller ticks let the database thread commit one
# tick while the loop runs the attempts of the one before and plans the next (two cores
# at work, not one); more, smaller commits cost more than they save.
DISPATCH_PER_TICK = 500
MAX_RETRY_AFTER = 3600.0


def _ref(dag_id: str, run_id: int, task_id: str | None = None, try_number: int = 0) -> str:
    return f"{dag_id}.{task_id}[run {run_id} #{try_number}]" if task_id else \
        f"{dag_id}[run {run_id}]"


def _extra(dag_id: str, run_id: int, task_id: str | None = None,
           try_number: int | None = None) -> dict[str, Any]:
    return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "try_number": try_number}


def _context(dag_id: str, task_id: str, run_id: int, try_number: int, attempt_id: int,
             logical_date: datetime | None, conf: dict[str, Any], params: dict[str, Any],
             upstream: dict[str, Any], map_index: int) -> Context:
    """An attempt's Context, every field given. A frozen dataclass sets each field through
    object.__setattr__ (5 us an attempt, a tenth of the scheduler's own cost); filling its
    __dict__ at once makes the same object."""
    if not _FAST_CONTEXT:
        return Context(dag_id=dag_id, task_id=task_id, run_id=run_id, try_number=try_number,
                       attempt_id=attempt_id, logical_date=logical_date, conf=conf,
                       params=params, upstream=upstream, map_index=map_index)
    context = _new(Context)
    context.__dict__.update(dag_id=dag_id, task_id=task_id, run_id=run_id,
                            try_number=try_number, attempt_id=attempt_id,
                            logical_date=logical_date, conf=conf, params=params,
                            upstream=upstream, map_index=map_index)
    return context


_new = object.__new__
# Only while Context is a plain frozen dataclass of exactly these fields.
_FAST_CONTEXT = (not hasattr(Context, "__post_init__") and not hasattr(Context, "__slots__")
                 and [f.name for f in fields(Context)] == [
                     "dag_id", "task_id", "run_id", "try_number", "attempt_id",
                     "logical_date", "conf", "params", "upstream", "map_index"])


class Runs:
    def __init__(
        self,
        settings: Settings,
        *,
        rand: Callable[[], float],
        clock: Callable[[], float],
        wake: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.rand = rand
        self.clock = clock
        self.wake = wake
        self.dags: dict[str, DAG] = {}
        self.paused: set[str] = set()
        self.queued: dict[str, deque[RunRow]] = defaultdict(deque)
        self.active: dict[int, ActiveRun] = {}
        self.active_by_dag: Counter[str] = Counter()
        self.ready: dict[str, deque[TI]] = defaultdict(deque)
        self.retry_heap: list[tuple[float, int, str, int]] = []
        self.running_total = 0
        self.running_by_dag: Counter[str] = Counter()
        self.candidates: dict[int, set[str]] = defaultdict(set)
        self.finishing: set[int] = set()
        self.ended: list[int] = []
        self.ending: set[int] = set()
        self.more_ready = False
        # Attempts stopped (a person marked their task, their run timed out), with what
        # their row says; `to_stop`: those the engine is yet to stop, after the commit.
        self.stopped: dict[int, str] = {}
        self.to_stop: list[int] = []
        self.deadlines: list[tuple[float, int]] = []  # (due, run id): dagrun_timeout
        self.logs_dir = str(settings.logs_dir)  # a str: joined once per attempt
        self._graphs: dict[str, tuple[DAG, Graph]] = {}
        # Queued task instances of executor="dask" tasks, held out of the ready queues
        # while the Dask cluster cannot be reached (see `park_dask`).
        self.parked: list[TI] = []

    # -- what the loop asks ----------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Is there work for a tick right now (not counting new results or events)?"""
        return bool(self.candidates or self.finishing)

    def next_retry_at(self) -> float | None:
        """When the loop must wake next by itself: a retry due, a run's deadline."""
        due = self.retry_heap[0][0] if self.retry_heap else None
        if self.deadlines and (due is None or self.deadlines[0][0] < due):
            due = self.deadlines[0][0]
        return due

    def stop(self, attempt_id: int, error: str) -> None:
        """Stop a running attempt once this tick is committed; its row says `error`."""
        self.stopped[attempt_id] = error
        self.to_stop.append(attempt_id)

    def take_stops(self) -> list[int]:
        stops, self.to_stop = self.to_stop, []
        return stops

    def overdue(self, now: float) -> list[ActiveRun]:
        """The active runs past their DAG's dagrun_timeout (each given once)."""
        out = []
        while self.deadlines and self.deadlines[0][0] <= now:
            due, run_id = heapq.heappop(self.deadlines)
            run = self.active.get(run_id)
            if run is not None and run.deadline == due and run_id not in self.ending:
                out.append(run)
        return out

    def knows(self, run_id: int) -> bool:
        """Is the run active or queued (not yet final)?"""
        return run_id in self.active or any(
            r.id == run_id for q in self.queued.values() for r in q)

    def name_ti(self, run_id: int, ti_id: int) -> tuple[str | None, str | None, int]:
        """(dag_id, task_id, map_index) of a task instance of an active run, for the
        changes port."""
        run = self.active.get(run_id)
        if run is None:
            return (None, None, -1)
        task_id = run.task_of(ti_id)
        kids = run.children.get(task_id) if task_id is not None else None
        index = ti_id - kids[0].id if kids else -1  # mapped instances' ids run in order
        if kids and 0 <= index < len(kids) and kids[index].id == ti_id:
            return (run.dag.dag_id, task_id, index)
        return (run.dag.dag_id, task_id, -1)

    def take_ended(self) -> list[int]:
        ended, self.ended = self.ended, []
        return ended

    def forget(self, run_id: int) -> None:
        """The run's final state is committed: drop it from the working copy."""
        self.active.pop(run_id, None)
        self.ending.discard(run_id)

    def _max_active_runs(self, dag: DAG) -> int:
        return dag.max_active_runs or self.settings.default_max_active_runs

    def _max_active_tasks(self, dag: DAG) -> int:
        return dag.max_active_tasks or self.settings.default_max_active_tasks

    # -- verbs the steps and recovery share ------------------------------------------
    def set_dags(self, dags: dict[str, DAG]) -> None:
        """The DAGs just loaded, each with its graph built now rather than at its first
        run (a 10,000-task DAG's takes about 20 ms)."""
        self.dags = dict(dags)
        self._graphs = {dag_id: (dag, Graph.from_dag(dag)) for dag_id, dag in self.dags.items()}

    def graph(self, dag: DAG) -> Graph:
        """The DAG's graph, built once per loaded DAG (a reload brings new DAG objects)."""
        cached = self._graphs.get(dag.dag_id)
        if cached is None or cached[0] is not dag:
            cached = self._graphs[dag.dag_id] = (dag, Graph.from_dag(dag))
        return cached[1]

    def queue(self, row: RunRow) -> None:
        """A run committed as queued: start it when the limits allow."""
        self.queued[row.dag_id].append(row)

    def adopt(self, run: ActiveRun, *, started_at: float | None = None) -> None:
        """A run now running (started, or recovered from the rows), since `started_at`
        for its DAG's dagrun_timeout."""
        self.active[run.id] = run
        self.active_by_dag[run.dag.dag_id] += 1
        limit = run.dag.dagrun_timeout
        if limit is not None and started_at is not None:
            run.deadline = started_at + limit
            heapq.heappush(self.deadlines, (run.deadline, run.id))

    def add_ti(self, batch: Batch, run: ActiveRun, task_id: str) -> None:
        max_tries = run.dag.tasks[task_id].max_tries  # computed, not stored: read once
        ti_id = batch.create_ti(run_id=run.id, task_id=task_id, max_tries=max_tries)
        run.tis[task_id] = TI(ti_id, run.id, task_id, TaskState.SCHEDULED, 0, max_tries)
        run.open += 1

    def make_ready(self, run: ActiveRun, ti: TI) -> None:
        self.ready[run.dag.dag_id].append(ti)

    def retry_at(self, run: ActiveRun, ti: TI, due: float) -> None:
        heapq.heappush(self.retry_heap, (due, run.id, ti.task_id, ti.map_index))

    def reconsider(self, run: ActiveRun, task_ids: Any) -> None:
        """Ask the planner about these task instances at the next step."""
        self.candidates[run.id].update(task_ids)
        if run.open == 0:
            self.finishing.add(run.id)

    def set_ti(
        self,
        batch: Batch,
        run: ActiveRun,
        ti: TI,
        to: TaskState,
        *,
        next_attempt_at: float | None = None,
        reason: str | None = None,
        propagate: bool = True,
    ) -> None:
        batch.ti_change(run.id, ti.id, ti.state, to, ti.try_number, next_attempt_at, reason)
        ti.state = to
        if to in TASK_TERMINAL:
            run.open -= 1
            if ti.map_index >= 0:
                self._child_ended(batch, run, ti)
            elif run.open == 0:
                self.finishing.add(run.id)
            elif propagate:
                downstream = run.graph.downstream[ti.task_id]
                if downstream:
                    self.candidates[run.id].update(downstream)

    def after_failure(self, batch: Batch, run: ActiveRun, ti: TI, result: AttemptResult) -> None:
        """A failed attempt: up for retry if the policy says so, else failed."""
        task = run.dag.tasks.get(ti.task_id)
        ref = _ref(run.dag.dag_id, run.id, ti.task_id, ti.try_number)
        extra = _extra(run.dag.dag_id, run.id, ti.task_id, ti.try_number)
        policy = task.retry_policy if task is not None else None
        # A cleared task instance has its own tries again: count from its clearing.
        tries = ti.try_number - max(ti.max_tries - policy.max_tries, 0) if policy else 0
        if policy is not None and policy.should_retry(tries, result.error_names,
                                                      result.reason):
            if result.reason in INFRASTRUCTURE_REASONS:
                due = batch.now
            else:
                # A server's Retry-After is a floor under the policy's own delay (capped
                # at an hour: a server asking for a day must not park the task that long).
                asked = min(result.retry_after or 0.0, MAX_RETRY_AFTER)
                delay = max(policy.delay(tries, self.rand), asked)
                due = batch.now + delay
            log.warning("%s failed (%s); retry in %.1fs", ref, result.error, due - batch.now,
                        extra=extra)
            self.set_ti(batch, run, ti, TaskState.UP_FOR_RETRY, next_attempt_at=due,
                        reason=result.error)
            self.retry_at(run, ti, due)
            self._notify(batch, run, "task_retry", ti, result)
        else:
            log.error("%s failed: %s", ref, result.error, extra=extra)
            self.set_ti(batch, run, ti, TaskState.FAILED, reason=result.error)
            self._notify(batch, run, "task_failed", ti, result)

    def _notify(self, batch: Batch, run: ActiveRun, event: str, ti: TI | None = None,
                result: AttemptResult | None = None) -> None:
        """Queue a notification for each of the DAG's notifiers that wants this event,
        and the built-in email when the task's (or, for a run, the DAG's) settings ask."""
        task = run.dag.tasks.get(ti.task_id) if ti else None
        emailed_as, to = emailed(run.dag, task, event, ti.try_number if ti else 0)
        wanted = [n.name for n in run.dag.notifiers if event in n.on]
        if not wanted and not to:
            return
        names = result.error_names if result is not None else []
        payload = {
            "dag_id": run.dag.dag_id, "run_id": run.id,
            "task_id": ti.task_id if ti else None,
            "try_number": ti.try_number if ti else None,
            "state": ti.state.value if ti else event.removeprefix("run_"),
            "error": result.error if result is not None else None,
            "at": datetime.fromtimestamp(batch.now, UTC).isoformat(),
            "map_index": ti.map_index if ti else None,
            "max_tries": ti.max_tries if ti else None,
            "error_type": names[0].removeprefix("builtins.") if names else None,
        }
        for name in wanted:
            batch.queue_notification(dag_id=run.dag.dag_id, run_id=run.id,
                                     ti_id=ti.id if ti else None, notifier=name,
                                     event=event, payload=payload)
        if to:
            batch.queue_notification(dag_id=run.dag.dag_id, run_id=run.id,
                                     ti_id=ti.id if ti else None, notifier=BUILTIN_EMAIL,
                                     event=emailed_as, payload={**payload, "to": list(to)})

    # -- the tick's steps, in order ----------------------------------------------------
    def apply_result(self, batch: Batch, result: AttemptResult) -> None:
        """An attempt ended: record it, its XCom, and what its task instance becomes."""
        spec = result.spec
        self.running_total -= 1
        self.running_by_dag[spec.dag_id] -= 1
        run = self.active.get(spec.run_id)
        ti = run.ti(spec.task_id, spec.map_index) if run is not None else None
        if ti is None or ti.attempt_id != spec.attempt_id or ti.state != TaskState.RUNNING:
            # A person marked it meanwhile: the attempt was stopped, its end is all.
            batch.finish_attempt(spec.attempt_id, success=False,
                                 error=self.stopped.pop(spec.attempt_id, "stopped"),
                                 ti_id=spec.ti_id, run_id=spec.run_id,
                                 try_number=spec.try_number)
            return
        assert run is not None
        skip: AbstractSet[str] = NOTHING
        if result.ok:
            value = orjson.loads(result.xcom) if result.xcom is not None else None
            skip, error = to_skip(spec.task, value)
            if error is not None:
                result = AttemptResult.failure(spec, error=error)
        batch.finish_attempt(spec.attempt_id, success=result.ok, error=result.error,
                             ti_id=spec.ti_id, run_id=spec.run_id, try_number=spec.try_number)
        if not result.ok:
            if SKIP_TASK in result.error_names:  # the task skipped itself (SkipTask)
                self.set_ti(batch, run, ti, TaskState.SKIPPED, reason=result.error)
            else:
                self.after_failure(batch, run, ti, result)
            return
        if result.xcom is not None:
            batch.put_xcom(ti.id, result.xcom)
            if ti.map_index >= 0:
                run.child_xcoms.setdefault(ti.task_id, {})[ti.map_index] = value
            else:
                run.xcoms[ti.task_id] = value
        self.set_ti(batch, run, ti, TaskState.SUCCESS)
        if getattr(spec.task, "email", None):
            self._notify(batch, run, "task_success", ti)
        for task_id in sorted(skip):
            other = run.tis[task_id]
            if other.state == TaskState.SCHEDULED:
                self.set_ti(batch, run, other, TaskState.SKIPPED,
                            reason=f"skipped by {ti.task_id}")

    def release_retries(self, batch: Batch) -> None:
        while self.retry_heap and self.retry_heap[0][0] <= batch.now:
            _, run_id, task_id, map_index = heapq.heappop(self.retry_heap)
            run = self.active.get(run_id)
            if run is None:
                continue
            ti = run.ti(task_id, map_index)
            if ti.state == TaskState.UP_FOR_RETRY:
                self.set_ti(batch, run, ti, TaskState.QUEUED, reason="retry delay passed")
                self.make_ready(run, ti)

    def start_runs(self, batch: Batch) -> None:
        for dag_id, queue in self.queued.items():
            if not queue or dag_id in self.paused:
                continue
            dag = self.dags.get(dag_id)
            if dag is None:
                while queue:
                    row = queue.popleft()
                    batch.transition_run(row.id, RunState.QUEUED, RunState.FAILED,
                                         "DAG is not defined (see `dagd dags errors`)",
                                         dag_id=dag_id, run_type=row.run_type, conf=row.conf)
                    self.ended.append(row.id)
                continue
            room = self._max_active_runs(dag) - self.active_by_dag[dag_id]
            while queue and room > 0:
                row = queue.popleft()
                room -= 1
                self._start_run(batch, dag, row)

    def _start_run(self, batch: Batch, dag: DAG, row: RunRow) -> None:
        batch.transition_run(row.id, RunState.QUEUED, RunState.RUNNING, dag_id=dag.dag_id)
        run = ActiveRun(row.id, dag, self.graph(dag), row.conf,
                        parse_date(row.logical_date), run_type=row.run_type)
        self.adopt(run, started_at=batch.now)
        for task_id in dag.tasks:
            self.add_ti(batch, run, task_id)
        self.reconsider(run, run.graph.roots)
        log.info("%s started", _ref(dag.dag_id, row.id), extra=_extra(dag.dag_id, row.id))

    def plan(self, batch: Batch) -> None:
        candidates, self.candidates = self.candidates, defaultdict(set)
        for run_id, task_ids in candidates.items():
            run = self.active.get(run_id)
            if run is None:
                continue
            tis = run.tis
            # In the DAG's order (that of the task instances' ids): the ready queue then
            # starts neighbours together, and a tick's writes touch a few pages of the
            # table, not a page for each task instance.
            ordered = sorted(task_ids, key=run.graph.position.__getitem__) \
                if len(task_ids) > 1 else task_ids
            for task_id, new in plan(run.graph, States(tis), ordered):
                ti = tis[task_id]
                self.set_ti(batch, run, ti, new, propagate=False)
                if new != TaskState.QUEUED:
                    continue
                if getattr(run.dag.tasks[task_id], "mapped", None) is not None:
                    self._expand(batch, run, ti)
                else:
                    self.make_ready(run, ti)

    def _expand(self, batch: Batch, run: ActiveRun, ti: TI) -> None:
        """A mapped task is ready: one instance per item, queued; none for no item."""
        task = run.dag.tasks[ti.task_id]
        upstream = {u: run.xcoms[u] for u in run.graph.upstream[ti.task_id] if u in run.xcoms}
        try:
            items = task.expand_items(upstream)  # type: ignore[attr-defined]
        except (DagdError, LookupError, TypeError) as exc:
            self.set_ti(batch, run, ti, TaskState.FAILED, reason=f"cannot expand: {exc}")
            return
        if not items:
            self.set_ti(batch, run, ti, TaskState.SKIPPED, reason="mapped over no item")
            return
        self.set_ti(batch, run, ti, TaskState.RUNNING,
                    reason=f"expanded into {len(items)} mapped instances")
        children = []
        for index in range(len(items)):
            child_id = batch.create_ti(run_id=run.id, task_id=ti.task_id,
                                       max_tries=task.max_tries, map_index=index)
            child = TI(child_id, run.id, ti.task_id, TaskState.SCHEDULED, 0, task.max_tries,
                       index)
            children.append(child)
            run.open += 1
            self.set_ti(batch, run, child, TaskState.QUEUED)
            self.make_ready(run, child)
        run.children[ti.task_id] = children

    def _child_ended(self, batch: Batch, run: ActiveRun, child: TI) -> None:
        """When every instance of a mapped task has ended, so has the task: success if
        none failed; its XCom is the list of their return values."""
        children = run.children[child.task_id]
        # How many are still open, counted once and then kept (each ends only once):
        # asking every instance at each end would cost n squared for n instances.
        left = run.children_open.get(child.task_id)
        if left is None:
            left = sum(1 for c in children if c.state not in TASK_TERMINAL)
        else:
            left -= 1
        run.children_open[child.task_id] = left
        if left:
            return
        values = run.child_xcoms.get(child.task_id, {})
        collected = [values.get(i) for i in range(len(children))]
        run.xcoms[child.task_id] = collected
        parent = run.tis[child.task_id]
        batch.put_xcom(parent.id, orjson.dumps(collected, option=XCOM_OPTIONS).decode())
        failed = sum(1 for c in children if c.state in TASK_FAILED)
        if failed:
            self.set_ti(batch, run, parent, TaskState.FAILED,
                        reason=f"{failed} of {len(children)} mapped instances failed")
        else:
            self.set_ti(batch, run, parent, TaskState.SUCCESS)

    def park_dask(self, hold: bool) -> None:
        """While the Dask cluster cannot be reached (`hold`), the ready task instances
        of executor="dask" tasks wait out of the ready queues, still queued, and local
        ones start as ever; once it is back they are first in line again."""
        if not hold:
            for ti in reversed(self.parked):
                run = self.active.get(ti.run_id)
                if run is not None:
                    self.ready[run.dag.dag_id].appendleft(ti)
            self.parked = []
            return
        for dag_id, queue in self.ready.items():
            dag = self.dags.get(dag_id)
            if not queue or dag is None or not dag.tasks_on_dask:
                continue
            kept: deque[TI] = deque()
            for ti in queue:
                task = dag.tasks.get(ti.task_id)
                (self.parked if task is not None and task.executor == "dask" else kept
                 ).append(ti)
            self.ready[dag_id] = kept

    def fill_slots(self, batch: Batch, dispatch: list[AttemptSpec]) -> None:
        slots = self.settings.parallelism - self.running_total
        share = DISPATCH_PER_TICK
        free = min(slots, share)
        for dag_id, queue in self.ready.items():
            if free <= 0:
                break
            if not queue:
                continue
            dag = self.dags.get(dag_id)
            room = self._max_active_tasks(dag) if dag else 0
            room -= self.running_by_dag[dag_id]
            while queue and free > 0 and room > 0:
                ti = queue.popleft()
                run = self.active.get(ti.run_id)
                if run is None or ti.state != TaskState.QUEUED:
                    continue
                dispatch.append(self._start_attempt(batch, run, ti))
                free -= 1
                room -= 1
        # Capped by this tick's share, not by the limits: tick again at once.
        self.more_ready = free <= 0 and slots > share and any(self.ready.values())

    def _start_attempt(self, batch: Batch, run: ActiveRun, ti: TI) -> AttemptSpec:
        dag = run.dag
        task = dag.tasks[ti.task_id]
        ti.try_number += 1
        self.set_ti(batch, run, ti, TaskState.RUNNING)
        path = attempt_log_path(self.logs_dir, dag.dag_id, run.id, ti.task_id,
                                ti.try_number, ti.map_index)
        attempt_id = ti.attempt_id = batch.start_attempt(ti_id=ti.id,
                                                         try_number=ti.try_number,
                                                         log_path=path)
        self.running_total += 1
        self.running_by_dag[dag.dag_id] += 1
        if run.params is None:  # the DAG's params, overridden by the run's conf
            run.params = {**dag.params, **{k: v for k, v in run.conf.items() if k in dag.params}}
        params = run.params
        xcoms = run.xcoms
        sources = task.xcom_sources or run.graph.upstream[ti.task_id]
        upstream = {u: xcoms[u] for u in sources if u in xcoms}
        context = _context(dag.dag_id, ti.task_id, run.id, ti.try_number, attempt_id,
                           run.logical_date, run.conf, params, upstream, ti.map_index)
        return AttemptSpec(
            attempt_id=attempt_id, ti_id=ti.id, run_id=run.id, dag_id=dag.dag_id,
            task_id=ti.task_id, try_number=ti.try_number, task=task, context=context,
            dag_file=dag.fileloc or "", log_path=path, timeout=task.execution_timeout,
            isolation=task.isolation or self.settings.default_isolation,
            map_index=ti.map_index,
        )

    def finish_runs(self, batch: Batch) -> None:
        finishing, self.finishing = self.finishing, set()
        for run_id in finishing:
            # Kept in `active` until the final state is committed (see `forget`).
            run = self.active.get(run_id)
            if run is None or run.id in self.ending:
                continue
            self.ending.add(run_id)
            if run.forced is not None:  # marked by a person: no alert for it
                state = run.forced
                why = run.forced_reason or f"marked {state} by a person"
                batch.transition_run(run_id, RunState.RUNNING, state, why,
                                     dag_id=run.dag.dag_id, run_type=run.run_type,
                                     conf=run.conf, by_user=True)
            else:
                outcome = run_outcome(ti.state for ti in run.tis.values())
                state = RunState.FAILED if outcome == TaskState.FAILED else RunState.SUCCESS
                batch.transition_run(run_id, RunState.RUNNING, state, dag_id=run.dag.dag_id,
                                     run_type=run.run_type, conf=run.conf)
                self._notify(batch, run, f"run_{state.value}")
            self.active_by_dag[run.dag.dag_id] -= 1
            self.ended.append(run_id)
            if self.queued.get(run.dag.dag_id):
                self.wake()  # a run slot is free: start the next queued run
            log.info("%s %s", _ref(run.dag.dag_id, run_id), state.value,
                     extra=_extra(run.dag.dag_id, run_id))
