"""WorkerPool: the daemon's side of the warm worker pool that runs sync Python tasks.

Workers are forked by a fork server that already holds dagd (`dagd.executors.worker`),
so a new one costs a few milliseconds, and a worker serves one attempt after another.
`[workers] size` of them are kept ready; under load the pool grows up to `max_size`
(a waiting attempt takes whichever comes first: a worker freed by another attempt or a
new one), and a worker idle for `idle_timeout` seconds beyond `size` is retired.

The isolation of a process per attempt stays: at its `execution_timeout` an attempt's
worker is killed with its whole process group and whatever left it (`stop_pid`), and
replaced; a worker that dies (a segfault, `os._exit`, the OOM killer) fails only its
attempt, with the signal named; a worker is recycled after `max_tasks_per_worker`
attempts, and once its resident memory passes `max_memory_per_worker`, so a leaking task
cannot grow it without bound. Each attempt's output arrives on a pipe of its own, whose
write end is the worker's fds 1 and 2 for that attempt only: its log holds exactly its
output. An attempt that must not share a process (`isolation="fresh"`, a memory limit,
`inherit_env=True`) gets a newly forked worker that ends with it.

Why not a library: multiprocessing's forkserver, loky and pebble run the fork server with
the daemon's environment (its secrets readable in every worker's /proc/PID/environ), and
none routes a worker's fds 1 and 2 to one attempt's log or kills one attempt's process
tree; what is missing is this module and the worker's loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from anyio.abc import Process

from dagd.config import format_bytes
from dagd.errors import DagdError
from dagd.executors.base import AttemptResult, AttemptSpec
from dagd.executors.crash import crash_text, oom_kills
from dagd.executors.env import task_environment
from dagd.executors.logs import AttemptLog
from dagd.executors.procgroup import signal_group, stop_pid
from dagd.executors.worker import HEADER, frame

if TYPE_CHECKING:
    from collections.abc import Callable

    from dagd.config import Settings

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds for the fork server to import dagd (a slow, busy machine)
SPAWN_TIMEOUT = 30.0  # seconds for a forked worker to say it is ready
GROW_AFTER = 0.05  # seconds an attempt waits for a busy worker before the pool grows
DRAIN_WAIT = 1.0  # seconds to wait for an attempt's pipe to close after its result


class WorkerStartError(DagdError):
    """No worker process could be started."""


@dataclass(frozen=True)
class PoolLimits:
    size: int = 2
    max_size: int = 64
    idle_timeout: float = 60.0
    max_tasks: int = 1000
    max_memory: int | None = 512_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolLimits:
        size = settings.workers_size or max(2, os.cpu_count() or 2)
        most = settings.workers_max_size or settings.parallelism
        return cls(size=size, max_size=max(size, most),
                   idle_timeout=settings.workers_idle_timeout,
                   max_tasks=settings.workers_max_tasks,
                   max_memory=settings.workers_max_memory)


@dataclass(eq=False)
class _Worker:
    pid: int
    sock: socket.socket
    exited: asyncio.Future[int]
    single_use: bool = False
    busy: bool = False  # an attempt is in flight: its own read sees the socket end
    generation: int = 0  # the pool's generation when it was forked (see recycle)
    tasks: int = 0
    idle_since: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)  # DAG file -> source hash
    buffer: bytearray = field(default_factory=bytearray)

    async def read(self) -> dict[str, Any] | None:
        """The worker's next message; None once its socket closed (it died)."""
        loop = asyncio.get_running_loop()
        buf = self.buffer
        while True:
            if len(buf) >= HEADER.size:
                (size,) = HEADER.unpack_from(buf)
                if len(buf) >= HEADER.size + size:
                    data = bytes(buf[HEADER.size:HEADER.size + size])
                    del buf[:HEADER.size + size]
                    message: dict[str, Any] = orjson.loads(data)
                    return message
            try:
                chunk = await loop.sock_recv(self.sock, 65536)
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                return None
            buf += chunk

    async def send(self, data: bytes, fd: int) -> None:
        """Send a message with `fd` attached (the attempt's log pipe)."""
        sent = socket.send_fds(self.sock, [data], [fd])
        if sent < len(data):  # a large DAG text: the rest as the socket takes it
            await asyncio.get_running_loop().sock_sendall(self.sock, data[sent:])


