"""The scheduler loop: the async shell around the working copy of the active runs.

Each tick turns what happened (finished attempts, due retries, new deliveries) into one
batch of state changes through the steps of `Runs`, commits it, and only then starts
the attempts it decided on, wakes whoever waits, and publishes the committed changes
on the changes port. The loop sleeps until something happens or the next retry is
due: it never polls.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from anyio.abc import TaskStatus

from dagd.authoring.dag import DAG
from dagd.changes import Changes
from dagd.config import Settings
from dagd.errors import DagdError, StateError, StorageUnavailable
from dagd.executors.base import AttemptResult, AttemptSpec
from dagd.executors.dask import DaskExecutor
from dagd.executors.local import LocalExecutor
from dagd.executors.logs import configured_secrets, mask_text
from dagd.executors.pool import PoolLimits
from dagd.retry import RetryPolicy
from dagd.scheduler import commands, recovery
from dagd.scheduler.intake import Intake, Pending
from dagd.scheduler.retention import Holds
from dagd.scheduler.runs import Runs
from dagd.store import Batch, Store
from dagd.store.rows import RunRow

log = logging.getLogger(__name__)

ACT_TRIES = 5  # a person's action, read again at most this often while its run moves on
# At the stop, once the grace period is over: seconds an attempt's processes get between
# SIGTERM and SIGKILL, and then until an attempt that still runs (an async task that
# ignores its cancellation) is abandoned, recorded as interrupted.
STOP_KILL = 0.75
STOP_ABANDON = 0.25
# Seconds at most between a worker taking an attempt and its pid written (see
# `_record_pid`).
PID_RECORD_DELAY = 0.05


@dataclass
class _Action:
    """A person's action (clear, mark) for the next tick to apply; its answer (or
    refusal) is given once that tick's batch is committed."""

    apply: Callable[[Batch], Any]
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None

    def run(self, batch: Batch) -> None:
        try:
            self.result = self.apply(batch)
        except (DagdError, commands.Again) as exc:  # checked before anything is written
            self.error = exc

# A tick that cannot be committed is tried again after 0.25 s, doubling to 5 s.
COMMIT_BACKOFF = RetryPolicy.build(retries=1_000_000, retry_delay=0.25,
                                   retry_exponential_backoff=True, max_retry_delay=5.0)


