"""Supervision of the daemon's side tasks: a trigger that fails is started again, later.

`Supervisor.keep(name, start)` runs `start()` and, when it raises, logs it, waits and
runs it again: 1 s after the first failure, doubling up to `MAX_BACKOFF` while it keeps
failing, back to 1 s once a run has lasted `HEALTHY_AFTER` seconds. Each task's health
(running or backing off, failures in a row, the last error, when it restarts) is kept
for the API's `/api/v1/health`, so a trigger that keeps failing shows instead of
restarting every second forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from dagd.retry import RetryPolicy

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0
HEALTHY_AFTER = 60.0
# The one backoff formula (RetryPolicy.delay): 1, 2, 4 ... 300 s.
BACKOFF = RetryPolicy.build(retries=1_000_000, retry_delay=1.0,
                            retry_exponential_backoff=True, max_retry_delay=MAX_BACKOFF)


@dataclass
class Health:
    name: str
    state: str = "running"  # running | backing_off
    failures: int = 0  # in a row
    last_error: str | None = None
    last_failed_at: float | None = None
    restart_at: float | None = None

    def describe(self) -> dict[str, Any]:
        return asdict(self)


class Supervisor:
    def __init__(self, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = anyio.sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self.health: dict[str, Health] = {}

    def describe(self) -> list[dict[str, Any]]:
        return [h.describe() for h in self.health.values()]

    @property
    def failing(self) -> list[Health]:
        return [h for h in self.health.values() if h.state == "backing_off"]

    async def keep(self, name: str, start: Callable[[], Awaitable[Any]]) -> None:
        health = self.health[name] = Health(name)
        try:
            while True:
                health.state, health.restart_at = "running", None
                began = time.monotonic()
                try:
                    await start()
                    return  # finished by itself: nothing to restart
                except Exception as exc:  # a trigger's bug must not take the daemon down
                    if time.monotonic() - began >= HEALTHY_AFTER:
                        health.failures = 0
                    health.failures += 1
                    delay = BACKOFF.delay(min(health.failures, 32), lambda: 0.0)
                    health.state = "backing_off"
                    health.last_error = f"{type(exc).__name__}: {exc}"
                    health.last_failed_at = self.clock()
                    health.restart_at = health.last_failed_at + delay
                    log.exception("%s failed (%d in a row); starting again in %.0f s",
                                  name, health.failures, delay)
                await self.sleep(delay)
        finally:  # stopped (a reload restarts it afresh)
            self.health.pop(name, None)
