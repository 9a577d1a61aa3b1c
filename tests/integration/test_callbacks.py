"""Task and DAG callbacks, called once the state is committed: each kind with its context,
sync and async, from default_args and lists; one that raises and one that hangs change
no state, are noted in the attempt's log, and never hold up the scheduler."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from dagd.changes import Dropped
from dagd.scheduler.callbacks import Callbacks
from dagd.store import Store
from integration.harness import Harness, StartEngine, read_text, wait_until

pytestmark = pytest.mark.anyio

RECORDER = """
    import json, threading
    from dagd import DAG, task

    OUT = OUTPATH

    def record(name, context, **extra):
        ti = context.get("ti")
        line = {
            "name": name, "dag_id": context["dag_id"], "run_id": context["run_id"],
            "task_id": context.get("task_id"), "try_number": context.get("try_number"),
            "state": context["state"], "run_state": context["dag_run"].state,
            "ti_state": ti.state if ti is not None else None,
            "exception": str(context["exception"]) if context["exception"] else None,
            "conf": context["conf"], "has_dag": context["dag"].dag_id,
            "has_task": context["task"].task_id if context.get("task") else None,
            "thread": threading.current_thread().name.startswith("dagd "),
            "upstream": context.get("upstream"),
            "own": ti.xcom_pull() if ti is not None else None,
            "pulled": ti.xcom_pull(task_ids=["fine"]) if ti is not None else None,
            **extra,
        }
        with open(OUT, "a") as f:
            f.write(json.dumps(line) + "\\n")
"""

KINDS = RECORDER + """
    def on_execute(context):
        record("execute", context)

    async def on_success(context):
        record("success", context)

    def on_retry(context):
        record("retry", context)

    def on_failure(context):
        record("failure", context)

    def also_failure(context):
        record("failure_2", context)

    def dag_failed(context):
        record("dag_failed", context)

    async def dag_succeeded(context):
        record("dag_succeeded", context)

    with DAG("cb_kinds", on_failure_callback=dag_failed,
             default_args={"on_failure_callback": [on_failure, also_failure],
                           "on_retry_callback": on_retry}):
        @task(on_execute_callback=on_execute, on_success_callback=on_success)
        async def fine():
            return 1

        @task(retries=1, retry_delay=0)
        async def flaky():
            raise ConnectionError("the warehouse said no")

        fine() >> flaky()

    with DAG("cb_ok", on_success_callback=dag_succeeded):
        @task
        async def quick():
            return 2

        quick()
"""


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@asynccontextmanager
async def with_callbacks(h: Harness, seconds: float = 5.0) -> AsyncIterator[Callbacks]:
    """Callbacks over a read-only connection of their own, as the daemon runs them."""
    reader = await Store.open(h.settings.db_path, readonly=True)
    try:
        callbacks = Callbacks(reader, h.engine.changes, lambda: h.engine.dags,
                              timeout=seconds)
        async with anyio.create_task_group() as tg:
            await tg.start(callbacks.run)
            try:
                yield callbacks
            finally:
                tg.cancel_scope.cancel()
    finally:
        await reader.close()


async def test_each_callback_kind_gets_its_context_once_the_state_is_committed(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, tmp_path: Path
) -> None:
    out = tmp_path / "calls.jsonl"
    write_dag("cb.py", KINDS.replace("OUTPATH", repr(str(out))))
    async with start_engine() as h, with_callbacks(h) as callbacks:
        run_id, state = await h.run("cb_kinds", {"source": "test"})
        assert state == "failed"
        ok_id, ok_state = await h.run("cb_ok")
        assert ok_state == "success"
        await callbacks.drain(10)
        await wait_until(lambda: len(lines(out)) == 7, what="seven callbacks")
    calls = {c["name"]: c for c in lines(out)}
    assert sorted(calls) == ["dag_failed", "dag_succeeded", "execute", "failure",
                             "failure_2", "retry", "success"]
    execute = calls["execute"]
    assert (execute["task_id"], execute["try_number"], execute["state"], execute["ti_state"],
            execute["has_task"], execute["has_dag"]) == ("fine", 1, "running", "running",
                                                         "fine", "cb_kinds")
    assert execute["thread"] is True  # a sync callback: in a thread
    # An async callback too: on a loop of its own in a thread, so it cannot block the daemon.
    assert calls["success"]["state"] == "success" and calls["success"]["thread"] is True
    assert calls["success"]["own"] == 1  # ti.xcom_pull(): its own return value
    assert execute["own"] is None and execute["upstream"] == {}
    retry = calls["retry"]
    assert (retry["task_id"], retry["try_number"], retry["state"]) == ("flaky", 1,
                                                                       "up_for_retry")
    assert retry["exception"] == "ConnectionError: the warehouse said no"
    assert (retry["upstream"], retry["pulled"]) == ({"fine": 1}, [1])  # as the task sees it
    for name in ("failure", "failure_2"):  # a list in default_args: each is called
        assert (calls[name]["task_id"], calls[name]["try_number"]) == ("flaky", 2)
        assert calls[name]["exception"] == "ConnectionError: the warehouse said no"
    assert calls["dag_failed"] | {"run_id": run_id, "state": "failed", "task_id": None,
                                  "conf": {"source": "test"}} == calls["dag_failed"]
    assert calls["dag_succeeded"]["run_id"] == ok_id
    assert calls["dag_succeeded"]["run_state"] == "success"


RAISES = RECORDER + """
    def broken(context):
        raise ValueError("the callback is broken")

    async def broken_async(context):
        raise KeyError("missing")

    def exits(context):
        import sys
        sys.exit(3)  # the callback's failure, not the daemon's end

    async def exits_async(context):
        raise SystemExit(4)

    def after(context):
        record("after", context)

    with DAG("cb_raises"):
        @task(on_success_callback=[broken, broken_async, exits, exits_async, after])
        async def fine():
            return 1

        fine()
