"""Why a worker process ended without a result, as the attempt's error says it: the
exit code or the signal, and whether the kernel's OOM killer or the task's memory limit
was the likely cause (cgroup v2 `memory.events`)."""

from __future__ import annotations

import signal
from pathlib import Path

from dagd.config import format_bytes


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


def oom_kills() -> int | None:
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


def crash_text(code: int | None, memory_limit: int | None, oom_before: int | None) -> str:
    """What ended a worker that reported nothing, as the attempt's error says it."""
    if code is None or code >= 0:
        return f"worker process exited with code {code} before reporting a result"
    try:
        sig = signal.Signals(-code)
    except ValueError:  # a real-time signal has no name
        return f"worker process killed by signal {-code} before reporting a result"
    if sig == signal.SIGKILL and oom_before is not None:
        after = oom_kills()
        if after is not None and after > oom_before:
            return ("worker process killed by the kernel's out-of-memory killer (SIGKILL) "
                    "before reporting a result: the machine or the daemon's cgroup ran out "
                    "of memory")
    text = f"worker process killed by signal {sig.name} before reporting a result"
    if memory_limit and sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
        # C code that does not check for a failed allocation dies like this.
        text += f" (its memory limit of {format_bytes(memory_limit)} may have been exceeded)"
    return text
