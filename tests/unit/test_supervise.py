"""The supervisor: a side task that fails starts again after a growing delay, its health
shows why, and a task that finishes by itself is not started again."""

from __future__ import annotations

import pytest

from dagd.supervise import MAX_BACKOFF, Supervisor

pytestmark = pytest.mark.anyio


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(f"folder gone (call {self.calls})")


async def test_a_failing_task_backs_off_doubling_and_shows_its_last_error() -> None:
    delays: list[float] = []
    seen: list[dict[str, object]] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        seen.extend(supervisor.describe())

    supervisor = Supervisor(clock=lambda: 1000.0, sleep=sleep)
    task = Flaky(failures=12)
    await supervisor.keep("trigger countdown", task)
    assert task.calls == 13
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    last = seen[-1]
    assert last["name"] == "trigger countdown"
    assert last["state"] == "backing_off"
    assert last["failures"] == 12
    assert last["last_error"] == "OSError: folder gone (call 12)"
    assert last["restart_at"] == 1000.0 + MAX_BACKOFF
    assert supervisor.describe() == []  # finished by itself: gone from the list


async def test_a_task_that_finishes_is_not_started_again() -> None:
    supervisor = Supervisor()
    task = Flaky(failures=0)
    await supervisor.keep("timers", task)
    assert task.calls == 1
    assert supervisor.failing == []
