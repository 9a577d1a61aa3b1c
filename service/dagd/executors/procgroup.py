"""Process groups: stopping a child of dagd together with everything it started, and
reading its output while it runs.

A child that dagd starts (a worker process, a shell command) runs in a session of its
own, so its pid is also its process group's id. Stopping it means SIGTERM to the whole
group, then SIGKILL to whatever is left after `KILL_GRACE` seconds; with `tree`, the
same for every descendant that left the group (`setsid`, a double fork), found by
parentage (`dagd.executors.proctree`) before the first signal. Its output is
pumped into the attempt's log until the pipe closes; past the log's cap the pump keeps
reading, so that the child never blocks on a full pipe.

While the daemon stops (`STOPPING.until`, set once its grace period is over), every wait
here ends by that deadline: each attempt has had the whole grace period already, and
the daemon must exit within it plus two seconds, whatever a task does with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ByteReceiveStream, Process

from dagd.executors.logs import AttemptLog
from dagd.executors.proctree import Proc, alive, descendants, kill_trees, signal_all, start_time

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
REAP_WAIT = 5.0  # seconds to wait for the process to exit after SIGKILL


class StopDeadline:
    """The daemon's stop: the monotonic time by which a stopped process must be gone
    (None while the daemon serves)."""

    def __init__(self) -> None:
        self.until: float | None = None

    def bound(self, seconds: float) -> float:
        """`seconds`, cut to what is left before the deadline."""
        if self.until is None:
            return seconds
        return max(0.0, min(seconds, self.until - time.monotonic()))


STOPPING = StopDeadline()


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to every process of the group; a group already gone is no error."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def stop_group(
    process: Process, *, grace: float = KILL_GRACE, members: bool = False, tree: bool = False
) -> None:
    """SIGTERM the process's group; SIGKILL whatever is left after `grace` seconds.

    The grace ends early when the process exits; with `members`, only once every member
    of its group has exited too (they get the same grace as the process itself). With
    `tree`, its descendants outside the group get the same signals and the same grace,
    and at the end everything below the process (and below them) is killed.
    """
    await stop_pid(process.pid, process.wait, grace=grace, members=members, tree=tree)


async def stop_pid(
    pgid: int, wait: Callable[[], Awaitable[object]], *, grace: float = KILL_GRACE,
    members: bool = False, tree: bool = False,
) -> None:
    """`stop_group` for a group leader known by its pid; `wait` returns once it exited
    (for a worker of the pool, which is the fork server's child, not ours)."""
    root: Proc | None = None
    escaped: list[Proc] = []
    if tree:
        started = start_time(pgid)
        root = (pgid, started) if started is not None else None
        # Before any signal: once the process dies, its orphans are no longer below it.
        escaped = await anyio.to_thread.run_sync(descendants, pgid)
    signal_group(pgid, signal.SIGTERM)
    signal_all(escaped, signal.SIGTERM)
    with anyio.move_on_after(STOPPING.bound(grace)):
        await wait()
        if members:
            await _group_gone(pgid)
        if escaped:
            await _all_gone(escaped)
    if tree:
        roots = ([root] if root is not None else []) + escaped
        await anyio.to_thread.run_sync(kill_trees, roots)
    signal_group(pgid, signal.SIGKILL)  # also anything the process left in its group
    # At the stop, at least a moment: a process SIGKILLed is gone within milliseconds.
    with anyio.move_on_after(max(STOPPING.bound(REAP_WAIT), 0.1)):
        await wait()


async def _all_gone(procs: list[Proc]) -> None:
    # Not our children: no exit notification exists for them (the caller bounds it).
    while True:
        if not any(alive(p) for p in procs):
            return
        await anyio.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in the group. Blocking: reads /proc."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A zombie also answers signal 0, and where PID 1 does not reap orphans (some
    # containers) it stays forever: look at the members' states where /proc exists.
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False


async def _group_gone(pgid: int) -> None:
    # The other members of the group are not our children: no exit notification exists
    # for them, so look every 50 ms (the caller bounds the wait).
    while True:
        if not await anyio.to_thread.run_sync(group_alive, pgid):
            return
        await anyio.sleep(0.05)


async def pump(
    stream: ByteReceiveStream | None,
    attempt_log: AttemptLog | None,
    done: anyio.Event,
    *,
    tail: Callable[[bytes], None] | None = None,
) -> None:
    """Copy a child's output into its attempt's log until the pipe closes, then set `done`.

    `tail`, if given, sees every chunk (the whole output, even past the log's cap).
    """
    try:
        if stream is None:
            return
        async for chunk in stream:
            if tail is not None:
                tail(chunk)
            if attempt_log is not None and not attempt_log.truncated:
                await anyio.to_thread.run_sync(attempt_log.write, chunk)
            # past the log's cap, keep reading so the child never blocks on a full pipe
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        done.set()
