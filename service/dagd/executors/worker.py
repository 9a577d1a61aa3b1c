"""The worker side of the warm pool: the fork server and the workers it forks.

`python -P -m dagd.executors.worker --control FD` is the fork server, started by the
daemon's pool (`dagd.executors.pool`) with a clean environment (no daemon secrets) and a
SOCK_SEQPACKET control socket. It imports dagd, and what DAG files commonly use, once;
for each `fork` packet (which carries one end of a fresh socket pair) it forks a worker,
and it reports each worker's end as `exited PID CODE` (CODE as `subprocess` gives it:
negative for a signal). It dies with the daemon (PR_SET_PDEATHSIG), and its workers
die with it. Forking a process that already holds dagd costs a few milliseconds where
starting Python and importing dagd cost about 85.

A worker runs in a session of its own (its pid is its process group's id, so a signal to
the group reaches what its task started) and is a child subreaper, so a process its task
started that left the group is re-parented to it. It serves attempts one at a time over
its socket: a length-prefixed JSON spec arrives with one file descriptor, the write end
of that attempt's log pipe, which becomes the worker's fds 1 and 2 for the attempt (print,
logging, C extensions and subprocesses alike write into that attempt's log, and nothing
else does). Once the task has returned or raised, what it left running is ended, fds 1
and 2 go back to /dev/null (so later output reaches no log), and the result goes back as
JSON with the worker's resident memory. `-P` keeps the working directory off sys.path, so
a DAGs folder's `http.py` cannot stand in for the standard module.

A worker keeps each DAG module it has loaded, keyed by the DAG file's source hash: the
pool sends the text only to a worker that does not hold that version yet, and a new text
for a file replaces the old module. It asks to be retired (the pool starts a fresh one)
when its task left a thread running (the thread could write into the next attempt's
log), when the attempt was single-use (`isolation="fresh"`, a memory limit, an inherited
environment), or when a DAG file failed to load. What a task changed in the process's
environment variables, working directory or sys.stdout/sys.stderr is put back.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import orjson

from dagd.executors.hygiene import ProcessState

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE = 1.0  # seconds the task's leftover processes get between SIGTERM and SIGKILL
HEADER = struct.Struct("!I")  # each message: its length, then that many bytes of JSON
# What DAG files commonly import, loaded once in the fork server and shared by its
# workers (copy-on-write) instead of imported again per worker.
PRELOAD = (
    "dagd", "dagd.authoring.loader", "dagd.executors.base", "dagd.executors.proctree",
    "dagd.executors.failure", "dagd.triggers.timers", "dagd.triggers.files",
    "dagd.triggers.webhooks", "dagd.kinds.shell", "dagd.kinds.http", "dagd.kinds.sql",
)
# With the `airflow` extra installed (pendulum), what Airflow DAG files import is loaded
# once too: pendulum and the `airflow` names (served by dagd.compat while a file loads).
AIRFLOW_PRELOAD = ("pendulum", "dagd.compat.airflow.decorators", "dagd.compat.airflow.dag",
                   "dagd.compat.airflow.context")


# -- messages --------------------------------------------------------------------------
def frame(message: dict[str, Any]) -> bytes:
    data = orjson.dumps(message)
    return HEADER.pack(len(data)) + data


def _receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and the descriptors sent with it; None when the pool hung up."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 4)
    if not data:
        return None
    while len(data) < HEADER.size:
        more = sock.recv(HEADER.size - len(data))
        if not more:
            return None
        data += more
    (size,) = HEADER.unpack_from(data)
    body = bytearray(data[HEADER.size:])
    while len(body) < size:
        more = sock.recv(min(size - len(body), 1 << 20))
        if not more:
            return None
        body += more
    return orjson.loads(bytes(body)), fds


# -- process set-up ----------------------------------------------------------------------
def _prctl(option: int, value: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _die_with(parent: int) -> None:
    """Die with `parent` (SIGKILL when it ends); exit now if it already has."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _has_children() -> bool:
    """True if this process has any child, running or exited and not yet collected.

    A subreaper adopts the orphans of its descendants, so with no child it has no
    descendant at all: one system call saves the look through /proc."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _end_leftovers() -> None:
    """The task has returned or raised: what it started and left running ends now."""
    if not _has_children():
        return
    from dagd.executors.proctree import end_descendants, reap

    reap()  # what exited and was never waited for (a Popen kept in a global)

    left = end_descendants(LEFTOVER_GRACE)
    if left:
        names = ", ".join(f"{pid} ({name})" for pid, name in left[:10])
        more = f" and {len(left) - 10} more" if len(left) > 10 else ""
        sys.stderr.write(f"[dagd] stopped {len(left)} process(es) the task left running: "
                         f"pid {names}{more}\n")
        sys.stderr.flush()


def _limit_memory(limit: int) -> None:
    """Cap the memory this process may take: on Linux its data (heap, anonymous maps:
    what a task allocates, not the libraries it maps), elsewhere its address space."""
    import resource

    kind = resource.RLIMIT_AS
    release = os.uname().release.split(".")
    if sys.platform.startswith("linux") and release[0].isdigit():
        # Since Linux 4.7 RLIMIT_DATA counts anonymous maps too (large allocations).
        minor = release[1] if len(release) > 1 and release[1].isdigit() else "0"
        if (int(release[0]), int(minor)) >= (4, 7):
            kind = resource.RLIMIT_DATA
    _soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    # The hard limit too: the task cannot raise it again (the worker serves no other).
    resource.setrlimit(kind, (limit, limit))


def _rss() -> int:
    """The most resident memory this process has held, in bytes: what it grew to stays
    (a freed heap is seldom returned), so the peak is what recycling looks at, as
    Celery's max_memory_per_child does."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * 1024 if sys.platform.startswith("linux") else peak


