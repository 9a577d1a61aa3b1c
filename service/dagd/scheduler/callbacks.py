"""Callbacks: the functions a DAG file hands over for its tasks' and runs' state changes,
called in the daemon once the change is committed, off the scheduler's path.

A task's `on_execute_callback` (its attempt started), `on_success_callback`,
`on_failure_callback` (no try left) and `on_retry_callback` (failed, will retry), and a
DAG's `on_success_callback` / `on_failure_callback` (the run ended) are each one function
or a list, sync or async, called with an Airflow-like context dict (`callback_context`).

`Callbacks` hears the committed changes on the changes port (subscribed only while some
loaded DAG declares a callback, so the tick builds no change for nobody). An async
callback runs in the loop, a sync one in a thread of its own; each has `[core]
callback_timeout` seconds, after which it is abandoned (a thread cannot be stopped: it
runs on, a daemon thread, and the daemon no longer waits for it). A callback that raises
or times out is logged (with its traceback) and noted in the attempt's log file as a
`[dagd] on_failure_callback ...` line; it changes no state. The callbacks of one task
instance (or one run) run in the order of its changes; different ones run concurrently,
at most `CONCURRENCY` at once. The rows are read through a connection of its own (the
daemon opens one, read-only), one statement at a time.

When the port drops this subscriber (it fell more than `QUEUE_LIMIT` changes behind),
it subscribes again and re-reads the state history from the last change it had seen,
so no callback is lost; one already called is not called again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from dagd.changes import RUN, TI, Change, Changes, Dropped, Subscription
from dagd.errors import NotFound
from dagd.store.rows import AttemptRow, RunRow, TaskInstanceRow

if TYPE_CHECKING:
    from dagd.authoring.dag import DAG
    from dagd.authoring.tasks import BaseTask
    from dagd.config import Settings
    from dagd.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")

# A task instance's state -> the callback it calls; a run's likewise.
TI_CALLBACKS = {"running": "on_execute_callback", "success": "on_success_callback",
                "failed": "on_failure_callback", "up_for_retry": "on_retry_callback"}
RUN_CALLBACKS = {"success": "on_success_callback", "failed": "on_failure_callback"}
CONCURRENCY = 16
QUEUE_LIMIT = 10_000
SEEN_LIMIT = 50_000  # changes remembered, so a re-read after a drop calls none twice


class AttemptFailed(Exception):
    """`context["exception"]`: the failed attempt's error, as the store recorded it (the
    exception itself lived in the task's process)."""


@dataclass(frozen=True)
class TaskInstanceInfo:
    """`context["ti"]` / `context["task_instance"]`: the task instance at that change."""

    dag_id: str
    task_id: str
    run_id: int
    map_index: int
    state: str
    try_number: int
    max_tries: int
    attempt_id: int | None = None
    error: str | None = None
    log_path: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    # The return values of the tasks directly upstream, and of this one once it succeeded.
    xcoms: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def xcom_pull(self, task_ids: str | Iterable[str] | None = None, *,
                  key: str = "return_value", default: Any = None) -> Any:
        """Airflow's `ti.xcom_pull`: the return value of a task directly upstream of this
        one (or of this one), a list of them for a list of ids; `default` for the others."""
        if key != "return_value":
            return default
        if task_ids is None:
            task_ids = self.task_id
        if isinstance(task_ids, str):
            return self.xcoms.get(task_ids, default)
        return [self.xcoms.get(t, default) for t in task_ids]


@dataclass(frozen=True)
class RunInfo:
    """`context["dag_run"]` / `context["run"]`: the run, as committed."""

    dag_id: str
    run_id: int
    state: str
    run_type: str
    logical_date: datetime | None
    conf: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    ended_at: float | None = None


def has_callbacks(dag: DAG) -> bool:
    return bool(getattr(dag, "callbacks", None)) or any(
        getattr(t, "callbacks", None) for t in dag.tasks.values())


def _name(fn: Callable[..., Any]) -> str:
    """The function's own name (a DAG file's module name is the loader's, not the user's)."""
    return str(getattr(fn, "__qualname__", None) or repr(fn))


def _run_info(run: RunRow, state: str) -> RunInfo:
    logical = datetime.fromisoformat(run.logical_date) if run.logical_date else None
    return RunInfo(dag_id=run.dag_id, run_id=run.id, state=state, run_type=run.run_type,
                   logical_date=logical, conf=run.conf, started_at=run.started_at,
                   ended_at=run.ended_at)


