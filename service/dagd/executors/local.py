"""LocalExecutor: runs attempts on this machine.

- in the loop: async tasks, cancelled at their timeout; `in_loop` names the ones
  running, for the loop watchdog's warning when one blocks the loop;
- in a thread (`isolation="thread"`): sync I/O-bound code; at the timeout the attempt
  fails and the thread is abandoned (Python cannot kill a thread). These are daemon
  threads of dagd's own, listed in `threads` while they run, so that an abandoned one
  never holds the process up at exit (the daemon exits without waiting for it);
- in a worker process (the default for sync code): a warm worker of the pool
  (`dagd.executors.pool`), with a clean environment (`dagd.executors.env`), killed with
  its whole process tree at the timeout; `isolation="fresh"`, a memory limit or
  `inherit_env=True` get a newly forked worker of their own. A crash, a hang or a flood
  of output never reaches the daemon, and nothing it started outlives the attempt;
- not here at all (`executor="dask"`): handed to the Dask cluster (`dagd.executors.dask`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio

from dagd.authoring.context import reset_current_context, set_current_context
from dagd.executors.base import AttemptResult, AttemptSpec, XComError, encode_xcom
from dagd.executors.dask import DaskExecutor
from dagd.executors.failure import format_failure
from dagd.executors.logs import AttemptLog, reset_current_log, set_current_log
from dagd.executors.pool import PoolLimits, WorkerPool
from dagd.executors.procgroup import STOPPING

log = logging.getLogger(__name__)


class LocalExecutor:
    def __init__(
        self,
        *,
        log_max_bytes: int,
        xcom_max_bytes: int,
        on_pid: Callable[[AttemptSpec, int], None] | None = None,
        limits: PoolLimits | None = None,
    ) -> None:
        self.log_max_bytes = log_max_bytes
        self.xcom_max_bytes = xcom_max_bytes
        self.on_pid = on_pid
        # For a task that sets none (the config's `core.default_memory_limit`).
        self.default_memory_limit: int | None = None
        # attempt id -> spec, while it runs in the loop / in a thread of its own
        self.in_loop: dict[int, AttemptSpec] = {}
        self.threads: dict[int, AttemptSpec] = {}
        # Told when an attempt starts in the loop (the watchdog starts watching).
        self.on_loop_attempt: Callable[[], None] | None = None
        # The warm worker processes of sync tasks (isolation "process" and "fresh").
        self.pool = WorkerPool(limits or PoolLimits(), log_max_bytes=log_max_bytes,
                               xcom_max_bytes=xcom_max_bytes)
        # Where executor="dask" tasks go ([executors.dask]); None: no cluster configured.
        self.dask: DaskExecutor | None = None

    async def execute(self, spec: AttemptSpec) -> AttemptResult:
        if spec.task.executor == "dask":
            return await self._on_dask(spec)
        if spec.task.runs_in_loop:
            return await self._in_loop(spec)
        if spec.isolation == "thread":
            return await self._in_thread(spec)
        return await self._in_process(spec)

    # -- in the event loop -----------------------------------------------------------
    def _finish(self, spec: AttemptSpec, value: Any, attempt_log: AttemptLog) -> AttemptResult:
        try:
            return AttemptResult(spec=spec, ok=True, xcom=encode_xcom(value, self.xcom_max_bytes))
        except XComError as exc:
            attempt_log.write(f"[dagd] {spec.ref} failed: {exc}\n")
            return AttemptResult.failure(spec, exc)

    def _failed(
        self, spec: AttemptSpec, exc: BaseException, attempt_log: AttemptLog
    ) -> AttemptResult:
        attempt_log.write(format_failure(exc))
        return AttemptResult.failure(spec, exc)

    async def _in_loop(self, spec: AttemptSpec) -> AttemptResult:
        attempt_log = AttemptLog(spec.log_path, self.log_max_bytes)
        log_token = set_current_log(attempt_log)
        ctx_token = set_current_context(spec.context)
        self.in_loop[spec.attempt_id] = spec
        if self.on_loop_attempt is not None:
            self.on_loop_attempt()
        try:
            if spec.timeout is None:  # no cancel scope: the common case stays cheap
                value = await spec.task.execute(spec.context)
            else:
                with anyio.move_on_after(spec.timeout) as scope:
                    value = await spec.task.execute(spec.context)
                if scope.cancelled_caught:
                    attempt_log.write(
                        f"[dagd] {spec.ref}: execution_timeout exceeded, cancelled\n"
                    )
                    return AttemptResult.timeout(spec)
            return self._finish(spec, value, attempt_log)
        except Exception as exc:
            return self._failed(spec, exc, attempt_log)
        finally:
            del self.in_loop[spec.attempt_id]
            reset_current_context(ctx_token)
            reset_current_log(log_token)
            attempt_log.close()

    # -- in a thread -----------------------------------------------------------------
    async def _in_thread(self, spec: AttemptSpec) -> AttemptResult:
        attempt_log = AttemptLog(spec.log_path, self.log_max_bytes)
        loop = asyncio.get_running_loop()
        # (value, exception): a SystemExit in the task is its failure, not the daemon's.
        done: asyncio.Future[tuple[Any, BaseException | None]] = loop.create_future()

        def report(outcome: tuple[Any, BaseException | None]) -> None:
            if not done.done():  # not cancelled at the timeout meanwhile
                done.set_result(outcome)

        def call() -> None:
            log_token = set_current_log(attempt_log)
            ctx_token = set_current_context(spec.context)
            outcome: tuple[Any, BaseException | None]
            try:
                outcome = (spec.task.call_sync(spec.context), None)
            except BaseException as exc:
                outcome = (None, exc)
            finally:
                reset_current_context(ctx_token)
                reset_current_log(log_token)
                self.threads.pop(spec.attempt_id, None)
            try:
                loop.call_soon_threadsafe(report, outcome)
            except RuntimeError:
                pass  # the loop is closed: an abandoned thread outlived the daemon's stop

        # A daemon thread: one abandoned at its timeout never keeps the process alive.
        thread = threading.Thread(target=contextvars.copy_context().run, args=(call,),
                                  name=f"dagd task {spec.ref}", daemon=True)
        self.threads[spec.attempt_id] = spec
        try:
            thread.start()
            with anyio.move_on_after(spec.timeout) as scope:
                value, error = await done
            if scope.cancelled_caught:
                attempt_log.write(
                    f"[dagd] {spec.ref}: execution_timeout exceeded; the thread is abandoned\n"
                )
                return AttemptResult.timeout(spec)
            if error is not None:
                return self._failed(spec, error, attempt_log)
            return self._finish(spec, value, attempt_log)
        except Exception as exc:
            return self._failed(spec, exc, attempt_log)
        finally:
            # Always (a log that hit its cap still holds an open file), and for good:
            # a thread abandoned at its timeout may print on, into no file.
            attempt_log.seal()
            if not thread.is_alive():
                self.threads.pop(spec.attempt_id, None)

    # -- in a worker process -------------------------------------------------------------
    def memory_limit(self, spec: AttemptSpec) -> int | None:
        return spec.task.memory_limit or self.default_memory_limit

    def start(self) -> None:
        """Start the worker pool in the background: ready before the first sync task."""
        self.pool.start()
        if self.dask is not None:
            self.dask.start()

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self.dask is not None:
            await self.dask.aclose()

    @property
    def dask_problem(self) -> str | None:
        """Why tasks for Dask cannot be sent now (they wait queued); None if they can."""
        return self.dask.problem if self.dask is not None else None

    async def _on_dask(self, spec: AttemptSpec) -> AttemptResult:
        if self.dask is not None:
            return await self.dask.execute(spec)
        error = ("executor=\"dask\", but no Dask cluster is configured: set [executors.dask] "
                 "address (\"tcp://scheduler:8786\", or \"local\") in the config")
        AttemptLog(spec.log_path, self.log_max_bytes).write(f"[dagd] {spec.ref}: {error}\n")
        return AttemptResult.failure(spec, error=error, reason="no executor")

    def stop_by(self, deadline: float | None) -> None:
        """The daemon stops: the processes of the attempts it cancels (workers, shell
        commands) get until `deadline` (monotonic) between SIGTERM and SIGKILL, rather
        than `KILL_GRACE`; None when it serves again (an engine in a test)."""
        STOPPING.until = deadline

    def recycle(self) -> None:
        """The DAGs were reloaded: workers that ran an attempt are replaced."""
        self.pool.recycle()

    async def _in_process(self, spec: AttemptSpec) -> AttemptResult:
        return await self.pool.execute(spec, memory_limit=self.memory_limit(spec),
                                       on_pid=self.on_pid)
