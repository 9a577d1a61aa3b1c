"""XCom and context injection across async, thread and worker-process tasks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from dagd.config import Settings
from integration.harness import StartEngine

pytestmark = pytest.mark.anyio

FLOW = """
from dagd import DAG, task

with DAG("flow") as flow:
    @task
    async def produce():
        return {"n": 2, "items": [1, 2, 3]}

    @task
    def times_ten(n):  # sync: a worker process
        return n * 10

    @task(isolation="thread")
    def add(items, extra):
        return sum(items) + extra

    @task
    async def combine(a, b, whole):
        return {"a": a, "b": b, "whole": whole}

    p = produce()
    t = times_ten(p["n"])
    s = add(p["items"], t)
    combine(t, s, p)
"""


async def test_return_values_flow_to_downstream_arguments(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("flow.py", FLOW)
    async with start_engine() as h:
        run_id, state = await h.run("flow")
        xcoms = {t: await h.xcom(run_id, t) for t in ("produce", "times_ten", "add", "combine")}
    assert state == "success"
    assert xcoms == {
        "produce": {"n": 2, "items": [1, 2, 3]},
        "times_ten": 20,  # async -> process
        "add": 26,  # async and process -> thread
        "combine": {"a": 20, "b": 26, "whole": {"n": 2, "items": [1, 2, 3]}},  # -> async
    }


CONTEXT = """
from dagd import DAG, get_current_context, task

with DAG("ctx", params={"a": 1, "b": 2}) as ctx:
    @task
    async def in_loop(run_id, conf, params, try_number, dag_id, task_id):
        return {"run_id": run_id, "conf": conf, "params": params,
                "try_number": try_number, "where": f"{dag_id}.{task_id}"}

    @task
    def in_process(run_id, conf, params, try_number, context):
        current = get_current_context()
        return {"run_id": run_id, "conf": conf, "params": params,
                "try_number": try_number, "where": f"{context.dag_id}.{current.task_id}"}

    @task(isolation="thread")
    def in_thread(run_id, conf, params, try_number, ti_key):
        return {"run_id": run_id, "conf": conf, "params": params,
                "try_number": try_number, "where": ti_key}

    in_loop()
    in_process()
    in_thread()
"""


async def test_context_is_injected_by_parameter_name(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("ctx.py", CONTEXT)
    conf = {"b": 20, "c": 30}
    async with start_engine() as h:
        run_id, state = await h.run("ctx", conf=conf)
        values = {t: await h.xcom(run_id, t) for t in ("in_loop", "in_process", "in_thread")}
    assert state == "success"
    # conf overrides the DAG's params only for keys the DAG declares.
    common = {"run_id": run_id, "conf": conf, "params": {"a": 1, "b": 20}, "try_number": 1}
    assert values == {
        "in_loop": {**common, "where": "ctx.in_loop"},
        "in_process": {**common, "where": "ctx.in_process"},
        "in_thread": {**common, "where": f"ctx/{run_id}/in_thread"},
    }


BAD_XCOM = """
from dagd import DAG, task

with DAG("bad_xcom") as bad_xcom:
    @task
    async def big_in_loop():
        return "x" * 5000

    @task
    def big_in_process():
        return "x" * 5000

    @task
    async def opaque_in_loop():
        return object()

    @task
    def opaque_in_process():
        return object()

    @task
    async def after(value):
        return value

    after(big_in_loop())
    big_in_process()
    opaque_in_loop()
    opaque_in_process()
"""


async def test_unstorable_return_value_fails_the_attempt_with_a_clear_error(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("bad_xcom.py", BAD_XCOM)
    async with start_engine(replace(settings, xcom_max_bytes=1024)) as h:
        run_id, state = await h.run("bad_xcom")
        states = await h.states(run_id)
        errors = {
            t: [a.error for a in await h.attempts(run_id, t)]
            for t in ("big_in_loop", "big_in_process", "opaque_in_loop", "opaque_in_process")
        }
        values = {t: await h.xcom(run_id, t) for t in errors}
    assert state == "failed"
    assert states == {
        "big_in_loop": "failed", "big_in_process": "failed", "opaque_in_loop": "failed",
        "opaque_in_process": "failed", "after": "upstream_failed",
    }
    for task_id in ("big_in_loop", "big_in_process"):
        [error] = errors[task_id]
        assert error is not None
        assert "5002 bytes, over the 1024-byte XCom limit" in error, error
    for task_id in ("opaque_in_loop", "opaque_in_process"):
        [error] = errors[task_id]
        assert error is not None
        assert "not JSON-serializable" in error, error
    assert values == dict.fromkeys(errors)
