"""GET /metrics over a real aiohttp server and a running engine: every metric, with the
values a known run leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.harness import Harness, StartEngine, wait_until, web_server

pytestmark = pytest.mark.anyio

DAGS = """
from dagd import DAG, task

with DAG("pair") as pair:
    @task
    async def first():
        return 1

    @task
    def second():  # a worker process of the pool
        return 2

    first() >> second()
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
Scrape = Callable[[], Awaitable[tuple[str, Samples]]]


@asynccontextmanager
async def scraper(h: Harness) -> AsyncIterator[Scrape]:
    async with web_server(h) as (http, root):

        async def scrape() -> tuple[str, Samples]:
            async with http.get(f"{root}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await resp.text()
            samples: Samples = {}
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    samples[(s.name, frozenset(s.labels.items()))] = s.value
            return text, samples

        yield scrape


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_every_metric_after_a_known_run(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, scraper(h) as scrape:
        _, before = await scrape()
        assert value(before, "dagd_sqlite_commit_seconds_count") == 0
        run_id, state = await h.run("pair")
        assert state == "success"
        await h.store.sync_dags([], [{"file": "broken.py", "line": 3, "message": "boom",
                                      "traceback": "Traceback ..."}])
        # The histograms hear of the run's last changes just after its end is told.
        found: dict[str, Samples] = {}

        async def heard() -> bool:
            _, found["s"] = await scrape()
            return found["s"].get(("dagd_task_duration_seconds_count", frozenset(
                {("dag_id", "pair"), ("task_id", "second")}))) == 1

        await wait_until(heard)
        text, samples = await scrape()
        assert "_created" not in text  # no timestamp series beside the histograms
        pool = h.engine.executor.pool
        pool_size, pool_idle = pool.size, pool.idle
    assert value(samples, "dagd_runs", dag_id="pair", state="success") == 1
    assert value(samples, "dagd_task_instances", dag_id="pair", state="success") == 2
    for task_id in ("first", "second"):
        assert value(samples, "dagd_task_duration_seconds_count", dag_id="pair",
                     task_id=task_id) == 1
        assert value(samples, "dagd_task_duration_seconds_bucket", dag_id="pair",
                     task_id=task_id, le="+Inf") == 1
    assert value(samples, "dagd_event_start_lag_seconds_count", dag_id="pair") == 1
    assert value(samples, "dagd_event_start_lag_seconds_sum", dag_id="pair") >= 0
    assert value(samples, "dagd_sqlite_commit_seconds_count") >= 3  # one per tick, at least
    assert value(samples, "dagd_ready_task_instances") == 0
    assert value(samples, "dagd_running_attempts") == 0
    assert value(samples, "dagd_active_runs") == 0
    assert value(samples, "dagd_queued_runs") == 0
    assert value(samples, "dagd_outbox_pending") == 0
    assert value(samples, "dagd_import_errors") == 1
    assert value(samples, "dagd_pool_workers") == pool_size
    assert value(samples, "dagd_pool_workers_idle") == pool_idle
    assert run_id == 1
    documented = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert documented >= {
        "dagd_runs", "dagd_task_instances", "dagd_task_duration_seconds",
        "dagd_event_start_lag_seconds", "dagd_sqlite_commit_seconds",
        "dagd_ready_task_instances", "dagd_running_attempts", "dagd_active_runs",
        "dagd_queued_runs", "dagd_outbox_pending", "dagd_import_errors",
        "dagd_pool_workers", "dagd_pool_workers_idle"}


async def test_a_running_task_shows_as_running_and_two_apps_share_nothing(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("wait.py", """
from dagd import DAG, task
import asyncio

go = asyncio.Event()

with DAG("wait") as wait:
    @task
    async def hold():
        await go.wait()

    hold()
""")
    async with start_engine() as h, scraper(h) as scrape:
        run_id = await h.trigger("wait")
        await wait_until(lambda: h.engine.runs.running_total == 1)
        _, samples = await scrape()
        assert value(samples, "dagd_running_attempts") == 1
        assert value(samples, "dagd_active_runs") == 1
        assert value(samples, "dagd_task_instances", dag_id="wait", state="running") == 1
        assert value(samples, "dagd_runs", dag_id="wait", state="running") == 1
        h.module_global("wait", "go").set()
        assert await h.wait(run_id) == "success"
        async with scraper(h) as again:
            _, fresh = await again()
    # A second app has its own registry: it saw no attempt end.
    assert ("dagd_task_duration_seconds_count",
            frozenset({("dag_id", "wait"), ("task_id", "hold")})) not in fresh
