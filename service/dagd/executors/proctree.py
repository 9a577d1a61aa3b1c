"""Process trees, read from /proc: a process's descendants, and stopping all of them.

A task may start processes that leave the worker's process group (`setsid`, a daemon's
double fork); a signal to the group misses them. These helpers find them by parentage
instead: the children of each of a process's threads (`/proc/PID/task/TID/children`),
or, where the kernel does not offer that file, a walk of every `/proc/PID/stat`. A pid
is remembered with its start time, so a pid the kernel has given to someone else since
is never signalled. Blocking and plain (no anyio): the worker imports this module too.
Linux only; elsewhere a process has no known descendants.
"""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict

# (pid, start time in clock ticks since boot): a process, not a reusable number
Proc = tuple[int, int]

STEP = 0.02  # seconds between two looks at processes that are not our children


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    return data.rsplit(b")", 1)[-1].decode().split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def alive(proc: Proc) -> bool:
    """True while the process runs (a zombie is dead) and is still the one remembered."""
    fields = _stat(proc[0])
    return (fields is not None and len(fields) > 19 and fields[0] not in ("Z", "X")
            and int(fields[19]) == proc[1])


def _children(pid: int) -> list[int] | None:
    """The children of every thread of `pid`; None if the kernel lacks the file."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                found.extend(int(c) for c in file.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread just ended
            return None  # no CONFIG_PROC_CHILDREN: walk /proc instead
        except (OSError, ValueError):
            continue
    return found


def _children_by_walk() -> dict[int, list[int]]:
    by_parent: dict[int, list[int]] = defaultdict(list)
    try:
        names = os.listdir("/proc")
    except OSError:
        return by_parent
    for name in names:
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None and len(fields) > 1:
                by_parent[int(fields[1])].append(int(name))
    return by_parent


def descendants(pid: int) -> list[Proc]:
    """Every live process below `pid` (children first), each with its start time."""
    found: list[Proc] = []
    walked: dict[int, list[int]] | None = None
    todo = [pid]
    seen = {pid}
    while todo:
        parent = todo.pop(0)
        kids = _children(parent) if walked is None else walked.get(parent, [])
        if kids is None:
            walked = _children_by_walk()
            kids = walked.get(parent, [])
        for kid in kids:
            if kid in seen:
                continue
            seen.add(kid)
            started = start_time(kid)
            if started is not None and alive((kid, started)):
                found.append((kid, started))
                todo.append(kid)
    return found


def _signal(proc: Proc, sig: int) -> None:
    if alive(proc):  # still the process we mean, not a new one with its pid
        try:
            os.kill(proc[0], sig)
        except (ProcessLookupError, PermissionError):
            pass


def signal_all(procs: list[Proc], sig: int) -> None:
    for proc in procs:
        _signal(proc, sig)


def kill_trees(roots: list[Proc], *, include_roots: bool = True) -> list[Proc]:
    """SIGKILL the roots and everything below them; return what was killed.

    Each process is stopped (SIGSTOP) before its children are listed, and listed again
    until no new one appears, so a process that keeps forking cannot outrun the kill.
    """
    stopped: list[Proc] = []
    todo = [r for r in roots if include_roots]
    parents = list(roots)
    while todo or parents:
        for proc in todo:
            _signal(proc, signal.SIGSTOP)
            stopped.append(proc)
            parents.append(proc)
        todo = []
        known = {p[0] for p in stopped}
        for parent in parents:
            if alive(parent):
                todo.extend(d for d in descendants(parent[0]) if d[0] not in known)
                known.update(d[0] for d in todo)
        parents = []
    for proc in stopped:
        _signal(proc, signal.SIGKILL)
    return stopped


def reap() -> None:
    """Collect whatever children of this process have exited (a subreaper's orphans)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def command(pid: int) -> str:
    """The process's command name (`comm`), or "?" once it is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as file:
            return file.read().decode(errors="replace").strip() or "?"
    except OSError:
        return "?"


def end_descendants(grace: float) -> list[tuple[int, str]]:
    """This process's own descendants: SIGTERM, up to `grace` seconds to exit, SIGKILL.

    For a worker whose task returned: what it left running ends with it. Returns the
    pid and command of each process found (none, the common case, costs one read of
    /proc).
    """
    me = os.getpid()
    left = descendants(me)
    if not left:
        return []
    found = [(pid, command(pid)) for pid, _ in left]
    signal_all(left, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap()
        if not any(alive(p) for p in left) and not descendants(me):
            break
        time.sleep(STEP)  # no exit notification for a grandchild: look again
    kill_trees([(me, start_time(me) or 0)], include_roots=False)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and descendants(me):
        reap()
        time.sleep(STEP)
    reap()
    return found