"""


async def test_a_callback_that_raises_is_logged_and_noted_and_changes_no_state(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "calls.jsonl"
    write_dag("cb.py", RAISES.replace("OUTPATH", repr(str(out))))
    caplog.set_level(logging.ERROR, logger="dagd.scheduler.callbacks")
    async with start_engine() as h, with_callbacks(h) as callbacks:
        run_id, state = await h.run("cb_raises")
        assert state == "success"
        await callbacks.drain(10)
        [attempt] = await h.attempts(run_id, "fine")
        assert (await h.states(run_id)) == {"fine": "success"}
        assert attempt.state == "success"
    log_text = await read_text(attempt.log_path)
    assert ("[dagd] on_success_callback broken raised ValueError: the callback is broken"
            in log_text)
    assert "Traceback (most recent call last)" in log_text
    assert "[dagd] on_success_callback broken_async raised KeyError: 'missing'" in log_text
    assert "[dagd] on_success_callback exits raised SystemExit: 3" in log_text
    assert "[dagd] on_success_callback exits_async raised SystemExit: 4" in log_text
    assert [c["name"] for c in lines(out)] == ["after"]  # the next one still runs
    records = [r for r in caplog.records if "raised ValueError" in r.getMessage()]
    assert records and records[0].exc_info is not None  # logged with its traceback


HANGS = RECORDER + """
    import time
    import anyio

    def hangs(context):
        time.sleep(5)  # a sync one cannot be stopped: it is abandoned

    async def hangs_async(context):
        time.sleep(5)  # blocks: on a loop of its own, not the daemon's

    with DAG("cb_hangs"):
        @task(on_success_callback=hangs, on_execute_callback=hangs_async)
        async def fine():
            return 1

        fine()

    with DAG("cb_other"):
        @task
        async def other():
            return 2

        other()
"""


async def test_a_callback_that_hangs_is_abandoned_at_its_timeout_and_stalls_nothing(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, tmp_path: Path
) -> None:
    out = tmp_path / "calls.jsonl"
    write_dag("cb.py", HANGS.replace("OUTPATH", repr(str(out))))
    async with start_engine() as h, with_callbacks(h, seconds=1.0) as callbacks:
        started = anyio.current_time()
        run_id, state = await h.run("cb_hangs")
        assert state == "success"
        # While both callbacks hang, the scheduler goes on: another run, at once.
        _, other = await h.run("cb_other", deadline=0.9)
        assert other == "success"
        assert anyio.current_time() - started < 1.0
        await callbacks.drain(10)
        [attempt] = await h.attempts(run_id, "fine")
        assert (await h.states(run_id)) == {"fine": "success"}
    log_text = await read_text(attempt.log_path)
    assert ("[dagd] on_execute_callback hangs_async did not finish within 1s "
            "([core] callback_timeout): abandoned" in log_text)
    assert "[dagd] on_success_callback hangs did not finish within 1s" in log_text


async def test_a_dropped_subscriber_rereads_the_history_and_misses_no_callback(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, tmp_path: Path
) -> None:
    out = tmp_path / "calls.jsonl"
    write_dag("cb.py", KINDS.replace("OUTPATH", repr(str(out))))
    async with start_engine() as h:
        callbacks = Callbacks(h.store, h.engine.changes, lambda: h.engine.dags, timeout=5)
        assert callbacks._sub is not None
        callbacks._sub.limit = 0  # falls behind at the first change
        async with anyio.create_task_group() as tg:
            await h.run("cb_ok")  # published while nobody reads: dropped
            with pytest.raises(Dropped):
                await callbacks._sub.next()
            await tg.start(callbacks.run)  # meets Dropped, re-reads the history
            await wait_until(lambda: len(lines(out)) == 1, what="the run's callback")
            await callbacks.drain(10)
            await wait_until(lambda: len(lines(out)) == 1, what="the run's callback")
            tg.cancel_scope.cancel()
    assert [c["name"] for c in lines(out)] == ["dag_succeeded"]


async def test_no_subscription_while_no_dag_declares_a_callback(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("plain.py", """
        from dagd import DAG, task

        with DAG("plain"):
            @task
            async def a():
                return 1

            a()
    """)
    async with start_engine() as h, with_callbacks(h) as callbacks:
        assert callbacks._sub is None and h.engine.changes.wanted == frozenset()
        _, state = await h.run("plain")
        assert state == "success"
