"""The daemon's systemd side: sd_notify messages and the watchdog's heartbeat.

Under `Type=notify` systemd learns from these datagrams what the daemon does: READY=1
once it serves, STATUS= lines (loading, recovering, serving, reloading, draining),
RELOADING=1 with MONOTONIC_USEC= on SIGHUP (as systemd 253 and later expect, in the same
message), STOPPING=1 at the stop. With `WatchdogSec=`, systemd sets $WATCHDOG_USEC and
the daemon sends WATCHDOG=1 every half of it from a task in its own event loop: a loop
that blocks stops the heartbeat, and systemd kills and restarts the daemon.

Outside systemd ($NOTIFY_SOCKET unset) every call here is a no-op returning False. A send
never blocks the loop: the socket is non-blocking, and a full queue drops the message.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import anyio

log = logging.getLogger(__name__)


def message(**fields: str | int) -> str:
    """One sd_notify message: `KEY=value` lines in the order given. A value is one line
    (a newline would start a field systemd reads as its own), so newlines become spaces."""
    lines = []
    for key, value in fields.items():
        text = " ".join(str(value).splitlines()) if isinstance(value, str) else str(value)
        lines.append(f"{key}={text}")
    return "\n".join(lines)


def notify(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify message; False when not run under systemd or not delivered."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # a stuck manager must not stall the event loop
            sock.connect(address)
            sock.send(text.encode())
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def status(text: str) -> None:
    """What the daemon does now, for `systemctl status` (STATUS=)."""
    notify(message(STATUS=text))


def ready(status_text: str) -> bool:
    """Started (or reloaded): READY=1, with what it serves."""
    return notify(message(READY=1, STATUS=status_text))


def reloading(now_usec: int | None = None) -> bool:
    """A reload begins: RELOADING=1 with CLOCK_MONOTONIC in µs, which systemd (253 and
    later) wants in the same message; READY=1 says when the reload is done."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000 if now_usec is None else now_usec
    return notify(message(RELOADING=1, MONOTONIC_USEC=usec, STATUS="reloading"))


def stopping(status_text: str) -> bool:
    return notify(message(STOPPING=1, STATUS=status_text))


def watchdog_interval(environ: Mapping[str, str] | None = None,
                      pid: int | None = None) -> float | None:
    """Seconds between two WATCHDOG=1 (half of $WATCHDOG_USEC), or None when systemd
    watches no one, or watches another process ($WATCHDOG_PID set to another pid: the
    variables were inherited from a parent that systemd watches)."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0 or not env.get("NOTIFY_SOCKET"):
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


async def keep_watchdog(interval: float | None = None) -> None:
    """WATCHDOG=1 every `interval` seconds (default: from the environment), from this
    event loop, until cancelled. Returns at once when there is no watchdog."""
    every = watchdog_interval() if interval is None else interval
    if every is None:
        return
    log.info("systemd watchdog: a heartbeat every %.3gs from the event loop", every)
    while True:
        notify("WATCHDOG=1")
        await anyio.sleep(every)