# -- one attempt -------------------------------------------------------------------------
class Worker:
    """A worker's state between attempts: its DAG modules and what a task must not
    change for the next one."""

    def __init__(self) -> None:
        # DAG file path -> (source hash, {dag_id: DAG})
        self.modules: dict[str, tuple[str, dict[str, Any]]] = {}
        self.devnull = os.open(os.devnull, os.O_WRONLY)
        self.state = ProcessState()
        self.retire = False
        self.pid = os.getpid()

    def dag(self, spec: dict[str, Any]) -> Any:
        from dagd.authoring.loader import load_file
        from dagd.errors import DagdError

        path, digest = spec["dag_file"], spec["dag_hash"]
        entry = self.modules.get(path)
        if entry is None or entry[0] != digest or not digest:
            source = spec.get("dag_source")
            if source is None and digest:  # the pool believed this worker held the text
                self.retire = True
                raise DagdError("the worker was not sent the DAG file's text", file=path)
            # No digest: a DAG the scheduler did not load from a file's text; the file
            # on disk is read, every time.
            self.modules.pop(path, None)
            dags, failure = load_file(Path(path), source)
            if failure is not None:
                self.retire = True  # its modules may be half-imported
                raise DagdError(f"cannot load DAG file: {failure.message}",
                                file=failure.file, line=failure.line) from failure.exception
            entry = self.modules[path] = (digest, {d.dag_id: d for d in dags})
            # The DAG file's folder, which the loader put on sys.path, stays there for
            # the attempts after this one (their tasks may import a module beside it).
            self.state.path = list(sys.path)
        dag = entry[1].get(spec["dag_id"])
        if dag is None:
            raise DagdError(f"DAG {spec['dag_id']!r} not found", file=path)
        return dag

    def run(self, spec: dict[str, Any], log_fd: int) -> dict[str, Any]:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        try:
            result = self._call(spec)
            if os.getpid() != self.pid:
                # A process the task forked, returning through dagd's code: it is not the
                # worker, and must not answer for it.
                os._exit(0 if result.get("ok") else 1)
            _end_leftovers()
        finally:
            self._settle()
        result["rss"] = _rss()
        result["retire"] = self.retire or bool(spec.get("single_use"))
        return result

    def _call(self, spec: dict[str, Any]) -> dict[str, Any]:
        from dagd.authoring.context import Context, reset_current_context, set_current_context
        from dagd.executors.base import encode_xcom

        try:
            if spec.get("env") is not None:  # before the import: module-level reads see it
                os.environ.clear()
                os.environ.update(spec["env"])
            task = self.dag(spec).get_task(spec["task_id"])
            ctx = Context.from_json(spec["context"])
            token = set_current_context(ctx)
            try:
                if spec.get("memory_limit"):
                    _limit_memory(spec["memory_limit"])
                value = _in_loop(task, ctx) if task.runs_in_loop else task.call_sync(ctx)
            finally:
                reset_current_context(token)
            return {"ok": True, "xcom": encode_xcom(value, spec["xcom_max_bytes"])}
        except BaseException as exc:  # the task's own failure, reported, not raised
            return _report(spec, exc)

    def _settle(self) -> None:
        """After an attempt: output goes nowhere, and what the task changed is put back."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os.dup2(self.devnull, 1)
        os.dup2(self.devnull, 2)
        if not self.state.restore():
            self.retire = True


def _in_loop(task: Any, ctx: Any) -> Any:
    """A task that runs in the daemon's loop there (an async function, a shell command),
    sent to a worker all the same (a Dask worker's pool, `dagd.executors.dask_worker`):
    run in an event loop of its own, its log notes and a command's output written to
    fd 1, which is the attempt's log."""
    import asyncio

    from dagd.executors.logs import AttemptLog, reset_current_log, set_current_log

    attempt_log = AttemptLog("/dev/stdout", 1 << 62)  # the pool's end caps the log
    token = set_current_log(attempt_log)
    try:
        return asyncio.run(task.execute(ctx))
    finally:
        reset_current_log(token)
        attempt_log.close()


def _report(spec: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    from dagd.config import format_bytes
    from dagd.executors.failure import format_failure
    from dagd.retry import exception_names

    error = f"{type(exc).__name__}: {exc}"
    text = format_failure(exc)
    limit = spec.get("memory_limit")
    if isinstance(exc, MemoryError) and limit:
        error = f"MemoryError: memory limit of {format_bytes(limit)} exceeded"
        text = error + text[text.index("\n"):]
    sys.stderr.write(text)
    sys.stderr.flush()
    return {"ok": False, "error": error, "error_names": exception_names(type(exc))}


def serve(sock: socket.socket) -> None:
    """A worker's life: say hello, then run attempts until the pool hangs up or the
    worker asks to be retired."""
    worker = Worker()
    # A process the task forks holds none of the worker's channel to the pool.
    os.register_at_fork(after_in_child=sock.close)
    os.dup2(worker.devnull, 1)
    os.dup2(worker.devnull, 2)
    sock.sendall(frame({"pid": os.getpid()}))
    while True:
        got = _receive(sock)
        if got is None:
            return
        spec, fds = got
        if not fds:
            return
        for extra in fds[1:]:
            os.close(extra)
        result = worker.run(spec, fds[0])
        sock.sendall(frame(result))
        if result["retire"]:
            return


# -- the fork server ---------------------------------------------------------------------
def _fork_worker(control: socket.socket, fd: int) -> None:
    server = os.getpid()
    pid = os.fork()
    if pid:
        os.close(fd)
        return
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        os.setsid()
        _die_with(server)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        serve(socket.socket(fileno=fd))
    except BaseException:  # a broken socket: the pool sees the worker end
        code = 1
    finally:
        os._exit(code)


def _report_exits(control: socket.socket) -> None:
    """Collect the workers that ended and tell the pool how each did."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        try:
            control.send(f"exited {pid} {os.waitstatus_to_exitcode(status)}".encode())
        except OSError:
            return


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m dagd.executors.worker")
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args()
    _die_with(args.parent)
    control = socket.socket(fileno=args.control)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import importlib
    import importlib.util

    for name in PRELOAD:
        importlib.import_module(name)
    if importlib.util.find_spec("pendulum") is not None:
        for name in AIRFLOW_PRELOAD:
            importlib.import_module(name)
    # What is loaded now is shared with every worker: keep the collector off its pages.
    gc.collect()
    gc.freeze()

    signal.signal(signal.SIGCHLD, lambda _sig, _frame: _report_exits(control))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle
    try:
        control.send(b"ready")
    except OSError:  # the daemon is gone already (it stopped as it started)
        return 0
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 64, 1)
        except ConnectionResetError:
            return 0
        if not message:
            return 0  # the pool closed: the workers end with this process
        if message == b"fork" and fds:
            _fork_worker(control, fds[0])
        else:
            for fd in fds:
                os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
