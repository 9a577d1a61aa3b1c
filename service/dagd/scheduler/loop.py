"""The scheduler loop: queued runs -> running runs -> ready task instances -> attempts.

The Engine keeps a working copy of the active runs in memory (rebuilt from the rows at
boot) and, each tick, turns what happened (finished attempts, due retries, new runs)
into one batch of state changes. The batch is committed before any attempt it starts
is handed to the executor. The loop sleeps until something happens or the next retry
is due: it never polls.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from anyio.abc import TaskStatus

from dagd.authoring.context import Context
from dagd.authoring.dag import DAG
from dagd.config import Settings
from dagd.errors import DagdError
from dagd.executors.base import XCOM_OPTIONS, AttemptResult, AttemptSpec
from dagd.executors.local import LocalExecutor
from dagd.executors.logs import attempt_log_path
from dagd.kinds.http import set_connections
from dagd.retry import INFRASTRUCTURE_REASONS
from dagd.scheduler.flow import to_skip
from dagd.scheduler.intake import Intake, Pending
from dagd.scheduler.model import TI, ActiveRun, States, parse_date
from dagd.scheduler.planner import Graph, plan, run_outcome
from dagd.scheduler.recovery import Recovery
from dagd.states import TASK_FAILED, TASK_TERMINAL, RunState, TaskState
from dagd.store import Batch, Store
from dagd.store.rows import RunRow

log = logging.getLogger(__name__)

# Attempts started per tick at most. Smaller ticks let the database thread commit one
# tick while the loop runs the attempts of the one before (two cores at work, not one).
DISPATCH_PER_TICK = 500
MAX_RETRY_AFTER = 3600.0


class Engine:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        executor: LocalExecutor | None = None,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        set_connections(settings.connections)  # for HttpTask(conn=...)
        self.executor = executor or LocalExecutor(
            tmp_dir=settings.data_dir / "tmp",
            log_max_bytes=settings.log_max_bytes,
            xcom_max_bytes=settings.xcom_max_bytes,
            on_pid=self._record_pid,
        )
        self.rand = rand
        self.clock = clock
        self.dags: dict[str, DAG] = {}
        self.paused: set[str] = set()
        self._queued: dict[str, deque[RunRow]] = defaultdict(deque)
        self._runs: dict[int, ActiveRun] = {}
        self._active_runs_by_dag: Counter[str] = Counter()
        self._ready: dict[str, deque[TI]] = defaultdict(deque)
        self._retry_heap: list[tuple[float, int, str, int]] = []
        self._running_total = 0
        self._running_by_dag: Counter[str] = Counter()
        self._results: list[AttemptResult] = []
        self._pids: list[tuple[int, int]] = []
        self._candidates: dict[int, set[str]] = defaultdict(set)
        self._finishing: set[int] = set()
        self._ended: list[int] = []
        self._ending: set[int] = set()
        self._more_ready = False
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._waiters: dict[int, anyio.Event] = {}
        self._wake = anyio.Event()
        self._stopping = False
        self._stopped = anyio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.intake = Intake(self)
        self._logs_dir = str(settings.logs_dir)  # a str: joined once per attempt
        self.serving = False
        self._scope_class: type[anyio.CancelScope] = anyio.CancelScope
        self._inbox: list[Pending] = []
        # Called with a run id once its final state is committed; must not block.
        self.run_end_listeners: list[Callable[[int], None]] = []
        # Called once a batch that queued notifications is committed (the outbox).
        self.notification_listeners: list[Callable[[], None]] = []

    # -- DAGs ----------------------------------------------------------------------------
    def set_dags(self, dags: dict[str, DAG], paused: set[str]) -> None:
        self.dags = dict(dags)
        self.paused = set(paused)
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        await self.store.set_paused(dag_id, paused)
        (self.paused.add if paused else self.paused.discard)(dag_id)
        self.wake()

    def _max_active_runs(self, dag: DAG) -> int:
        return dag.max_active_runs or self.settings.default_max_active_runs

    def _max_active_tasks(self, dag: DAG) -> int:
        return dag.max_active_tasks or self.settings.default_max_active_tasks

    # -- triggering ------------------------------------------------------------------
    async def trigger(
        self,
        dag_id: str,
        *,
        conf: Any = None,
        source: str = "api",
        logical_date: datetime | None = None,
    ) -> int:
        """A manual run: record the event and the run, commit both, then wake the loop."""
        return await self.intake.trigger(dag_id, conf=conf, source=source,
                                         logical_date=logical_date)

    def submit(self, items: list[Pending]) -> None:
        """Deliveries for the next tick to record (with their runs) in its transaction."""
        self._inbox.extend(items)
        self.wake()

    def enqueue(self, row: RunRow) -> None:
        """A run just committed as queued: start it when the limits allow."""
        self._queued[row.dag_id].append(row)
        self.wake()

    async def wait_for_run(self, run_id: int) -> str:
        """Wait until the run is final; return its state."""
        if run_id in self._runs or any(r.id == run_id for q in self._queued.values() for r in q):
            event = self._waiters.setdefault(run_id, anyio.Event())
            await event.wait()
        return (await self.store.get_run(run_id)).state

    async def boot(self) -> None:
        """Settle what a dead daemon left running and load the active runs. Before ready."""
        await Recovery(self).boot()

    # -- the loop --------------------------------------------------------------------
    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # The running backend's own CancelScope class: `anyio.CancelScope()` looks the
        # backend up on every call, a cost each attempt would pay.
        self._scope_class = type(anyio.CancelScope())
        self.serving = True
        task_status.started()
        try:
            while not (self._stopping and self._running_total == 0):
                await self._sleep()
                await self.tick()
        finally:
            with anyio.CancelScope(shield=True):
                # Cancelled from outside: stop what still runs and record it.
                self.interrupt()
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
                self.serving = False  # from now on the intake commits deliveries itself
                self._stopping = True  # the last tick records; it starts nothing
                await self.tick()
                self._stopped.set()

    def _spawn(self, spec: AttemptSpec) -> None:
        # A plain asyncio task, not a task-group child: starting one costs ~7 us against
        # ~45 us, which is most of the budget per no-op task. Structure is kept by hand:
        # each attempt runs inside its own anyio CancelScope (see _execute), serve()
        # cancels and awaits them all before it returns, and _execute never raises.
        task = asyncio.get_running_loop().create_task(self._execute(spec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sleep(self) -> None:
        if self._results or self._candidates or self._finishing or self._pids or self._inbox:
            return
        if self._more_ready and not self._stopping:
            return
        timeout = None
        if self._retry_heap and not self._stopping:
            timeout = max(self._retry_heap[0][0] - self.clock(), 0.0)
        with anyio.move_on_after(timeout):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def stop(self, grace: float) -> None:
        """Start no new attempts; give running ones `grace` seconds, then cancel them."""
        self._stopping = True
        self.wake()
        with anyio.move_on_after(grace):
            await self._stopped.wait()
        self.interrupt()
        with anyio.CancelScope(shield=True):
            await self._stopped.wait()

    def interrupt(self) -> None:
        """Cancel every running attempt now; each is recorded as interrupted."""
        for scope in list(self._scopes.values()):
            scope.cancel()

    async def tick(self) -> None:
        batch = self.store.batch()
        batch.now = self.clock()
        dispatch: list[AttemptSpec] = []
        inbox, self._inbox = self._inbox, []
        for item in inbox:
            row = item.record(batch, self.paused)
            if row is not None:
                self._queued[row.dag_id].append(row)
        self._apply_results(batch)
        for attempt_id, pid in self._pids:
            batch.set_attempt_pid(attempt_id, pid)
        self._pids = []
        self._release_retries(batch)
        if not self._stopping:
            self._start_runs(batch)
        self._plan(batch)
        if not self._stopping:
            self._fill_slots(batch, dispatch)
        self._finish_runs(batch)
        ended, self._ended = self._ended, []
        await self.store.commit(batch)
        self._after_commit(batch, inbox, dispatch, ended)

    def _after_commit(self, batch: Batch, inbox: list[Pending], dispatch: list[AttemptSpec],
                      ended: list[int]) -> None:
        """What a tick tells or starts, only once its batch is committed."""
        for item in inbox:
            item.done.set()
        if batch.rows["insert_notification"]:
            for wake_outbox in self.notification_listeners:
                wake_outbox()
        for spec in dispatch:
            self._spawn(spec)
        for run_id in ended:
            self._runs.pop(run_id, None)
            self._ending.discard(run_id)
            waiter = self._waiters.pop(run_id, None)
            if waiter is not None:
                waiter.set()
            for listener in self.run_end_listeners:
                listener(run_id)

    # -- tick steps ----------------------------------------------------------------------
    def _apply_results(self, batch: Batch) -> None:
        results, self._results = self._results, []
        for result in results:
            spec = result.spec
            self._running_total -= 1
            self._running_by_dag[spec.dag_id] -= 1
            run = self._runs[spec.run_id]
            ti = run.ti(spec.task_id, spec.map_index)
            skip: set[str] = set()
            if result.ok:
                value = orjson.loads(result.xcom) if result.xcom is not None else None
                skip, error = to_skip(spec.task, value)
                if error is not None:
                    result = AttemptResult.failure(spec, error=error)
            batch.finish_attempt(spec.attempt_id, success=result.ok, error=result.error)
            if not result.ok:
                self._after_failure(batch, run, ti, result)
                continue
            if result.xcom is not None:
                batch.put_xcom(ti.id, result.xcom)
                if ti.map_index >= 0:
                    run.child_xcoms.setdefault(ti.task_id, {})[ti.map_index] = value
                else:
                    run.xcoms[ti.task_id] = value
            self._set_ti(batch, run, ti, TaskState.SUCCESS)
            for task_id in sorted(skip):
                other = run.tis[task_id]
                if other.state == TaskState.SCHEDULED:
                    self._set_ti(batch, run, other, TaskState.SKIPPED,
                                 reason=f"skipped by {ti.task_id}")

    def _after_failure(self, batch: Batch, run: ActiveRun, ti: TI, result: AttemptResult) -> None:
        task = run.dag.tasks.get(ti.task_id)
        ref = f"{run.dag.dag_id}.{ti.task_id}[run {run.id} #{ti.try_number}]"
        policy = task.retry_policy if task is not None else None
        if policy is not None and policy.should_retry(
            ti.try_number, result.error_names, result.reason
        ):
            if result.reason in INFRASTRUCTURE_REASONS:
                due = batch.now
            else:
                # A server's Retry-After is a floor under the policy's own delay (capped
                # at an hour: a server asking for a day must not park the task that long).
                asked = min(result.retry_after or 0.0, MAX_RETRY_AFTER)
                delay = max(policy.delay(ti.try_number, self.rand), asked)
                due = batch.now + delay
            log.warning("%s failed (%s); retry in %.1fs", ref, result.error, due - batch.now)
            self._set_ti(batch, run, ti, TaskState.UP_FOR_RETRY, next_attempt_at=due,
                         reason=result.error)
            heapq.heappush(self._retry_heap, (due, run.id, ti.task_id, ti.map_index))
            self._notify(batch, run, "task_retry", ti, result.error)
        else:
            log.error("%s failed: %s", ref, result.error)
            self._set_ti(batch, run, ti, TaskState.FAILED, reason=result.error)
            self._notify(batch, run, "task_failed", ti, result.error)

    def _notify(self, batch: Batch, run: ActiveRun, event: str, ti: TI | None = None,
                error: str | None = None) -> None:
        """Queue a notification for each of the DAG's notifiers that wants this event."""
        for notifier in run.dag.notifiers:
            if event not in notifier.on:
                continue
            payload = {
                "dag_id": run.dag.dag_id, "run_id": run.id,
                "task_id": ti.task_id if ti else None,
                "try_number": ti.try_number if ti else None,
                "state": ti.state.value if ti else event.removeprefix("run_"),
                "error": error, "at": datetime.fromtimestamp(batch.now, UTC).isoformat(),
            }
            batch.queue_notification(dag_id=run.dag.dag_id, run_id=run.id,
                                     ti_id=ti.id if ti else None, notifier=notifier.name,
                                     event=event, payload=payload)

    def _release_retries(self, batch: Batch) -> None:
        while self._retry_heap and self._retry_heap[0][0] <= batch.now:
            _, run_id, task_id, map_index = heapq.heappop(self._retry_heap)
            run = self._runs.get(run_id)
            if run is None:
                continue
            ti = run.ti(task_id, map_index)
            if ti.state == TaskState.UP_FOR_RETRY:
                self._set_ti(batch, run, ti, TaskState.QUEUED, reason="retry delay passed")
                self._ready[run.dag.dag_id].append(ti)

    def _start_runs(self, batch: Batch) -> None:
        for dag_id, queue in self._queued.items():
            if not queue or dag_id in self.paused:
                continue
            dag = self.dags.get(dag_id)
            if dag is None:
                while queue:
                    row = queue.popleft()
                    batch.transition_run(row.id, RunState.QUEUED, RunState.FAILED,
                                         "DAG is not defined (see `dagd dags errors`)")
                    self._ended.append(row.id)
                continue
            room = self._max_active_runs(dag) - self._active_runs_by_dag[dag_id]
            while queue and room > 0:
                row = queue.popleft()
                room -= 1
                self._start_run(batch, dag, row)

    def _start_run(self, batch: Batch, dag: DAG, row: RunRow) -> None:
        batch.transition_run(row.id, RunState.QUEUED, RunState.RUNNING)
        run = ActiveRun(row.id, dag, Graph.from_dag(dag), row.conf,
                        parse_date(row.logical_date))
        self._runs[row.id] = run
        self._active_runs_by_dag[dag.dag_id] += 1
        for task_id in dag.tasks:
            self._add_ti(batch, run, task_id)
        self._candidates[row.id].update(run.graph.roots)
        if run.open == 0:
            self._finishing.add(row.id)
        log.info("%s[run %d] started", dag.dag_id, row.id)

    def _add_ti(self, batch: Batch, run: ActiveRun, task_id: str) -> None:
        task = run.dag.tasks[task_id]
        ti_id = batch.create_ti(run_id=run.id, task_id=task_id, max_tries=task.max_tries)
        run.tis[task_id] = TI(ti_id, run.id, task_id, TaskState.SCHEDULED, 0, task.max_tries)
        run.open += 1

    def _plan(self, batch: Batch) -> None:
        candidates, self._candidates = self._candidates, defaultdict(set)
        for run_id, task_ids in candidates.items():
            run = self._runs.get(run_id)
            if run is None:
                continue
            for task_id, new in plan(run.graph, States(run.tis), task_ids):
                ti = run.tis[task_id]
                self._set_ti(batch, run, ti, new, propagate=False)
                if new != TaskState.QUEUED:
                    continue
                if getattr(run.dag.tasks[task_id], "mapped", None) is not None:
                    self._expand(batch, run, ti)
                else:
                    self._ready[run.dag.dag_id].append(ti)

    def _expand(self, batch: Batch, run: ActiveRun, ti: TI) -> None:
        """A mapped task is ready: one instance per item, queued; none for no item."""
        task = run.dag.tasks[ti.task_id]
        upstream = {u: run.xcoms[u] for u in run.graph.upstream[ti.task_id] if u in run.xcoms}
        try:
            items = task.expand_items(upstream)  # type: ignore[attr-defined]
        except (DagdError, LookupError, TypeError) as exc:
            self._set_ti(batch, run, ti, TaskState.FAILED, reason=f"cannot expand: {exc}")
            return
        if not items:
            self._set_ti(batch, run, ti, TaskState.SKIPPED, reason="mapped over no item")
            return
        self._set_ti(batch, run, ti, TaskState.RUNNING,
                     reason=f"expanded into {len(items)} mapped instances")
        children = []
        for index in range(len(items)):
            child_id = batch.create_ti(run_id=run.id, task_id=ti.task_id,
                                       max_tries=task.max_tries, map_index=index)
            child = TI(child_id, run.id, ti.task_id, TaskState.SCHEDULED, 0, task.max_tries,
                       index)
            children.append(child)
            run.open += 1
            self._set_ti(batch, run, child, TaskState.QUEUED)
            self._ready[run.dag.dag_id].append(child)
        run.children[ti.task_id] = children

    def _child_ended(self, batch: Batch, run: ActiveRun, child: TI) -> None:
        """When every instance of a mapped task has ended, so has the task: success if
        none failed; its XCom is the list of their return values."""
        children = run.children[child.task_id]
        if any(c.state not in TASK_TERMINAL for c in children):
            return
        values = run.child_xcoms.get(child.task_id, {})
        collected = [values.get(i) for i in range(len(children))]
        run.xcoms[child.task_id] = collected
        parent = run.tis[child.task_id]
        batch.put_xcom(parent.id, orjson.dumps(collected, option=XCOM_OPTIONS).decode())
        failed = sum(1 for c in children if c.state in TASK_FAILED)
        if failed:
            self._set_ti(batch, run, parent, TaskState.FAILED,
                         reason=f"{failed} of {len(children)} mapped instances failed")
        else:
            self._set_ti(batch, run, parent, TaskState.SUCCESS)

    def _fill_slots(self, batch: Batch, dispatch: list[AttemptSpec]) -> None:
        slots = self.settings.parallelism - self._running_total
        free = min(slots, DISPATCH_PER_TICK)
        self._more_ready = False
        for dag_id, queue in self._ready.items():
            if free <= 0:
                # Capped by this tick's share, not by the limits: tick again at once.
                self._more_ready = slots > DISPATCH_PER_TICK and any(self._ready.values())
                return
            if not queue:
                continue
            dag = self.dags.get(dag_id)
            room = self._max_active_tasks(dag) if dag else 0
            room -= self._running_by_dag[dag_id]
            while queue and free > 0 and room > 0:
                ti = queue.popleft()
                run = self._runs.get(ti.run_id)
                if run is None or ti.state != TaskState.QUEUED:
                    continue
                dispatch.append(self._start_attempt(batch, run, ti))
                free -= 1
                room -= 1

    def _start_attempt(self, batch: Batch, run: ActiveRun, ti: TI) -> AttemptSpec:
        dag = run.dag
        task = dag.tasks[ti.task_id]
        ti.try_number += 1
        self._set_ti(batch, run, ti, TaskState.RUNNING)
        path = attempt_log_path(self._logs_dir, dag.dag_id, run.id, ti.task_id,
                                ti.try_number, ti.map_index)
        attempt_id = batch.start_attempt(ti_id=ti.id, try_number=ti.try_number,
                                         log_path=path)
        self._running_total += 1
        self._running_by_dag[dag.dag_id] += 1
        if run.params is None:  # the DAG's params, overridden by the run's conf
            run.params = {**dag.params, **{k: v for k, v in run.conf.items() if k in dag.params}}
        params = run.params
        upstream = {u: run.xcoms[u] for u in run.graph.upstream[ti.task_id] if u in run.xcoms}
        context = Context(
            dag_id=dag.dag_id, task_id=ti.task_id, run_id=run.id, try_number=ti.try_number,
            attempt_id=attempt_id, logical_date=run.logical_date, conf=run.conf,
            params=params, upstream=upstream, map_index=ti.map_index,
        )
        return AttemptSpec(
            attempt_id=attempt_id, ti_id=ti.id, run_id=run.id, dag_id=dag.dag_id,
            task_id=ti.task_id, try_number=ti.try_number, task=task, context=context,
            dag_file=dag.fileloc or "", log_path=path, timeout=task.execution_timeout,
            isolation=task.isolation or self.settings.default_isolation,
            map_index=ti.map_index,
        )

    def _finish_runs(self, batch: Batch) -> None:
        finishing, self._finishing = self._finishing, set()
        for run_id in finishing:
            # Kept in _runs until the final state is committed (wait_for_run looks there).
            run = self._runs.get(run_id)
            if run is None or run.id in self._ending:
                continue
            self._ending.add(run_id)
            outcome = run_outcome(ti.state for ti in run.tis.values())
            state = RunState.FAILED if outcome == TaskState.FAILED else RunState.SUCCESS
            batch.transition_run(run_id, RunState.RUNNING, state)
            self._notify(batch, run, f"run_{state.value}")
            self._active_runs_by_dag[run.dag.dag_id] -= 1
            self._ended.append(run_id)
            if self._queued.get(run.dag.dag_id):
                self.wake()  # a run slot is free: start the next queued run
            log.info("%s[run %d] %s", run.dag.dag_id, run_id, state.value)

    def _set_ti(
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
        batch.transition_ti(run_id=run.id, ti_id=ti.id, frm=ti.state, to=to,
                            try_number=ti.try_number, next_attempt_at=next_attempt_at,
                            reason=reason)
        ti.state = to
        if to in TASK_TERMINAL:
            run.open -= 1
            if ti.map_index >= 0:
                self._child_ended(batch, run, ti)
            elif run.open == 0:
                self._finishing.add(run.id)
            elif propagate:
                self._candidates[run.id].update(run.graph.downstream[ti.task_id])

    # -- attempts ----------------------------------------------------------------------
    def _record_pid(self, spec: AttemptSpec, pid: int) -> None:
        self._pids.append((spec.attempt_id, pid))
        self.wake()

    async def _execute(self, spec: AttemptSpec) -> None:
        result: AttemptResult | None = None
        with self._scope_class() as scope:
            self._scopes[spec.attempt_id] = scope
            try:
                result = await self.executor.execute(spec)
            except Exception as exc:  # a bug in an executor must not stop the daemon
                log.exception("%s: executor error", spec.ref)
                result = AttemptResult.failure(spec, exc, reason="executor error")
        self._scopes.pop(spec.attempt_id, None)
        if result is None or scope.cancelled_caught:
            result = AttemptResult.failure(
                spec, error="interrupted: the daemon stopped", reason="daemon stopped"
            )
        self._results.append(result)
        self.wake()