def settle_heap() -> None:
    """After DAGs (re)load: collect what the old ones left, then move every live object
    out of the collector's sight. The DAGs, the modules and the daemon's own objects
    live as long as the process; a full collection that walks them all again and again
    while a big run allocates its rows cost 16 to 31% of the scheduler's time."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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
        # The pool's limits follow the settings (see `configure`) unless given one.
        self._pool_of_settings = executor is None
        self.executor = executor or LocalExecutor(
            log_max_bytes=settings.log_max_bytes,
            xcom_max_bytes=settings.xcom_max_bytes,
            on_pid=self._record_pid,
            limits=PoolLimits.from_settings(settings),
        )
        if executor is None:  # the config's memory limit, for tasks that set none
            self.executor.default_memory_limit = settings.default_memory_limit
        if executor is None and settings.dask_address:  # [executors.dask]
            self.executor.dask = DaskExecutor(settings, on_worker=self._record_worker,
                                              on_change=self.wake)
        self.rand = rand
        self.clock = clock
        self.runs = Runs(settings, rand=rand, clock=clock, wake=self.wake)
        # The changes port: committed changes, for whoever subscribes.
        self.changes = Changes()
        self._results: list[AttemptResult] = []
        self._pids: list[tuple[int, int]] = []
        self._pid_timer: asyncio.TimerHandle | None = None
        self._workers: list[tuple[int, str]] = []  # (attempt id, Dask worker address)
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._in_loop: dict[int, asyncio.Task[None]] = {}  # attempt id -> its task
        self._waiters: dict[int, anyio.Event] = {}
        self._wake = anyio.Event()
        self._stopping = False
        self._stop_deadline: float | None = None
        self._abandoned = False  # stopped with a tick that could not be committed
        self._stopped = anyio.Event()
        self._tasks: dict[asyncio.Task[None], AttemptSpec] = {}
        # At the stop: when the work still running is abandoned (see `_await_attempts`),
        # and the attempts that were (refs): the daemon names them and exits anyway.
        self._abandon_at: float | None = None
        self.abandoned_attempts: list[str] = []
        # Once stopping (see `stop`): when its grace period ends. The web side refuses
        # new work from then on (dagd.web.drain), until the server is closed.
        self.drain_until: float | None = None
        # The last tick's commit and what it then starts and tells, while the next tick
        # is planned (see `tick`).
        self._inflight: asyncio.Task[None] | None = None
        # The events port: every trigger delivers through it.
        self.intake = Intake(self)
        # Runs a person's action works on, and runs being pruned ([retention]).
        self.holds = Holds()
        self.serving = False
        # Why the database cannot be written now (a full disk), or None: while set, new
        # events are refused (503) and /api/v1/health answers 503 with it.
        self.unhealthy: str | None = None
        self._scope_class: type[anyio.CancelScope] = anyio.CancelScope
        self._inbox: list[Pending] = []
        self._actions: list[_Action] = []
        # Called once a batch that queued notifications is committed (the outbox).
        self.notification_listeners: list[Callable[[], None]] = []
        # Told each commit's duration in seconds (the metrics), when set.
        self.on_commit: Callable[[float], None] | None = None

    # -- DAGs ----------------------------------------------------------------------------
    @property
    def dags(self) -> dict[str, DAG]:
        return self.runs.dags

    @property
    def paused(self) -> set[str]:
        return self.runs.paused

    def set_dags(self, dags: dict[str, DAG], paused: set[str]) -> None:
        if self.runs.dags:  # a reload: the helper modules the workers hold may be stale
            self.executor.recycle()
        self.runs.set_dags(dags)
        self.runs.paused = set(paused)
        settle_heap()
        self.wake()

    def configure(self, settings: Settings) -> None:
        """Settings reloaded (SIGHUP): the limits and defaults hold from the next tick.
        The pool follows a new parallelism (when [workers] max_size is 0); the rest
        of what the worker pool and the logs were built with waits for a restart."""
        self.settings = self.runs.settings = settings
        self.executor.default_memory_limit = settings.default_memory_limit
        if self._pool_of_settings:  # [workers] max_size = 0 is core.parallelism, now
            self.executor.pool.set_limits(PoolLimits.from_settings(settings))
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        await self.store.set_paused(dag_id, paused)
        (self.runs.paused.add if paused else self.runs.paused.discard)(dag_id)
        self.wake()

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
        self.runs.queue(row)
        self.wake()

    async def wait_for_run(self, run_id: int) -> str:
        """Wait until the run is final; return its state."""
        if self.runs.knows(run_id):
            event = self._waiters.setdefault(run_id, anyio.Event())
            await event.wait()
        return (await self.store.get_run(run_id)).state

    # -- a person's actions: the UI's and API's clear and mark -----------------------
    async def clear(self, run_id: int, task_id: str, *, map_index: int = -1,
                    downstream: bool = False) -> list[str]:
        """Run a task instance (and, with `downstream`, the tasks after it) again; the
        task ids cleared, once committed. See `commands.clear`."""
        cleared: list[str] = await self._act(run_id, lambda batch, rows: commands.clear(
            self.runs, batch, rows, task_id=task_id, map_index=map_index,
            downstream=downstream))
        return cleared

    async def mark_task(self, run_id: int, task_id: str, state: str, *,
                        map_index: int = -1) -> None:
        """End a task instance as `state` (success or failed), stopping its attempt."""
        await self._act(run_id, lambda batch, rows: commands.mark_task(
            self.runs, batch, rows, task_id=task_id, map_index=map_index, state=state))

    async def mark_run(self, run_id: int, state: str) -> None:
        """End a run as `state` (success or failed), and its unfinished tasks with it."""
        await self._act(run_id, lambda batch, rows: commands.mark_run(
            self.runs, batch, rows, state=state))

    async def _act(self, run_id: int,
                   apply: Callable[[Batch, commands.Rows], Any]) -> Any:
        if not self.serving or self._stopping:
            raise StateError("the scheduler is not running (the daemon is starting or "
                             "stopping): try again")
        with self.holds.acting_on(run_id):  # not pruned while this works on it
            for _ in range(ACT_TRIES):
                rows = await self._rows(run_id)
                action = _Action(lambda batch, rows=rows: apply(batch, rows))  # type: ignore[misc]
                self._actions.append(action)
                self.wake()
                await action.done.wait()
                if isinstance(action.error, commands.Again):  # the run moved on: read again
                    if self.runs.knows(run_id):
                        await self.wait_for_run(run_id)
                    continue
                if action.error is not None:
                    raise action.error
                return action.result
        raise StateError(f"run {run_id} kept changing while this was asked: try again")

    async def _rows(self, run_id: int) -> commands.Rows:
        run = await self.store.get_run(run_id)
        tis = await self.store.list_tis(run_id)
        xcoms = {}
        for ti in tis:  # what the tasks returned, for the tasks after them
            value = await self.store.get_xcom(ti.id) if ti.state == "success" else None
            if value is not None:
                xcoms[ti.id] = value
        return commands.Rows(run, tis, xcoms)

    async def boot(self, *, on_found: Callable[[int], object] | None = None) -> None:
        """Settle what a dead daemon left running and load the active runs. Before ready.
        `on_found`: told how many attempts were left running (for systemd's STATUS)."""
        if self.executor.dask is not None:  # what they left on the cluster is released
            left = await self.store.running_attempts()
            self.executor.dask.release([a.id for a in left])
        await recovery.boot(self.store, self.runs, on_found=on_found)

    # -- the loop --------------------------------------------------------------------
    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # The running backend's own CancelScope class: `anyio.CancelScope()` looks the
        # backend up on every call, a cost each attempt would pay.
        self._scope_class = type(anyio.CancelScope())
        self.serving = True
        self.executor.start()  # the worker pool, in the background
        task_status.started()
        try:
            # Stopping, the loop ends once nothing runs, or once what runs is interrupted:
            # the end below waits for it (bounded) and records it in one last tick.
            while not (self._stopping and (self.runs.running_total == 0 or self._abandoned
                                           or self._abandon_at is not None)):
                await self._sleep()
                await self.tick()
        finally:
            with anyio.CancelScope(shield=True):
                # Cancelled from outside: stop what still runs and record it.
                self.interrupt()
                await self._await_attempts()
                self.serving = False  # from now on the intake commits deliveries itself
                self._stopping = True  # the last tick records; it starts nothing
                await self.tick()
                await self.executor.aclose()
                self.executor.stop_by(None)
                self._stopped.set()

    async def _await_attempts(self) -> None:
        """Wait for the interrupted attempts to end, up to `_abandon_at`; one still
        running then is abandoned (recorded as interrupted, named in `abandoned_attempts`)."""
        while self._tasks:
            left = (self._abandon_at or 0.0) - time.monotonic()
            if left <= 0:
                for task, spec in list(self._tasks.items()):
                    log.warning("%s: still running %.1fs after its cancellation; abandoned "
                                "(it ends with the process)", spec.ref,
                                STOP_KILL + STOP_ABANDON, extra=spec.log_extra)
                    self.abandoned_attempts.append(spec.ref)
                    self._results.append(AttemptResult.failure(
                        spec, error="interrupted: the daemon stopped", reason="daemon stopped"))
                    task.remove_done_callback(self._tasks.pop)
                self._tasks.clear()
                self._in_loop.clear()
                self._scopes.clear()
                return
            # Again and again: a task may have swallowed one cancellation.
            await asyncio.wait(set(self._tasks), timeout=min(left, 0.25))
            self.interrupt()

    def _spawn(self, spec: AttemptSpec) -> None:
        # A plain asyncio task, not a task-group child: starting one costs ~7 us against
        # ~45 us, which is most of the budget per no-op task. Structure is kept by hand:
        # an attempt in the loop is cancelled as the asyncio task it is, any other one
        # runs inside its own anyio CancelScope (see _execute); serve() cancels and
        # awaits them all before it returns, and _execute never raises.
        in_loop = spec.task.runs_in_loop
        task = asyncio.get_running_loop().create_task(
            self._execute_in_loop(spec) if in_loop else self._execute(spec))
        self._tasks[task] = spec
        task.add_done_callback(self._tasks.pop)
        if in_loop:
            self._in_loop[spec.attempt_id] = task

    async def _sleep(self) -> None:
        if self._results or self.runs.pending or self._workers or self._inbox:
            return
        if self.runs.more_ready and not self._stopping:
            return
        timeout = None
        due = self.runs.next_retry_at()
        if due is not None and not self._stopping:
            timeout = max(due - self.clock(), 0.0)
        with anyio.move_on_after(timeout):
            await self._wake.wait()
        self._wake = anyio.Event()

    async def stop(self, grace: float) -> None:
        """Start no new attempts; give running ones `grace` seconds, then cancel them."""
        self._stopping = True
        self._stop_deadline = self.drain_until = time.monotonic() + grace
        self.wake()
        with anyio.move_on_after(grace):
            await self._stopped.wait()
        if not self._stopped.is_set():
            self.interrupt()
        with anyio.CancelScope(shield=True):
            await self._stopped.wait()

    def interrupt(self) -> None:
        """Cancel every running attempt now; each is recorded as interrupted. Their
        processes get STOP_KILL seconds from SIGTERM to SIGKILL, and what still runs
        STOP_ABANDON seconds later is abandoned: the stop's end is bounded."""
        if self._abandon_at is None:
            kill_by = time.monotonic() + STOP_KILL
            self.executor.stop_by(kill_by)
            self._abandon_at = kill_by + STOP_ABANDON
            self.wake()
        for scope in list(self._scopes.values()):
            scope.cancel()
        for task in list(self._in_loop.values()):
            task.cancel()

    async def tick(self) -> None:
        """Plan one batch from what happened, then hand it to the store and return: the
        next tick is planned while this one's commit is in flight. Commits stay in
        order (a tick first waits for the one before to be committed and acted on), and
        what a batch starts or tells (attempts, 202s, waiters, the changes port) waits
        for its own commit, so nothing is acted on before it is durable."""
        if self._abandoned:  # the database could not be written at the stop: nothing more
            return
        runs = self.runs
        batch = self.store.batch()
        batch.now = self.clock()
        dispatch: list[AttemptSpec] = []
        inbox, self._inbox = self._inbox, []
        for item in inbox:
            row = item.record(batch, runs.paused)
            if row is not None:
                runs.queue(row)
        results, self._results = self._results, []
        for result in self._masked(results):
            runs.apply_result(batch, result)
        self._record_places(batch)
        actions, self._actions = self._actions, []
        self._act_and_expire(batch, actions)
        runs.release_retries(batch)
        if not self._stopping:
            runs.start_runs(batch)
        runs.plan(batch)
        if not self._stopping:
            # While the Dask cluster cannot be reached, its tasks wait queued.
            runs.park_dask(self.executor.dask_problem is not None)
            runs.fill_slots(batch, dispatch)
        runs.finish_runs(batch)
        ended = runs.take_ended()
        stops = runs.take_stops()
        if batch or inbox or dispatch or ended or actions:
            await self._settle()
            if self._abandoned:
                self._refuse(actions)
                return
            self._inflight = asyncio.get_running_loop().create_task(
                self._commit_then_act(batch, inbox, dispatch, ended, actions, stops))
        if self._stopping:  # the last ticks: each one committed before it returns
            await self._settle()

    def _masked(self, results: list[AttemptResult]) -> list[AttemptResult]:
        """The results, with the configured secrets masked in their errors: an error is
        written to the database, served by the API and the UI, logged and emailed."""
        if any(r.error for r in results):
            secrets = configured_secrets(self.settings, self.dags.values())
            for result in results:
                if result.error and secrets:
                    result.error = mask_text(result.error, secrets)
        return results

    def _act_and_expire(self, batch: Batch, actions: list[_Action]) -> None:
        """A tick's step: people's actions (clear, mark), then the runs past their
        dagrun_timeout."""
        for action in actions:
            action.run(batch)
        if self.runs.deadlines:
            commands.expire(self.runs, batch)

    async def _settle(self) -> None:
        """Wait until the batch in flight is committed and acted on (its error, if any,
        raised here once). Cancelling the wait does not cancel the commit."""
        inflight = self._inflight
        if inflight is None:
            return
        try:
            await asyncio.shield(inflight)
        finally:
            if inflight.done():
                self._inflight = None

    async def _commit_then_act(self, batch: Batch, inbox: list[Pending],
                               dispatch: list[AttemptSpec], ended: list[int],
                               actions: list[_Action], stops: list[int]) -> None:
        if await self._commit(batch):
            self._after_commit(batch, inbox, dispatch, ended)
            for attempt_id in stops:
                self._stop_attempt(attempt_id)
            for action in actions:
                action.done.set()
        else:
            self._refuse(actions)
            self.wake()  # abandoned at the stop: the loop ends

    @staticmethod
    def _refuse(actions: list[_Action]) -> None:
        for action in actions:
            action.error = StateError("not recorded: the daemon is stopping and cannot "
                                      "write the database")
            action.done.set()

    async def _commit(self, batch: Batch) -> bool:
        """Commit the tick's batch; while the database cannot be written (a full disk),
        say so (health, refused deliveries) and try the same batch again, backing off,
        until it can. Stopping, give up at the end of the grace period (False): what is
        not committed did not happen, the engine records nothing more, and the next
        start carries on from the rows."""
        if not batch:
            return True
        failures = 0
        while True:
            try:
                started = time.perf_counter()
                await self.store.commit(batch)
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - started)
            except StorageUnavailable as exc:
                failures += 1
                if self.unhealthy is None:
                    log.error("%s; refusing new events, retrying until it can be written",
                              exc)
                self.unhealthy = str(exc)
                delay = COMMIT_BACKOFF.delay(min(failures, 16), lambda: 0.0)
                if self._stopping:
                    left = (self._stop_deadline or 0.0) - time.monotonic()
                    if left <= 0:
                        log.error("stopping with %d change(s) not recorded (the next start "
                                  "carries on from the rows): %s",
                                  sum(map(len, batch.rows.values())), exc)
                        self._abandoned = True
                        return False
                    delay = min(delay, left)
                await anyio.sleep(delay)
                continue
            if self.unhealthy is not None:
                log.warning("the database can be written again (after %d failed commit(s))",
                            failures)
                self.unhealthy = None
            return True

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
        if self.changes.wanted:  # before `forget`: an ended run's instances get named
            self.changes.publish(batch.changes(self.changes.wanted,
                                               name_ti=self.runs.name_ti))
        for run_id in ended:
            self.runs.forget(run_id)
            waiter = self._waiters.pop(run_id, None)
            if waiter is not None:
                waiter.set()

    # -- attempts ----------------------------------------------------------------------
    def _record_pid(self, spec: AttemptSpec, pid: int) -> None:
        """The process an attempt runs in, for recovery to end what it leaves if the
        daemon dies: written with the next tick, and at most PID_RECORD_DELAY seconds
        later. A short task's pid goes with its end, not in a commit of its own."""
        self._pids.append((spec.attempt_id, pid))
        if self._pid_timer is None:
            self._pid_timer = asyncio.get_running_loop().call_later(
                PID_RECORD_DELAY, self.wake)

    def _record_worker(self, attempt_id: int, worker: str) -> None:
        """An attempt runs on this Dask worker: recorded by the next tick."""
        self._workers.append((attempt_id, worker))
        self.wake()

    def _record_places(self, batch: Batch) -> None:
        """A tick's step: where the attempts started since the last one run (pid, worker)."""
        if self._pid_timer is not None:
            self._pid_timer.cancel()
            self._pid_timer = None
        for attempt_id, pid in self._pids:
            batch.set_attempt_pid(attempt_id, pid)
        for attempt_id, worker in self._workers:
            batch.set_attempt_worker(attempt_id, worker)
        self._pids, self._workers = [], []

    async def _execute_in_loop(self, spec: AttemptSpec) -> None:
        """An attempt that runs in the loop (an async task). It needs no cancel scope of
        its own, whose entry and exit cost a fifth of the loop's time per no-op attempt:
        `interrupt` cancels its asyncio task, and that is caught here."""
        try:
            result = await self.executor.execute(spec)
        except asyncio.CancelledError:  # interrupt(): this task is ours alone to cancel
            result = AttemptResult.failure(
                spec, error="interrupted: the daemon stopped", reason="daemon stopped"
            )
        except Exception as exc:  # a bug in an executor must not stop the daemon
            log.exception("%s: executor error", spec.ref, extra=spec.log_extra)
            result = AttemptResult.failure(spec, exc, reason="executor error")
        finally:
            self._in_loop.pop(spec.attempt_id, None)
        self._results.append(result)
        self.wake()

    def _stop_attempt(self, attempt_id: int) -> None:
        """Stop one running attempt (a person marked its task, its run timed out):
        cancelled as at a stop; one not yet begun never begins (see `_execute`)."""
        scope = self._scopes.get(attempt_id)
        if scope is not None:
            scope.cancel()
        task = self._in_loop.get(attempt_id)
        if task is not None:
            task.cancel()

    async def _execute(self, spec: AttemptSpec) -> None:
        result: AttemptResult | None = None
        if spec.attempt_id in self.runs.stopped:  # marked before it began
            self._results.append(AttemptResult.failure(spec, error="stopped",
                                                       reason="stopped"))
            self.wake()
            return
        with self._scope_class() as scope:
            self._scopes[spec.attempt_id] = scope
            try:
                result = await self.executor.execute(spec)
            except Exception as exc:  # a bug in an executor must not stop the daemon
                log.exception("%s: executor error", spec.ref, extra=spec.log_extra)
                result = AttemptResult.failure(spec, exc, reason="executor error")
        self._scopes.pop(spec.attempt_id, None)
        if result is None or scope.cancelled_caught:
            result = AttemptResult.failure(
                spec, error="interrupted: the daemon stopped", reason="daemon stopped"
            )
        self._results.append(result)
        self.wake()