def callback_context(dag: DAG, run: RunInfo, *, task: BaseTask | None = None,
                     ti: TaskInstanceInfo | None = None, reason: str | None = None
                     ) -> dict[str, Any]:
    """The context a callback receives: Airflow's names, and dagd's run context."""
    params = {**dag.params, **{k: v for k, v in run.conf.items() if k in dag.params}}
    logical = run.logical_date
    context: dict[str, Any] = {
        "dag": dag, "dag_id": dag.dag_id, "run": run, "dag_run": run, "run_id": run.run_id,
        "logical_date": logical, "ds": logical.date().isoformat() if logical else None,
        "ts": logical.isoformat() if logical else None, "conf": run.conf, "params": params,
        "reason": reason, "state": run.state, "exception": None,
    }
    if ti is not None:
        error = ti.error if ti.state in ("failed", "up_for_retry") else None
        context.update({
            "task": task, "task_id": ti.task_id, "ti": ti, "task_instance": ti,
            "upstream": {k: v for k, v in ti.xcoms.items() if k != ti.task_id},
            "try_number": ti.try_number, "max_tries": ti.max_tries,
            "map_index": ti.map_index, "attempt_id": ti.attempt_id, "state": ti.state,
            "exception": AttemptFailed(error) if error else None,
            "ti_key": f"{dag.dag_id}/{run.run_id}/{ti.task_id}" + (
                f"/{ti.map_index}" if ti.map_index >= 0 else ""),
        })
    adapt = getattr(dag, "adapt_callback_context", None)  # an Airflow DAG file's DAG
    return adapt(context) if adapt is not None else context


@dataclass(frozen=True)
class _Job:
    """The callbacks owed for one change."""

    key: tuple[str, int]  # ("ti", ti_id) or ("run", run_id): one at a time, in order
    name: str  # on_failure_callback, ...
    fns: tuple[Callable[..., Any], ...]
    change: Change


