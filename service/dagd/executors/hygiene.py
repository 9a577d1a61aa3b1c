"""What one attempt in a warm worker must not leave to the next: the process-wide state a
task can change, taken when the worker starts and put back after each attempt.

Put back: environment variables (os.environ and the C library's own, which a process
started later inherits), the working directory, sys.stdout/sys.stderr (recreated when a
task closed them), sys.path (so no DAG folder's module can shadow an installed one, as
`-P` ensures at the start), the umask, the signal mask and handlers, a pending alarm,
the default socket timeout and the soft resource limits. What cannot be put back asks
for the worker to be retired: a thread still running (it could write into the next
attempt's log), a raised nice value, a lowered hard resource limit. Plain (no anyio): the
worker imports it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import sys
import threading
from typing import Any

# Signals whose handlers a task may set and the next attempt must not inherit.
KEPT_SIGNALS = (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE, signal.SIGCHLD)
KEPT_LIMITS = tuple(getattr(resource, name) for name in (
    "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_STACK", "RLIMIT_FSIZE",
    "RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_DATA") if hasattr(resource, name))

try:
    _LIBC: Any = ctypes.CDLL(None)
    _ENVIRON: Any = ctypes.POINTER(ctypes.c_char_p).in_dll(_LIBC, "environ")
except (OSError, ValueError, AttributeError):  # no libc environ to look at
    _LIBC = _ENVIRON = None


def _c_environ() -> list[bytes] | None:
    """The C library's environment (what a process started now inherits), or None."""
    if _ENVIRON is None:
        return None
    entries: list[bytes] = []
    i = 0
    while (entry := _ENVIRON[i]) is not None:
        entries.append(entry)
        i += 1
    return entries


def _environ_data() -> dict[Any, Any]:
    """os.environ's own mapping (bytes on POSIX): comparing it is a plain dict
    comparison, where comparing os.environ decodes every variable."""
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else dict(os.environ)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stream(fd: int) -> Any:
    return open(fd, "w", buffering=1, closefd=False, errors="backslashreplace")


class ProcessState:
    def __init__(self) -> None:
        self.environ = dict(os.environ)
        self.environ_data = dict(_environ_data())
        self.c_environ = _c_environ()
        self.cwd = os.getcwd()
        self.streams = (sys.stdout, sys.stderr)
        self.path = list(sys.path)
        self.umask = _umask()
        self.nice = os.nice(0)
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self.handlers = {sig: signal.getsignal(sig) for sig in KEPT_SIGNALS}
        self.socket_timeout = socket.getdefaulttimeout()
        self.limits = {kind: resource.getrlimit(kind) for kind in KEPT_LIMITS}

    def restore(self) -> bool:
        """Put back what the last attempt changed; False if the worker must be retired."""
        keep = True
        self._streams()
        # A timer the task left pending would fire in the next attempt.
        if signal.getitimer(signal.ITIMER_REAL)[0]:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self.handlers.items():
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
        if signal.pthread_sigmask(signal.SIG_BLOCK, []) != self.mask:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        if threading.active_count() > 1:
            keep = False  # a thread of the task's could write into the next log
        self._environment()
        try:
            if os.getcwd() != self.cwd:
                os.chdir(self.cwd)
        except OSError:
            os.chdir(self.cwd)
        if sys.path != self.path:
            sys.path[:] = self.path
        if _umask() != self.umask:
            os.umask(self.umask)
        if socket.getdefaulttimeout() != self.socket_timeout:
            socket.setdefaulttimeout(self.socket_timeout)
        if os.nice(0) != self.nice:
            keep = False  # an unprivileged process cannot lower it again
        return self._limits() and keep

    def _streams(self) -> None:
        for stream in (sys.stdout, sys.stderr, *self.streams):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        out, err = self.streams
        if getattr(out, "closed", True):
            out = _stream(1)
        if getattr(err, "closed", True):
            err = _stream(2)
        self.streams = (out, err)
        sys.stdout, sys.stderr = self.streams

    def _environment(self) -> None:
        if _environ_data() != self.environ_data:
            os.environ.clear()
            os.environ.update(self.environ)
        if self.c_environ is not None and _c_environ() != self.c_environ:
            # os.putenv, or a C library's setenv: the C environment, which the processes
            # the next attempt starts would get, is rebuilt from what the worker had.
            _LIBC.clearenv()
            for name, value in self.environ.items():
                os.putenv(name, value)

    def _limits(self) -> bool:
        keep = True
        for kind, (soft, hard) in self.limits.items():
            now_soft, now_hard = resource.getrlimit(kind)
            if now_hard != hard:
                keep = False  # a lowered hard limit cannot be raised again
            elif now_soft != soft:
                resource.setrlimit(kind, (soft, hard))
        return keep