class WorkerPool:
    def __init__(self, limits: PoolLimits, *, log_max_bytes: int, xcom_max_bytes: int) -> None:
        self.limits = limits
        self.log_max_bytes = log_max_bytes
        self.xcom_max_bytes = xcom_max_bytes
        self.workers: dict[int, _Worker] = {}  # the workers in service, single-use too
        self._by_pid: dict[int, _Worker] = {}  # every worker whose end is not known yet
        self._idle: list[_Worker] = []
        self._pooled = 0  # live workers that are not single-use
        self._waiters: deque[asyncio.Future[_Worker]] = deque()
        self._spawning = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: Process | None = None
        self._control: socket.socket | None = None
        self._server_lock = asyncio.Lock()
        self._exits: dict[int, int] = {}  # exits reported before the worker said hello
        self._shrink: asyncio.TimerHandle | None = None
        self._digests: dict[int, tuple[str, str]] = {}
        self._closing = False
        self._generation = 0
        self._ready_waiters: list[asyncio.Future[None]] = []
        self.started_workers = 0  # forked so far (for the bench and the tests)

    # -- the fork server -----------------------------------------------------------------
    async def _ensure_server(self) -> socket.socket:
        async with self._server_lock:
            if self._closing:
                raise WorkerStartError("the worker pool is closed")
            if self._control is not None:
                return self._control
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            env = task_environment()
            env["PYTHONUNBUFFERED"] = "1"
            try:
                # -P: the working directory does not go first on sys.path (see worker).
                self._server = await anyio.open_process(
                    [sys.executable, "-P", "-m", "dagd.executors.worker",
                     "--control", str(theirs.fileno()), "--parent", str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
                    pass_fds=(theirs.fileno(),), env=env, start_new_session=True,
                )
            except OSError as exc:
                mine.close()
                raise WorkerStartError(f"cannot start the worker fork server: {exc}") from None
            finally:
                theirs.close()
            mine.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                with anyio.fail_after(START_TIMEOUT):
                    ready = await loop.sock_recv(mine, 64)
            except BaseException:
                mine.close()
                await self._end_server()
                raise
            if ready != b"ready":
                mine.close()
                code = await self._end_server()
                raise WorkerStartError(
                    f"the worker fork server exited with code {code} before it was ready "
                    "(see the daemon's log for its error)")
            self._control = mine
            loop.add_reader(mine.fileno(), self._on_server)
            return mine

    async def _end_server(self) -> int | None:
        server, self._server = self._server, None
        if server is None:
            return None
        with anyio.move_on_after(5.0):
            return await server.wait()
        server.kill()
        with anyio.move_on_after(5.0, shield=True):
            await server.wait()
        return server.returncode

    def _on_server(self) -> None:
        control = self._control
        assert control is not None
        while True:
            try:
                data = control.recv(128)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._server_lost()
                return
            parts = data.split()
            if len(parts) == 3 and parts[0] == b"exited":
                self._exited(int(parts[1]), int(parts[2]))

    def _server_lost(self) -> None:
        """The fork server died: its workers die with it (SIGKILL); the next attempt
        starts another."""
        control, self._control = self._control, None
        if control is not None:
            asyncio.get_running_loop().remove_reader(control.fileno())
            control.close()
        if not self._closing:
            log.warning("the worker fork server ended; its workers end with it, and "
                        "another is started for the next attempt")
        for pid in list(self._by_pid):
            self._exited(pid, -signal.SIGKILL)
        server, self._server = self._server, None
        if server is not None:
            task = asyncio.get_running_loop().create_task(_reap(server))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _exited(self, pid: int, code: int) -> None:
        worker = self._by_pid.pop(pid, None)
        if worker is None:  # before its hello was read
            if len(self._exits) < 10_000:
                self._exits[pid] = code
            return
        if not worker.exited.done():
            worker.exited.set_result(code)
        # Died idle: forget it now. Mid-attempt, the attempt reads what the worker sent
        # before its end (a single-use worker exits right after its result) and cleans up.
        if pid in self.workers and not worker.busy:
            self._forget(worker)
            worker.sock.close()
            self._keep_ready()

    # -- workers -------------------------------------------------------------------------
    async def _fork(self, *, single_use: bool) -> _Worker:
        control = await self._ensure_server()
        mine, theirs = socket.socketpair()
        try:
            socket.send_fds(control, [b"fork"], [theirs.fileno()])
        except OSError as exc:
            mine.close()
            raise WorkerStartError(f"cannot ask the fork server for a worker: {exc}") from None
        finally:
            theirs.close()
        mine.setblocking(False)
        loop = asyncio.get_running_loop()
        worker = _Worker(0, mine, loop.create_future(), single_use=single_use,
                         generation=self._generation)
        try:
            with anyio.move_on_after(SPAWN_TIMEOUT) as scope:
                hello = await worker.read()
        except BaseException:
            mine.close()
            raise
        if scope.cancelled_caught:
            mine.close()
            # A fork server that does not answer is replaced.
            self._server_lost()
            raise WorkerStartError(f"no new worker process became ready within "
                                   f"{SPAWN_TIMEOUT:g}s: the fork server is replaced")
        if hello is None:
            mine.close()
            raise WorkerStartError("a new worker process ended before it was ready")
        worker.pid = int(hello["pid"])
        self.started_workers += 1
        self.workers[worker.pid] = worker
        self._by_pid[worker.pid] = worker
        if not single_use:
            self._pooled += 1
        if worker.pid in self._exits:  # it died already
            self._exited(worker.pid, self._exits.pop(worker.pid))
        return worker

    def _forget(self, worker: _Worker) -> None:
        if self.workers.pop(worker.pid, None) is not None and not worker.single_use:
            self._pooled -= 1
        if worker in self._idle:
            self._idle.remove(worker)

    def _spawn_soon(self) -> None:
        """Fork one pooled worker in the background and hand it to a waiter or the idle."""
        self._spawning += 1
        task = asyncio.get_running_loop().create_task(self._spawn_one())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn_one(self) -> None:
        try:
            worker = await self._fork(single_use=False)
        except Exception as exc:
            self._spawning -= 1
            if not self._closing:
                log.error("cannot start a worker process: %s", exc)
            if self._pooled == 0 and self._spawning == 0:  # nobody else will serve them
                self._tell_ready(exc)
                while self._waiters:
                    waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.set_exception(exc if isinstance(exc, DagdError) else
                                             WorkerStartError(str(exc)))
            return
        except BaseException:
            self._spawning -= 1
            raise
        self._spawning -= 1
        if worker.exited.done():
            return
        self._offer(worker)
        if self._waiters:
            self._grow()

    def _keep_ready(self) -> None:
        """Keep `size` workers, and one for each attempt waiting (a worker retired or
        killed may leave one waiting with no other worker free)."""
        if self._closing:
            return
        while self._pooled + self._spawning < self.limits.size:
            self._spawn_soon()
        if self._waiters:
            self._grow()

    def start(self) -> None:
        """Start the fork server and `size` workers in the background (no wait)."""
        self._keep_ready()

    async def _acquire(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()  # the most recently used: its caches are warm
            if not worker.exited.done():
                return worker
        waiter: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._pooled + self._spawning < self.limits.max_size:
            # Grow only for an attempt still waiting a moment later: short tasks free a
            # worker sooner than a new one starts, and the pool stays small for them.
            asyncio.get_running_loop().call_later(GROW_AFTER, self._grow_for, waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._offer(waiter.result())  # handed over as we were cancelled
            elif not waiter.done():
                waiter.cancel()
            raise

    def _grow_for(self, waiter: asyncio.Future[_Worker]) -> None:
        if not waiter.done():
            self._grow()

    def _grow(self) -> None:
        """Start workers for the attempts waiting, a few at a time (each fork copies the
        fork server's page tables: many at once would slow the busy ones)."""
        if self._closing:
            return
        waiting = sum(1 for w in self._waiters if not w.done())
        most = min(waiting, self.limits.size, self.limits.max_size - self._pooled)
        while self._spawning < most:
            self._spawn_soon()

    def _offer(self, worker: _Worker) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        worker.idle_since = time.monotonic()
        self._idle.append(worker)
        if self._ready_waiters and self._pooled >= self.limits.size:
            self._tell_ready()
        if self._pooled > self.limits.size and self._shrink is None:
            self._shrink = asyncio.get_running_loop().call_later(
                self.limits.idle_timeout, self._retire_idle)

    def _retire_idle(self) -> None:
        """Retire the workers idle for `idle_timeout` beyond `size`, oldest first."""
        self._shrink = None
        now = time.monotonic()
        for worker in sorted(self._idle, key=lambda w: w.idle_since):
            if self._pooled <= self.limits.size:
                break
            if now - worker.idle_since >= self.limits.idle_timeout:
                self._retire(worker)
        if self._pooled > self.limits.size and self._idle:
            oldest = min(w.idle_since for w in self._idle)
            delay = max(oldest + self.limits.idle_timeout - now, 0.01)
            self._shrink = asyncio.get_running_loop().call_later(delay, self._retire_idle)

    def set_limits(self, limits: PoolLimits) -> None:
        """New limits (core.parallelism reloaded, which max_size = 0 follows): attempts
        waiting for a worker get one if the pool may now grow; a lower maximum takes
        effect as workers are retired."""
        self.limits = limits
        self._keep_ready()

    def recycle(self) -> None:
        """Replace every worker that has run an attempt, idle ones now and busy ones
        after their attempt: the DAGs were reloaded, and a helper module beside the DAG
        files that a worker imported may have changed (the DAG files themselves are
        keyed by their text and need none of this)."""
        self._generation += 1
        for worker in list(self._idle):
            if worker.tasks:
                self._retire(worker)
            else:
                worker.generation = self._generation  # has imported nothing of the DAGs
        self._keep_ready()

    def _retire(self, worker: _Worker) -> None:
        """Let a worker go: it sees its socket close and exits."""
        self._forget(worker)
        worker.sock.close()

    def _release(self, worker: _Worker, reply: dict[str, Any]) -> None:
        worker.busy = False
        worker.tasks += 1
        rss = int(reply.get("rss") or 0)
        limit = self.limits.max_memory
        if worker.single_use or reply.get("retire") or worker.generation != self._generation:
            self._retire(worker)
        elif limit and rss > limit:
            log.info("worker %d recycled: its resident memory, %s, passed "
                     "max_memory_per_worker (%s)", worker.pid, format_bytes(rss),
                     format_bytes(limit))
            self._retire(worker)
        elif worker.tasks >= self.limits.max_tasks:
            self._retire(worker)
        else:
            self._offer(worker)
            return
        self._keep_ready()

    async def _kill(self, worker: _Worker) -> None:
        """Kill a worker with its process group and every process below it."""
        self._forget(worker)
        try:
            await stop_pid(worker.pid, lambda: asyncio.shield(worker.exited), tree=True)
        finally:
            worker.sock.close()
            self._keep_ready()

    # -- an attempt ----------------------------------------------------------------------
    def _digest(self, dag: Any) -> str:
        """The hash of the DAG file's text the scheduler loaded ("" if it has none)."""
        source = dag.source
        if source is None:
            return ""
        cached = self._digests.get(id(dag))
        if cached is not None and cached[0] is source:
            return cached[1]
        if len(self._digests) > 4096:
            self._digests.clear()
        digest = hashlib.blake2b(source.encode(), digest_size=16).hexdigest()
        self._digests[id(dag)] = (source, digest)
        return digest

    def _message(self, spec: AttemptSpec, worker: _Worker, memory_limit: int | None
                 ) -> bytes:
        dag = spec.task.dag
        digest = self._digest(dag)
        message: dict[str, Any] = {
            "dag_file": spec.dag_file, "dag_hash": digest, "dag_id": spec.dag_id,
            "task_id": spec.task_id, "context": spec.context.to_json(),
            "xcom_max_bytes": self.xcom_max_bytes,
        }
        if digest and worker.sources.get(spec.dag_file) != digest:
            # The text the scheduler loaded: the worker runs that version, not whatever
            # the file on disk says now.
            message["dag_source"] = dag.source
            worker.sources[spec.dag_file] = digest
        if worker.single_use:
            message["single_use"] = True
        if memory_limit:
            message["memory_limit"] = memory_limit
        if spec.task.inherit_env:
            env = task_environment(inherit=True)
            env["PYTHONUNBUFFERED"] = "1"
            message["env"] = env
        return frame(message)

    async def _worker_for(self, spec: AttemptSpec, memory_limit: int | None) -> _Worker:
        if spec.isolation == "fresh" or memory_limit or spec.task.inherit_env:
            return await self._fork(single_use=True)
        return await self._acquire()

    async def execute(
        self, spec: AttemptSpec, *, memory_limit: int | None = None,
        on_pid: Callable[[AttemptSpec, int], None] | None = None,
    ) -> AttemptResult:
        attempt_log = AttemptLog(spec.log_path, self.log_max_bytes)
        pipe = _LogPipe(attempt_log)
        worker: _Worker | None = None
        try:
            try:
                worker = await self._start(spec, memory_limit, pipe.write_fd)
            finally:
                pipe.close_write_end()
            if on_pid is not None:
                on_pid(spec, worker.pid)
            oom_before = oom_kills()
            with anyio.move_on_after(spec.timeout) as scope:
                reply = await _reply(worker)
            if scope.cancelled_caught:
                with anyio.CancelScope(shield=True):  # bounded: grace + reap wait
                    await self._kill(worker)
                await pipe.drained()
                attempt_log.write(
                    f"[dagd] {spec.ref}: execution_timeout exceeded, process killed\n")
                return AttemptResult.timeout(spec)
            if reply is None:
                await pipe.drained()
                error = crash_text(await self._exit_code(worker), memory_limit, oom_before)
                attempt_log.write(f"[dagd] {spec.ref}: {error}\n")
                return AttemptResult.failure(spec, error=error, reason="crashed")
            self._release(worker, reply)
            worker = None  # back in the pool: another attempt's now
            await pipe.drained()
            if reply.get("ok"):
                return AttemptResult(spec=spec, ok=True, xcom=reply.get("xcom"))
            return AttemptResult(spec=spec, ok=False, error=reply.get("error"),
                                 error_names=reply.get("error_names") or [])
        except WorkerStartError as exc:  # no worker to run it on: the attempt fails
            attempt_log.write(f"[dagd] {spec.ref}: {exc.message}\n")
            return AttemptResult.failure(spec, exc, reason="no worker")
        except BaseException:
            if worker is not None and worker.pid in self.workers:
                with anyio.CancelScope(shield=True):
                    await self._kill(worker)
            raise
        finally:
            pipe.close()
            attempt_log.close()

    async def _start(self, spec: AttemptSpec, memory_limit: int | None, fd: int) -> _Worker:
        """A worker that has received the attempt (one whose socket turns out dead, having
        died while idle, is dropped and the next one tried)."""
        while True:
            worker = await self._worker_for(spec, memory_limit)
            try:
                worker.busy = True
                await worker.send(self._message(spec, worker, memory_limit), fd)
                return worker
            except (BrokenPipeError, ConnectionError, OSError):
                worker.sources.clear()
                self._forget(worker)
                worker.sock.close()
                signal_group(worker.pid, signal.SIGKILL)
                self._keep_ready()

    async def _exit_code(self, worker: _Worker) -> int | None:
        """How a worker whose socket closed ended, as the fork server reports it."""
        self._forget(worker)
        worker.sock.close()
        # What its task left in its group ends with it, as it would with a clean exit.
        signal_group(worker.pid, signal.SIGKILL)
        self._keep_ready()
        with anyio.move_on_after(5.0):
            return await asyncio.shield(worker.exited)
        return None

    # -- the end ---------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop every worker and the fork server."""
        self._closing = True
        self._tell_ready(WorkerStartError("the worker pool is closed"))
        if self._shrink is not None:
            self._shrink.cancel()
            self._shrink = None
        for task in list(self._tasks):
            task.cancel()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(WorkerStartError("the worker pool is closed"))
        for worker in list(self.workers.values()):
            self._forget(worker)
            worker.sock.close()
            signal_group(worker.pid, signal.SIGKILL)
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        control, self._control = self._control, None
        if control is not None:
            asyncio.get_running_loop().remove_reader(control.fileno())
            control.close()  # the fork server sees it close and exits
        with anyio.CancelScope(shield=True):
            await self._end_server()
        self._by_pid.clear()

    async def ready(self) -> None:
        """Wait until `size` workers are started (for a benchmark or a test that wants
        the pool warm, as a daemon's is soon after its start)."""
        self._keep_ready()
        if self._pooled >= self.limits.size:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready_waiters.append(waiter)
        await waiter

    def _tell_ready(self, error: BaseException | None = None) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def size(self) -> int:
        return self._pooled


async def _reap(server: Process) -> None:
    with anyio.move_on_after(5.0):
        await server.wait()
        return
    server.kill()


async def _reply(worker: _Worker) -> dict[str, Any] | None:
    """The worker's result, or None once it died: when the fork server reports its end,
    whatever it sent before is in the socket already; a process the task forked may keep
    the socket open, so its end is not waited for."""
    read = asyncio.ensure_future(worker.read())
    either: set[asyncio.Future[Any]] = {read, worker.exited}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not read.done():
            await asyncio.wait({read}, timeout=0.5)
        return read.result() if read.done() else None
    finally:
        if not read.done():
            read.cancel()


class _LogPipe:
    """An attempt's own pipe: its write end becomes the worker's fds 1 and 2 for that
    attempt; what arrives on the read end goes into the attempt's capped log (past the
    cap it is read and dropped, so the task never blocks on a full pipe)."""

    def __init__(self, attempt_log: AttemptLog) -> None:
        self.log = attempt_log
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.read_fd, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.read_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._loop.remove_reader(self.read_fd)
            self.done.set()
        elif not self.log.truncated:
            self.log.write(chunk)

    def close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    async def drained(self) -> None:
        """Wait a moment for the pipe to close: a process that still holds it past that
        writes into nothing (the pipe is closed), never into another attempt's log."""
        if self.done.is_set():
            return
        with anyio.move_on_after(DRAIN_WAIT):
            await self.done.wait()

    def close(self) -> None:
        self.close_write_end()
        if not self.done.is_set():
            self._loop.remove_reader(self.read_fd)
        os.close(self.read_fd)
