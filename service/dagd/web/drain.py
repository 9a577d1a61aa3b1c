"""The drain: while the daemon stops (SIGTERM, its grace period running), what would
start work is refused with 503 and a `Retry-After`, so that a webhook's sender (or a
script) sends it again to the restarted daemon rather than losing it.

Refused: every request that changes something (not GET, HEAD or OPTIONS): webhooks,
manual runs, backfills, replays, clears, marks, pauses. Not refused: reads, the live
stream, the UI, `/metrics`, logging in and out; `/api/v1/health` answers 503
"draining" itself. Nothing refused here is recorded (no run, no event in the ledger).
"""

from __future__ import annotations

import math
import time

from aiohttp import web

from dagd.errors import Draining
from dagd.web.base import ENGINE, Handler

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALWAYS = ("/login", "/logout")  # a session is no work: an operator may still log in
# Seconds added to what is left of the grace period: a restarted daemon's start.
RESTART_ALLOWANCE = 5


def retry_after(drain_until: float, now: float) -> int:
    """Whole seconds until a restarted daemon may take the request: what is left of the
    grace period, plus the start."""
    return max(math.ceil(drain_until - now), 0) + RESTART_ALLOWANCE


def draining(app: web.Application) -> int | None:
    """`Retry-After` seconds while the daemon drains, else None."""
    until = app[ENGINE].drain_until
    return None if until is None else retry_after(until, time.monotonic())


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in SAFE_METHODS and not request.path.startswith(ALWAYS):
        seconds = draining(request.app)
        if seconds is not None:
            raise Draining(
                f"the daemon is stopping: {request.method} {request.path} is not taken "
                f"now; send it again in {seconds}s", retry_after=seconds)
    return await handler(request)