class Callbacks:
    def __init__(self, store: Store, changes: Changes, dags: Callable[[], Mapping[str, DAG]],
                 *, timeout: float = 30.0) -> None:
        self.store = store
        self.changes = changes
        self.dags = dags
        self.timeout = timeout
        self._sub: Subscription | None = None
        self._changed = anyio.Event()
        self._waiting: anyio.CancelScope | None = None
        self._limiter = anyio.CapacityLimiter(CONCURRENCY)
        # One read at a time on the store's connection: a statement still open there
        # would keep an older snapshot for the next one (a state from before a commit).
        self._reading = anyio.Lock()
        self._order: dict[tuple[str, int], list[Any]] = {}
        self._seen: OrderedDict[tuple[str, int, str | None, float], None] = OrderedDict()
        self._last_at: float | None = None
        self._jobs = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._tg: TaskGroup | None = None
        self.update()  # now, before the engine serves: a recovered run may end at once

    # -- following the DAGs ----------------------------------------------------------------
    def configure(self, settings: Settings) -> None:
        """Reloaded settings (SIGHUP): callbacks that start from now on get this timeout."""
        self.timeout = settings.callback_timeout

    def update(self) -> None:
        """The DAGs changed: subscribe while some DAG declares a callback, else not."""
        wanted = any(has_callbacks(d) for d in self.dags().values())
        if wanted and self._sub is None:
            self._subscribe()
            self._changed.set()
        elif not wanted and self._sub is not None:
            self._sub.close()
            self._sub = None
            if self._waiting is not None:
                self._waiting.cancel()

    def _subscribe(self) -> None:
        self._sub = self.changes.subscribe([RUN, TI], limit=QUEUE_LIMIT)
        if self._last_at is None:  # a drop before any change: re-read from here
            self._last_at = time.time()

    # -- the loop --------------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.update()  # subscribed again, after a failure the supervisor restarts
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                while True:
                    await self._next()
        finally:
            self._tg = None
            if self._sub is not None:
                self._sub.close()
                self._sub = None

    async def _next(self) -> None:
        sub = self._sub
        if sub is None:
            await self._changed.wait()
            self._changed = anyio.Event()
            return
        with anyio.CancelScope() as self._waiting:
            try:
                changes = await sub.next()
            except Dropped:
                await self._catch_up()
                return
            finally:
                self._waiting = None
            self._dispatch(changes)

    async def drain(self, deadline: float) -> None:
        """Call what is owed now and wait for the callbacks running, for at most
        `deadline` seconds (`dagd test` at the end of its run; the daemon at a stop)."""
        with anyio.move_on_after(deadline):
            if self._sub is not None and self._sub.pending:
                self._dispatch(await self._sub.next())
            while self._jobs:
                await self._idle.wait()

    def _dispatch(self, changes: list[Change]) -> None:
        dags = self.dags()
        for change in changes:
            self._last_at = change.at
            job = self._job_for(change, dags)
            if job is None:
                continue
            seen = (change.kind, change.id, change.state, change.at)
            if seen in self._seen:
                continue
            self._seen[seen] = None
            if len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)
            self._start(job)

    def _job_for(self, change: Change, dags: Mapping[str, DAG]) -> _Job | None:
        dag = dags.get(change.dag_id) if change.dag_id is not None else None
        if dag is None:
            return None
        if change.kind == RUN:
            name = RUN_CALLBACKS.get(change.state or "")
            fns = dag.callbacks.get(name) if name else None
            return _Job(("run", change.id), name, fns, change) if name and fns else None
        name = TI_CALLBACKS.get(change.state or "")
        task_id = change.detail.get("task_id") if change.detail else None
        task = dag.tasks.get(task_id) if isinstance(task_id, str) else None
        fns = task.callbacks.get(name) if name and task is not None else None
        return _Job(("ti", change.id), name, fns, change) if name and fns else None

    def _start(self, job: _Job) -> None:
        if self._tg is None:  # not running (a test that drives the engine alone)
            return
        self._jobs += 1
        if self._jobs == 1:
            self._idle = anyio.Event()
        self._tg.start_soon(self._run_job, job, name=f"{job.name} {job.key}")

    async def _catch_up(self) -> None:
        """Dropped: subscribe again, then re-read what was committed since the last
        change seen; `_dispatch` skips the ones already called."""
        since = self._last_at
        self._subscribe()
        log.warning("callbacks fell behind the scheduler; re-reading the state changes "
                    "since the last one seen")
        # A scan of the history (`at` has no index): rare, and off the scheduler's path.
        rows = await self._read(self.store.history_since, since or 0.0)
        names: dict[int, tuple[str, dict[int, str]]] = {}
        found: list[Change] = []
        for h in rows:
            if h.run_id not in names:
                try:
                    run = await self._read(self.store.get_run, h.run_id)
                except NotFound:
                    continue
                tis = {ti.id: ti.task_id for ti in await self._read(self.store.list_tis,
                                                                     h.run_id)}
                names[h.run_id] = (run.dag_id, tis)
            dag_id, tis = names[h.run_id]
            if h.ti_id is None:
                found.append(Change(RUN, h.run_id, h.run_id, dag_id, h.to_state, h.at))
            else:
                found.append(Change(TI, h.ti_id, h.run_id, dag_id, h.to_state, h.at,
                                    {"task_id": tis.get(h.ti_id), "reason": h.reason}))
        self._dispatch(found)

    async def _read(self, verb: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self._reading:
            return await verb(*args)

    # -- one change's callbacks ------------------------------------------------------------
    async def _run_job(self, job: _Job) -> None:
        try:
            async with self._in_order(job.key), self._limiter:
                try:
                    context, attempt = await self._context(job)
                except Exception:  # the rows are gone (a test's database), or a bug
                    log.exception("cannot build the context for %s of %s", job.name,
                                  job.key)
                    return
                for fn in job.fns:
                    await self._call(fn, job, context, attempt)
        finally:
            self._jobs -= 1
            if not self._jobs:
                self._idle.set()

    @asynccontextmanager
    async def _in_order(self, key: tuple[str, int]) -> AsyncIterator[None]:
        entry = self._order.get(key)
        if entry is None:
            entry = self._order[key] = [anyio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._order[key]

    async def _context(self, job: _Job) -> tuple[dict[str, Any], AttemptRow | None]:
        change = job.change
        assert change.dag_id is not None and change.run_id is not None
        dag = self.dags()[change.dag_id]
        run = await self._read(self.store.get_run, change.run_id)
        reason = change.detail.get("reason") if change.detail else None
        if change.kind == RUN:
            return callback_context(dag, _run_info(run, change.state or run.state),
                                    reason=reason), None
        tis = await self._read(self.store.list_tis, change.run_id)
        ti = next(t for t in tis if t.id == change.id)
        # The attempt this change is about: the last one started by then, or for an
        # end the last one ended by then (a retry may have started another since, even
        # in the same commit).
        attempts = [a for a in await self._read(self.store.list_attempts, ti.id)
                    if (a.started_at <= change.at if change.state == "running"
                        else a.ended_at is not None and a.ended_at <= change.at)]
        attempt = attempts[-1] if attempts else None
        task = dag.tasks[ti.task_id]
        info = _ti_info(change.dag_id, ti, change.state or ti.state, attempt,
                        await self._xcoms(task, ti, tis, change.state))
        return callback_context(dag, _run_info(run, run.state), task=task,
                                ti=info, reason=reason), attempt

    async def _xcoms(self, task: BaseTask, ti: TaskInstanceRow, tis: list[TaskInstanceRow],
                     state: str | None) -> dict[str, Any]:
        """The return values of the tasks directly upstream (a mapped one's as a list, in
        map-index order, as its downstream tasks receive them), and this one's own."""
        wanted = set(task.upstream_ids)
        values: dict[str, Any] = {}
        mapped: dict[str, list[tuple[int, Any]]] = {}
        for other in tis:
            if other.id == ti.id:
                if state == "success":
                    values[ti.task_id] = await self._read(self.store.get_xcom, ti.id)
                continue
            if other.task_id not in wanted or other.state != "success":
                continue
            value = await self._read(self.store.get_xcom, other.id)
            if other.map_index >= 0:
                mapped.setdefault(other.task_id, []).append((other.map_index, value))
            else:
                values[other.task_id] = value
        for task_id, items in mapped.items():
            values[task_id] = [value for _, value in sorted(items, key=lambda i: i[0])]
        return values

    async def _call(self, fn: Callable[..., Any], job: _Job, context: dict[str, Any],
                    attempt: AttemptRow | None) -> None:
        ref = _ref(job.change, context)
        extra = {"dag_id": job.change.dag_id, "run_id": job.change.run_id,
                 "task_id": context.get("task_id"), "attempt_id": context.get("attempt_id")}
        error: BaseException | None = None
        with anyio.move_on_after(self.timeout) as scope:
            try:
                # Async ones too, on an event loop of their own in that thread: one that
                # blocks (time.sleep in an async def) cannot stall the daemon's loop.
                await _in_thread(fn, context, f"{job.name} {ref}")
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:  # sys.exit() in a callback is its own failure
                error = exc
        if scope.cancelled_caught:
            note = (f"[dagd] {job.name} {_name(fn)} did not finish within "
                    f"{self.timeout:g}s ([core] callback_timeout): abandoned; the state "
                    "stays as it is\n")
            log.error("%s: %s", ref, note.strip().removeprefix("[dagd] "), extra=extra)
        elif error is not None:
            trace = "".join(traceback.format_exception(error))
            note = (f"[dagd] {job.name} {_name(fn)} raised {type(error).__name__}: {error} "
                    f"(the state stays as it is)\n{trace}")
            log.error("%s: %s %s raised %s: %s", ref, job.name, _name(fn),
                      type(error).__name__, error, exc_info=error, extra=extra)
        else:
            return
        if attempt is not None:
            await _append(attempt.log_path, note)


def _ti_info(dag_id: str, ti: TaskInstanceRow, state: str, attempt: AttemptRow | None,
             xcoms: Mapping[str, Any]) -> TaskInstanceInfo:
    return TaskInstanceInfo(
        xcoms=xcoms,
        dag_id=dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index,
        state=state, try_number=attempt.try_number if attempt else ti.try_number,
        max_tries=ti.max_tries, attempt_id=attempt.id if attempt else None,
        error=attempt.error if attempt else None,
        log_path=attempt.log_path if attempt else None,
        started_at=attempt.started_at if attempt else ti.started_at,
        ended_at=attempt.ended_at if attempt else ti.ended_at)


def _ref(change: Change, context: dict[str, Any]) -> str:
    if change.kind == RUN:
        return f"{change.dag_id}[run {change.run_id}]"
    return f"{change.dag_id}.{context.get('task_id')}[run {change.run_id} " \
           f"#{context.get('try_number')}]"


async def _in_thread(fn: Callable[..., Any], context: dict[str, Any], name: str) -> None:
    """Call `fn(context)` in a daemon thread of its own, and wait for it (cancellable):
    one abandoned at its timeout runs on, but holds up neither the loop nor the exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    def target() -> None:
        error: BaseException | None = None
        try:
            result = fn(context)
            if inspect.isawaitable(result):  # a sync function that returned a coroutine
                asyncio.run(_awaited(result))
        except BaseException as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass

    threading.Thread(target=target, name=f"dagd {name}", daemon=True).start()
    await done


async def _awaited(value: Any) -> None:
    await value


async def _append(path: str, note: str) -> None:
    """A line in the attempt's log file (created if the attempt wrote none)."""
    def write() -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(note)

    try:
        await anyio.to_thread.run_sync(write)
    except OSError as exc:
        log.error("cannot note a callback's failure in %s: %s", path, exc)
