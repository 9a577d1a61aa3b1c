"""The drain on a real aiohttp server: while the engine stops, what would start work is
refused with 503 and Retry-After, and nothing of it is recorded; reads, the health
answer ("draining") and logging in are still served."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dagd.web.drain import RESTART_ALLOWANCE, retry_after
from integration.harness import StartEngine, web_server

pytestmark = pytest.mark.anyio

DAGS = """
from dagd import DAG, Webhook, task

with DAG("hooked", triggers=[Webhook("hooked", auth="none")]):
    @task
    async def noop():
        return None

    noop()
"""


def test_retry_after_is_the_grace_left_plus_the_start() -> None:
    assert retry_after(100.0, 97.2) == 3 + RESTART_ALLOWANCE
    assert retry_after(100.0, 100.5) == RESTART_ALLOWANCE  # past the grace: the start


async def test_while_draining_new_work_gets_503_with_retry_after_and_reads_answer(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("hooked.py", DAGS)
    async with start_engine() as h, web_server(h) as (http, root):
        events = len(await h.store.list_events(None, limit=100))
        h.engine.drain_until = time.monotonic() + 3.0  # what Engine.stop sets
        refused = [("POST", "/hooks/hooked", {"n": 1}),
                   ("POST", "/api/v1/dags/hooked/runs", {"conf": {}}),
                   ("POST", "/api/v1/dags/hooked/backfill", {"start": "2024-01-01"}),
                   ("POST", "/api/v1/dags/hooked/pause", {})]
        for method, path, body in refused:
            async with http.request(method, f"{root}{path}", json=body) as resp:
                assert resp.status == 503, (path, await resp.text())
                assert (await resp.json())["error"] == "draining"
                assert 1 + RESTART_ALLOWANCE <= int(resp.headers["Retry-After"]) <= (
                    3 + RESTART_ALLOWANCE), path
        async with http.get(f"{root}/api/v1/health") as resp:
            assert resp.status == 503
            assert (await resp.json())["status"] == "draining"
            assert "Retry-After" in resp.headers
        async with http.get(f"{root}/api/v1/dags") as resp:
            assert resp.status == 200
        async with http.post(f"{root}/login", data={"username": "x", "password": "y"}) as resp:
            assert resp.status != 503  # refused for what it is (no such user), not drained
        assert len(await h.store.list_events(None, limit=100)) == events
        assert await h.store.list_runs(None, limit=10) == []

        h.engine.drain_until = None
        async with http.post(f"{root}/hooks/hooked", json={"n": 2}) as resp:
            assert resp.status == 202, await resp.text()
