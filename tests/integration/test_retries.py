"""Retries in real runs: attempts are rows, backoff is a due time, retry_on filters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from integration.harness import StartEngine

pytestmark = pytest.mark.anyio

FLAKY = """
from dagd import DAG, task

with DAG("flaky") as flaky:
    @task(retries=2, retry_delay=0.2, retry_exponential_backoff=True)
    async def flaky_task(try_number):
        if try_number < 3:
            raise ValueError(f"try {try_number} fails")
        return try_number

    flaky_task()
"""


async def test_fails_twice_then_succeeds_with_backoff(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("flaky.py", FLAKY)
    async with start_engine() as h:
        run_id, state = await h.run("flaky")
        ti = (await h.tis(run_id))["flaky_task"]
        attempts = await h.attempts(run_id, "flaky_task")
        history = await h.ti_history(run_id, "flaky_task")
        value = await h.xcom(run_id, "flaky_task")
    assert state == "success"
    assert (ti.state, ti.try_number, ti.max_tries, value) == ("success", 3, 3, 3)
    assert [(a.try_number, a.state, a.error) for a in attempts] == [
        (1, "failed", "ValueError: try 1 fails"),
        (2, "failed", "ValueError: try 2 fails"),
        (3, "success", None),
    ]
    # (The creation of the task instance may or may not have a history row of its own.)
    assert [(r.from_state, r.to_state) for r in history if r.from_state is not None] == [
        ("scheduled", "queued"),
        ("queued", "running"),
        ("running", "up_for_retry"),
        ("up_for_retry", "queued"),
        ("queued", "running"),
        ("running", "up_for_retry"),
        ("up_for_retry", "queued"),
        ("queued", "running"),
        ("running", "success"),
    ]
    # Backoff 0.2 s then 0.4 s: each retry is released no earlier than it was due ...
    waits = [r for r in history if r.to_state == "up_for_retry"]
    releases = [r for r in history if r.from_state == "up_for_retry"]
    assert [r.reason for r in waits] == ["ValueError: try 1 fails", "ValueError: try 2 fails"]
    assert [r.reason for r in releases] == ["retry delay passed"] * 2
    assert releases[0].at >= waits[0].at + 0.2
    assert releases[1].at >= waits[1].at + 0.4
    # ... and each attempt starts at least its delay after the previous one ended.
    first, second, third = attempts
    assert first.ended_at is not None and second.ended_at is not None
    assert second.started_at >= first.ended_at + 0.2
    assert third.started_at >= second.ended_at + 0.4


PICKY = """
from dagd import DAG, task


class Transient(Exception):
    pass


with DAG("picky", default_args={"retries": 3, "retry_delay": 0}) as picky:
    @task(retry_on=(ValueError,))
    def value_then_key(try_number):  # a worker process
        if try_number == 1:
            raise ValueError("transient")
        raise KeyError("missing")

    @task(retry_on=(ValueError,))
    async def key_at_once():
        raise KeyError("missing")

    @task(retry_on=(Transient,))
    def own_exception_class(try_number):  # matched across the process boundary
        if try_number < 3:
            raise Transient(f"try {try_number}")
        return "done"

    value_then_key()
    key_at_once()
    own_exception_class()
"""


async def test_retry_on_retries_only_the_listed_errors(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("picky.py", PICKY)
    async with start_engine() as h:
        run_id, state = await h.run("picky")
        tis = await h.tis(run_id)
        errors = {t: [a.error for a in await h.attempts(run_id, t)] for t in tis}
    assert state == "failed"
    assert {t: (ti.state, ti.try_number) for t, ti in tis.items()} == {
        "value_then_key": ("failed", 2),
        "key_at_once": ("failed", 1),
        "own_exception_class": ("success", 3),
    }
    assert errors == {
        "value_then_key": ["ValueError: transient", "KeyError: 'missing'"],
        "key_at_once": ["KeyError: 'missing'"],
        "own_exception_class": ["Transient: try 1", "Transient: try 2", None],
    }


DOOMED = """
from dagd import DAG, task

with DAG("doomed") as doomed:
    @task(retries=1, retry_delay=0)
    def always_fails(try_number):
        raise RuntimeError(f"no luck on try {try_number}")

    @task
    async def downstream(value):
        return value

    downstream(always_fails())
"""


async def test_exhausted_retries_fail_the_task_and_the_run(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("doomed.py", DOOMED)
    async with start_engine() as h:
        run_id, state = await h.run("doomed")
        tis = await h.tis(run_id)
        attempts = await h.attempts(run_id, "always_fails")
        history = await h.ti_history(run_id, "always_fails")
    assert state == "failed"
    assert (tis["always_fails"].state, tis["always_fails"].try_number) == ("failed", 2)
    assert tis["downstream"].state == "upstream_failed"
    assert [(a.state, a.error) for a in attempts] == [
        ("failed", "RuntimeError: no luck on try 1"),
        ("failed", "RuntimeError: no luck on try 2"),
    ]
    assert [(r.from_state, r.to_state) for r in history][-4:] == [
        ("running", "up_for_retry"),
        ("up_for_retry", "queued"),
        ("queued", "running"),
        ("running", "failed"),
    ]
    assert history[-1].reason == "RuntimeError: no luck on try 2"
