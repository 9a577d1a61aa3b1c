"""The intake: every event (manual, timer, file drop, webhook, replay) takes this path.

`deliver` records the event for each DAG it concerns and, in the same transaction,
creates the run it starts, so an event is acted on exactly once: a delivery whose
dedup key was seen before for that DAG returns the earlier outcome and starts nothing.
A paused DAG's events are recorded with the outcome `dag_paused`, not run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from dagd.errors import InvalidInput, NotFound
from dagd.store.rows import RunRow

if TYPE_CHECKING:
    from dagd.scheduler.loop import Engine

log = logging.getLogger(__name__)

# Outcomes stored in the event ledger.
RUN_CREATED = "run_created"
DUPLICATE = "duplicate"
DAG_PAUSED = "dag_paused"
NO_MATCHING_DAG = "no_matching_dag"
UNAUTHORIZED = "unauthorized"
REJECTED = "rejected"
IN_BATCH = "in_batch"


@dataclass(frozen=True)
class Delivery:
    """One firing of a trigger, before it is recorded."""

    kind: str  # manual, cron, interval, file, webhook, replay, backfill
    source: str  # which trigger: "cli", "webhook:new-data", "file:/data/in", ...
    payload: Any  # stored in the ledger
    dedup_key: str | None = None
    digest: str | None = None
    logical_date: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    event_id: int
    dag_id: str | None
    outcome: str
    run_id: int | None
    duplicate_of: int | None = None


class IdempotencyConflict(InvalidInput):
    """The same idempotency key arrived again with a different body."""


class Intake:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Dedup check and insert must not interleave between two deliveries.
        self._lock = anyio.Lock()

    async def deliver(
        self,
        delivery: Delivery,
        dag_ids: Sequence[str],
        conf: Callable[[str], dict[str, Any]] | dict[str, Any],
        *,
        members: Sequence[Delivery] = (),
        ignore_pause: bool = False,
    ) -> list[Outcome]:
        """Record `delivery` for each DAG; start a run for each that is new and not paused.

        `members` (a batch's files) are recorded beside it, pointing at the same run, so
        that each of them counts as seen.
        """
        engine = self.engine
        store = engine.store
        async with self._lock:
            batch = store.batch()
            outcomes: list[Outcome] = []
            queued: list[RunRow] = []
            if not dag_ids:
                event_id = batch.record_event(
                    kind=delivery.kind, source=delivery.source, dag_id=None,
                    payload=delivery.payload, outcome=NO_MATCHING_DAG,
                )
                outcomes.append(Outcome(event_id, None, NO_MATCHING_DAG, None))
            for dag_id in dag_ids:
                earlier = None
                if delivery.dedup_key is not None:
                    earlier = await store.find_event(
                        kind=delivery.kind, source=delivery.source, dag_id=dag_id,
                        dedup_key=delivery.dedup_key,
                    )
                if earlier is not None:
                    if delivery.digest and earlier.digest and delivery.digest != earlier.digest:
                        raise IdempotencyConflict(
                            f"key {delivery.dedup_key!r} was used before (event {earlier.id}) "
                            "with a different body",
                            dag_id=dag_id, field="Idempotency-Key",
                        )
                    outcomes.append(
                        Outcome(earlier.id, dag_id, DUPLICATE, earlier.run_id, earlier.id)
                    )
                    continue
                outcome = self._record(batch, delivery, dag_id, conf, queued, ignore_pause)
                outcomes.append(outcome)
                for member in members:
                    batch.record_event(
                        kind=member.kind, source=member.source, dag_id=dag_id,
                        payload=member.payload, dedup_key=member.dedup_key,
                        digest=member.digest, run_id=outcome.run_id,
                        outcome=IN_BATCH if outcome.run_id else outcome.outcome,
                    )
            await store.commit(batch)
        for row in queued:
            engine.enqueue(row)
        return outcomes

    def _record(
        self,
        batch: Any,
        delivery: Delivery,
        dag_id: str,
        conf: Callable[[str], dict[str, Any]] | dict[str, Any],
        queued: list[RunRow],
        ignore_pause: bool = False,
    ) -> Outcome:
        engine = self.engine
        paused = dag_id in engine.paused and not ignore_pause
        # A duplicate of a paused event is still a duplicate, so the key is kept on it;
        # only a run-creating event row gets the digest it is compared against.
        event_id = batch.record_event(
            kind=delivery.kind, source=delivery.source, dag_id=dag_id,
            payload=delivery.payload, dedup_key=delivery.dedup_key, digest=delivery.digest,
            outcome=DAG_PAUSED if paused else RUN_CREATED,
        )
        if paused:
            log.info("%s: %s event from %s recorded, not run: DAG paused",
                     dag_id, delivery.kind, delivery.source)
            return Outcome(event_id, dag_id, DAG_PAUSED, None)
        run_conf = conf(dag_id) if callable(conf) else conf
        when = delivery.logical_date or datetime.now(UTC)
        run_id = batch.create_run(
            dag_id=dag_id, run_type=delivery.kind, conf=run_conf, event_id=event_id,
            logical_date=when.isoformat(),
        )
        queued.append(RunRow(run_id, dag_id, "queued", delivery.kind, event_id,
                             when.isoformat(), run_conf, batch.now, None, None))
        log.info("%s[run %d] queued (%s from %s)", dag_id, run_id, delivery.kind,
                 delivery.source)
        return Outcome(event_id, dag_id, RUN_CREATED, run_id)

    async def trigger(
        self, dag_id: str, *, conf: Any = None, source: str = "api",
        logical_date: datetime | None = None, kind: str = "manual",
    ) -> int:
        """A manual run: `dagd trigger`, the API, the UI. Runs even if the DAG is paused
        (it waits, queued, until the DAG is unpaused), as Airflow does."""
        if dag_id not in self.engine.dags:
            raise NotFound("no such DAG (see `dagd dags list` and `dagd dags errors`)",
                           dag_id=dag_id)
        conf = {} if conf is None else conf
        if not isinstance(conf, dict):
            raise InvalidInput("conf must be a JSON object", dag_id=dag_id, field="conf")
        engine = self.engine
        async with self._lock:
            batch = engine.store.batch()
            when = logical_date or datetime.now(UTC)
            event_id = batch.record_event(kind=kind, source=source, dag_id=dag_id,
                                          payload=conf, outcome=RUN_CREATED)
            run_id = batch.create_run(dag_id=dag_id, run_type=kind, conf=conf,
                                      event_id=event_id, logical_date=when.isoformat())
            await engine.store.commit(batch)
        engine.enqueue(RunRow(run_id, dag_id, "queued", kind, event_id, when.isoformat(),
                              conf, batch.now, None, None))
        log.info("%s[run %d] queued (%s from %s)", dag_id, run_id, kind, source)
        return run_id

    async def replay(self, event_id: int, *, source: str = "api") -> int:
        """Start a new run from a stored event, with the conf of the run it started."""
        store = self.engine.store
        event = await store.get_event(event_id)
        if event.dag_id is None:
            raise InvalidInput(f"event {event_id} concerns no DAG ({event.outcome}): "
                               "nothing to replay")
        conf: Any = event.payload if isinstance(event.payload, dict) else {}
        if event.run_id is not None:
            conf = (await store.get_run(event.run_id)).conf
        return await self.trigger(event.dag_id, conf=conf, source=f"event {event_id}",
                                  kind="replay")

    async def backfill(self, dag_id: str, *, start: Any, end: Any) -> list[int]:
        """Runs for every fire time of the DAG's timer in [start, end], oldest first.

        Each is deduplicated by its fire time, so a backfill repeated over the same range
        starts nothing new. It runs even if the DAG is paused: it is an explicit request.
        """
        from dagd.triggers.service import TimerSpec, timer_specs

        dag = self.engine.dags.get(dag_id)
        if dag is None:
            raise NotFound("no such DAG", dag_id=dag_id)
        first, last = _when(start, "start"), _when(end, "end")
        if last < first:
            raise InvalidInput("end is before start", dag_id=dag_id, field="end")
        specs = timer_specs({dag_id: dag})
        if not specs:
            raise InvalidInput("the DAG has no Cron or Interval trigger to backfill",
                               dag_id=dag_id, field="triggers")
        spec: TimerSpec = specs[0]
        fires = spec.trigger.fires_between(first - timedelta(microseconds=1), last, 10_000)
        run_ids: list[int] = []
        for fire in fires:
            begin, finish = spec.trigger.data_interval(fire)
            conf = {"logical_date": begin.isoformat(), "data_interval_start": begin.isoformat(),
                    "data_interval_end": finish.isoformat(), "backfill": True}
            delivery = Delivery(kind="backfill", source=f"backfill:{spec.source}",
                                payload=conf, dedup_key=fire.astimezone(UTC).isoformat(),
                                logical_date=begin)
            for outcome in await self.deliver(delivery, [dag_id], conf, ignore_pause=True):
                if outcome.run_id is not None:
                    run_ids.append(outcome.run_id)
        return run_ids

    async def record_rejection(
        self, *, kind: str, source: str, dag_id: str | None, outcome: str, detail: str,
        payload: Any = None,
    ) -> int:
        """Ledger a delivery that was refused (bad signature, bad body), for `dagd events`."""
        async with self._lock:
            batch = self.engine.store.batch()
            event_id = batch.record_event(kind=kind, source=source, dag_id=dag_id,
                                          payload=payload or {}, outcome=outcome,
                                          detail=detail)
            await self.engine.store.commit(batch)
        return event_id


def _when(value: Any, name: str) -> datetime:
    """An ISO date or datetime; naive ones are UTC."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be an ISO date like 2026-01-31, got {value!r}",
                           field=name)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} is not an ISO date or datetime: {value!r}",
                           field=name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
