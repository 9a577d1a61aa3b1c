"""`GET /metrics`: the daemon's Prometheus metrics, in the text format.

Counts of rows (runs and task instances by DAG and state, the outbox's pending
notifications, import errors) are read from the store at each scrape with grouped
queries, what retention pruned from the changes port's totals; the engine's working
copy answers the live figures (ready task instances, running attempts, active and
queued runs, pool workers); histograms (task durations, event-to-start lag) are fed by
the changes port, and commit times by the engine's commit hook. Every app has its own
registry, so nothing is shared between apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dagd.changes import ATTEMPT, EVENT, RUN, Change, Dropped
from dagd.errors import DagdError
from dagd.scheduler.loop import Engine
from dagd.store import Store
from dagd.web.base import ENGINE, READER

# No `*_created` series beside each histogram: a timestamp per label set is noise here.
disable_created_metrics()

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUEUE_LIMIT = 10_000  # changes the metrics may fall behind before they skip some
PENDING_MAX = 100_000  # attempts and events awaiting their other half, at most
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600,
                    float("inf"))
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
               float("inf"))
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5,
                  float("inf"))


class _Rows(Collector):
    """The figures read at the scrape (filled by the handler just before it renders)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.counts: dict[str, list[tuple[Any, ...]]] = {}

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("dagd_runs", "Runs, by DAG and state.",
                                 labels=["dag_id", "state"])
        for dag_id, state, n in self.counts.get("runs_by_state", []):
            runs.add_metric([dag_id, state], n)
        yield runs
        tis = GaugeMetricFamily("dagd_task_instances", "Task instances, by DAG and state.",
                                labels=["dag_id", "state"])
        for dag_id, state, n in self.counts.get("tis_by_state", []):
            tis.add_metric([dag_id, state], n)
        yield tis
        yield _gauge("dagd_outbox_pending", "Notifications waiting in the outbox to be sent.",
                     _one(self.counts.get("pending_notifications")))
        yield _gauge("dagd_import_errors", "DAG files that failed to import.",
                     _one(self.counts.get("import_error_count")))
        runs_now = self.engine.runs
        yield _gauge("dagd_ready_task_instances",
                     "Task instances queued and waiting for a slot (the ready queue).",
                     sum(len(q) for q in runs_now.ready.values()))
        yield _gauge("dagd_running_attempts", "Attempts running now.", runs_now.running_total)
        yield _gauge("dagd_active_runs", "Runs running now.", len(runs_now.active))
        yield _gauge("dagd_queued_runs", "Runs queued, waiting for a run slot.",
                     sum(len(q) for q in runs_now.queued.values()))
        pool = getattr(self.engine.executor, "pool", None)
        yield _gauge("dagd_pool_workers", "Warm worker processes in the pool.",
                     pool.size if pool is not None else 0)
        yield _gauge("dagd_pool_workers_idle", "Warm worker processes waiting for a task.",
                     pool.idle if pool is not None else 0)
        pruned = self.engine.changes.pruned
        rows = CounterMetricFamily("dagd_retention_pruned",
                                   "Rows (and log files) pruned by [retention] since the "
                                   "daemon started, by table.", labels=["table"])
        for table, n in sorted(pruned.rows.items()):
            rows.add_metric([table], n)
        yield rows
        yield CounterMetricFamily("dagd_retention_passes",
                                  "Retention passes since the daemon started.",
                                  value=pruned.passes)


def _one(rows: list[tuple[Any, ...]] | None) -> float:
    return float(rows[0][0]) if rows else 0.0


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


@dataclass
class Metrics:
    """One app's registry, and what feeds its histograms."""

    registry: CollectorRegistry
    rows: _Rows
    durations: Histogram
    lag: Histogram
    commits: Histogram
    # Its own read connection: a scrape's counts (tens of ms over 100,000 task
    # instances) do not hold up the API's reads on the shared one.
    reader: Store | None = None
    started: dict[int, float] = field(default_factory=dict)  # attempt id -> its start
    events: dict[int, float] = field(default_factory=dict)  # run id -> its event's time

    @classmethod
    def create(cls, engine: Engine) -> Metrics:
        registry = CollectorRegistry(auto_describe=True)
        rows = _Rows(engine)
        registry.register(rows)
        return cls(
            registry, rows,
            Histogram("dagd_task_duration_seconds",
                      "How long attempts ran, from start to end, by DAG and task.",
                      ["dag_id", "task_id"], buckets=DURATION_BUCKETS, registry=registry),
            Histogram("dagd_event_start_lag_seconds",
                      "From an event being recorded to its run's first attempt starting.",
                      ["dag_id"], buckets=LAG_BUCKETS, registry=registry),
            Histogram("dagd_sqlite_commit_seconds",
                      "How long the scheduler's commits to SQLite took.",
                      buckets=COMMIT_BUCKETS, registry=registry),
        )

    def observe(self, changes: list[Change]) -> None:
        for c in changes:
            if c.kind == EVENT:
                if c.run_id is not None and len(self.events) < PENDING_MAX:
                    self.events[c.run_id] = c.at
            elif c.kind == ATTEMPT:
                self._attempt(c)
            elif c.kind == RUN and c.state in ("success", "failed"):
                self.events.pop(c.id, None)  # a run that ended with no attempt

    def _attempt(self, c: Change) -> None:
        if c.state == "running":
            if len(self.started) < PENDING_MAX:
                self.started[c.id] = c.at
            event_at = self.events.pop(c.run_id, None) if c.run_id is not None else None
            if event_at is not None:
                self.lag.labels(c.dag_id or "").observe(max(c.at - event_at, 0.0))
            return
        began = self.started.pop(c.id, None)
        if began is not None:
            task_id = (c.detail or {}).get("task_id") or ""
            self.durations.labels(c.dag_id or "", task_id).observe(max(c.at - began, 0.0))


METRICS = web.AppKey("metrics", Metrics)


async def metrics(request: web.Request) -> web.Response:
    found = request.app[METRICS]
    found.rows.counts = await (found.reader or request.app[READER]).counts()
    return web.Response(body=generate_latest(found.registry),
                        headers={"Content-Type": CONTENT_TYPE})


async def _follow(app: web.Application) -> None:
    """Feed the histograms from the changes port; dropped, skip what was missed."""
    engine, found = app[ENGINE], app[METRICS]
    while True:
        with engine.changes.subscribe({ATTEMPT, EVENT, RUN}, limit=QUEUE_LIMIT) as sub:
            try:
                while True:
                    found.observe(await sub.next())
            except Dropped:
                log.warning("the metrics fell behind the scheduler; some durations are not "
                            "counted")
                found.started.clear()
                found.events.clear()


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    engine, found = app[ENGINE], app[METRICS]
    engine.on_commit = found.commits.observe
    task = asyncio.get_running_loop().create_task(_follow(app), name="metrics")
    try:
        found.reader = await Store.open(app[READER].path, readonly=True)
    except DagdError as exc:  # the shared reader will do
        log.warning("metrics: no read connection of their own (%s)", exc)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if engine.on_commit == found.commits.observe:
            engine.on_commit = None
        if found.reader is not None:
            await found.reader.close()
            found.reader = None


def add_routes(app: web.Application) -> None:
    app[METRICS] = Metrics.create(app[ENGINE])
    app.cleanup_ctx.append(_lifetime)
    app.router.add_get("/metrics", metrics)
