"""LocalExecutor: runs attempts on this machine.

- in the loop: async tasks, cancelled at their timeout; `in_loop` names the ones
  running, for the loop watchdog's warning when one blocks the loop;
- in a thread (`isolation="thread"`): sync I/O-bound code; at the timeout the attempt
  fails and the thread is abandoned (Python cannot kill a thread). These are daemon
  threads of dagd's own, listed in `threads` while they run, so that an abandoned one
  never holds the process up at exit (the daemon exits without waiting for it);
- in a worker process (the default for sync code), with a clean environment
  (`dagd.executors.env`) and the task's memory limit: killed, with its whole process
  tree (its group and whatever left it), at the timeout; a crash, a hang or a flood of
  output never reaches the daemon, and nothing it started outlives the attempt.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
from anyio.abc import Process

from dagd.authoring.context import reset_current_context, set_current_context
from dagd.config import format_bytes
from dagd.executors.base import AttemptResult, AttemptSpec, XComError, encode_xcom
from dagd.executors.env import task_environment
from dagd.executors.logs import AttemptLog, reset_current_log, set_current_log
from dagd.executors.procgroup import pump, signal_group, stop_group
from dagd.executors.worker import format_failure

log = logging.getLogger(__name__)


class LocalExecutor:
    def __init__(
        self,
        *,
        tmp_dir: Path,
        log_max_bytes: int,
        xcom_max_bytes: int,
        on_pid: Callable[[AttemptSpec, int], None] | None = None,
    ) -> None:
        self.tmp_dir = tmp_dir
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
        tmp_dir.mkdir(parents=True, exist_ok=True)

    async def execute(self, spec: AttemptSpec) -> AttemptResult:
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

    async def _in_process(self, spec: AttemptSpec) -> AttemptResult:
        result_path = self.tmp_dir / f"attempt-{spec.attempt_id}.json"
        result_path.unlink(missing_ok=True)
        memory_limit = self.memory_limit(spec)
        payload = orjson.dumps(
            {
                "dag_file": spec.dag_file,
                # The text the scheduler loaded: the worker runs that version, not
                # whatever the file on disk says now.
                "dag_source": spec.task.dag.source,
                "dag_id": spec.dag_id,
                "task_id": spec.task_id,
                "context": spec.context.to_json(),
                "result_path": str(result_path),
                "xcom_max_bytes": self.xcom_max_bytes,
                "memory_limit": memory_limit,
            }
        )
        # Not the daemon's secrets (SMTP, connections, webhooks): an allow-list, or all
        # of it for a task with inherit_env=True.
        env = task_environment(inherit=spec.task.inherit_env)
        env["PYTHONUNBUFFERED"] = "1"
        attempt_log = AttemptLog(spec.log_path, self.log_max_bytes)
        oom_before = _oom_kills()
        process = await anyio.open_process(
            # -P: the working directory (the DAGs folder, if the daemon was started in
            # it) does not go first on sys.path, in place of installed modules.
            [sys.executable, "-P", "-m", "dagd.executors.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        if self.on_pid is not None:
            self.on_pid(spec, process.pid)
        timed_out = False
        pumped = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                assert process.stdin is not None and process.stdout is not None
                tg.start_soon(pump, process.stdout, attempt_log, pumped)
                await process.stdin.send(payload)
                await process.stdin.aclose()
                with anyio.move_on_after(spec.timeout) as scope:
                    await process.wait()
                if scope.cancelled_caught:
                    timed_out = True
                    await stop_group(process, tree=True)
                else:
                    # The worker ended what its task left running; a worker that could
                    # not (it crashed, or the task called os._exit) leaves it here.
                    signal_group(process.pid, signal.SIGKILL)
                # A grandchild may hold the pipe open: do not wait for it for long.
                with anyio.move_on_after(1.0):
                    await pumped.wait()
                tg.cancel_scope.cancel()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stop_group(process, tree=True)
            raise
        finally:
            attempt_log.close()
        if timed_out:
            attempt_log.write(f"[dagd] {spec.ref}: execution_timeout exceeded, process killed\n")
            attempt_log.close()
            return AttemptResult.timeout(spec)
        return await _read_result(spec, process, result_path, attempt_log,
                                  memory_limit=memory_limit, oom_before=oom_before)


def _memory_events() -> Path | None:
    """The cgroup v2 `memory.events` of this process (its workers share it), if any."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                path = Path("/sys/fs/cgroup") / line[3:].lstrip("/") / "memory.events"
                return path if path.exists() else None
    except OSError:
        pass
    return None


MEMORY_EVENTS = _memory_events()


def _oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed in this cgroup so far."""
    if MEMORY_EVENTS is None:
        return None
    try:
        for line in MEMORY_EVENTS.read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _crash_text(code: int | None, memory_limit: int | None, oom_before: int | None) -> str:
    """What ended a worker that reported nothing, as the attempt's error says it."""
    if code is None or code >= 0:
        return f"worker process exited with code {code} before reporting a result"
    try:
        sig = signal.Signals(-code)
    except ValueError:  # a real-time signal has no name
        return f"worker process killed by signal {-code} before reporting a result"
    if sig == signal.SIGKILL and oom_before is not None:
        after = _oom_kills()
        if after is not None and after > oom_before:
            return ("worker process killed by the kernel's out-of-memory killer (SIGKILL) "
                    "before reporting a result: the machine or the daemon's cgroup ran out "
                    "of memory")
    text = f"worker process killed by signal {sig.name} before reporting a result"
    if memory_limit and sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
        # C code that does not check for a failed allocation dies like this.
        text += f" (its memory limit of {format_bytes(memory_limit)} may have been exceeded)"
    return text


async def _read_result(
    spec: AttemptSpec, process: Process, result_path: Path, attempt_log: AttemptLog, *,
    memory_limit: int | None = None, oom_before: int | None = None,
) -> AttemptResult:
    apath = anyio.Path(result_path)
    if not await apath.exists():
        error = _crash_text(process.returncode, memory_limit, oom_before)
        attempt_log.write(f"[dagd] {spec.ref}: {error}\n")
        attempt_log.close()
        return AttemptResult.failure(spec, error=error, reason="crashed")
    data = orjson.loads(await apath.read_bytes())
    await apath.unlink(missing_ok=True)
    if data.get("ok"):
        return AttemptResult(spec=spec, ok=True, xcom=data.get("xcom"))
    return AttemptResult(
        spec=spec, ok=False, error=data.get("error"), error_names=data.get("error_names", [])
    )
