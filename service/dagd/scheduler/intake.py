"""The intake: every event (manual, timer, file drop, webhook, replay) takes this path.

`deliver` records the event for each DAG it concerns and, in the same transaction,
creates the run it starts, so an event is acted on exactly once: a delivery whose
dedup key was seen before for that DAG returns the earlier outcome and starts nothing.
A paused DAG's events are recorded with the outcome `dag_paused`, not run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from dagd.authoring.params import check_conf, check_default_types
from dagd.errors import InvalidInput, NotFound, StateError, StorageUnavailable
from dagd.events import (
    DAG_PAUSED,
    DUPLICATE,
    IN_BATCH,
    NO_MATCHING_DAG,
    REJECTED,
    RUN_CREATED,
    UNAUTHORIZED,
    Conf,
    Delivery,
    IdempotencyConflict,
    Outcome,
)
from dagd.store.rows import RunRow
from dagd.triggers.timers import fire_conf, logical_fires, past_end, timers_of

if TYPE_CHECKING:
    from dagd.authoring.dag import DAG
    from dagd.config import Settings
    from dagd.store import Batch, Store

log = logging.getLogger(__name__)

# Kinds whose repeated deliveries are recorded (with the outcome `duplicate`).
LEDGER_DUPLICATES = frozenset({"webhook"})
UNWRITABLE_WAIT = 5.0  # seconds a delivery waits on a tick that cannot be committed


@dataclass
class Backfill:
    """What a backfill did: runs it queued, runs that existed already for the range."""

    queued: list[int] = field(default_factory=list)
    existing: list[int] = field(default_factory=list)
    logical_dates: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """As the API answers it: `run_ids` are the runs queued now."""
        return {"run_ids": self.queued, "existing": self.existing,
                "logical_dates": self.logical_dates}


class Desk(Protocol):
    """What the intake needs of the engine: its DAGs, and where deliveries go."""

    store: Store
    settings: Settings
    serving: bool
    unhealthy: str | None

    @property
    def dags(self) -> dict[str, DAG]: ...

    @property
    def paused(self) -> set[str]: ...

    def clock(self) -> float: ...

    def submit(self, items: list[Pending]) -> None: ...

    def enqueue(self, row: RunRow) -> None: ...


@dataclass
class Pending:
    """A delivery for one DAG, waiting to be written by the scheduler's next tick."""

    delivery: Delivery
    dag_id: str | None
    conf: dict[str, Any]
    ignore_pause: bool = False
    members: Sequence[Delivery] = ()
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None

    def record(self, batch: Batch, paused: set[str]) -> RunRow | None:
        """Write the event (and its run) into `batch`; return the run to queue, if any."""
        d = self.delivery
        if self.dag_id is None:
            event_id = batch.record_event(kind=d.kind, source=d.source, dag_id=None,
                                          payload=d.payload, outcome=NO_MATCHING_DAG)
            self.outcome = Outcome(event_id, None, NO_MATCHING_DAG, None)
            return None
        dag_id = self.dag_id
        is_paused = dag_id in paused and not self.ignore_pause
        event_id = batch.record_event(
            kind=d.kind, source=d.source, dag_id=dag_id, payload=d.payload,
            dedup_key=d.dedup_key, digest=d.digest,
            outcome=DAG_PAUSED if is_paused else RUN_CREATED,
        )
        row = None
        if is_paused:
            log.info("%s: %s event from %s recorded, not run: DAG paused",
                     dag_id, d.kind, d.source, extra={"dag_id": dag_id, "event_id": event_id})
            self.outcome = Outcome(event_id, dag_id, DAG_PAUSED, None)
        else:
            when = (d.logical_date or datetime.fromtimestamp(batch.now, UTC)).isoformat()
            run_id = batch.create_run(dag_id=dag_id, run_type=d.kind, conf=self.conf,
                                      event_id=event_id, logical_date=when)
            row = RunRow(id=run_id, dag_id=dag_id, state="queued", run_type=d.kind,
                         event_id=event_id, logical_date=when, conf=self.conf,
                         created_at=batch.now, started_at=None, ended_at=None)
            log.info("%s[run %d] queued (%s from %s)", dag_id, run_id, d.kind, d.source,
                     extra={"dag_id": dag_id, "run_id": run_id, "event_id": event_id})
            self.outcome = Outcome(event_id, dag_id, RUN_CREATED, run_id)
        for member in self.members:
            batch.record_event(
                kind=member.kind, source=member.source, dag_id=dag_id,
                payload=member.payload, dedup_key=member.dedup_key, digest=member.digest,
                run_id=self.outcome.run_id,
                outcome=IN_BATCH if self.outcome.run_id else self.outcome.outcome,
            )
        return row


class Intake:
    """Deduplicates deliveries and hands them to the engine: the events port (`Events`).

    With the engine serving, a delivery is written by the scheduler's next tick, in the
    same transaction that starts its run's first tasks: one commit from event to task
    start, and concurrent deliveries share it. Without (the CLI with no daemon), the
    intake commits them itself and the runs wait, queued, for the daemon.
    """

    def __init__(self, engine: Desk) -> None:
        self.engine = engine
        # Dedup check and registration must not interleave between two deliveries.
        self._lock = anyio.Lock()
        self._inflight: dict[tuple[str, str, str, str], Pending] = {}

    async def deliver(
        self,
        delivery: Delivery,
        dag_ids: Sequence[str],
        conf: Conf,
        *,
        members: Sequence[Delivery] = (),
        ignore_pause: bool = False,
    ) -> list[Outcome]:
        """Record `delivery` for each DAG; start a run for each that is new and not paused.

        A dedup key seen before for a DAG (committed, or in flight right now) returns the
        earlier outcome and starts nothing. `members` (a batch's files) are recorded
        beside it, pointing at the same run, so that each of them counts as seen.
        """
        if self.engine.unhealthy is not None:  # no promise that nothing could keep
            raise StorageUnavailable(f"not accepting events now: {self.engine.unhealthy}")
        results: list[Outcome | Pending] = []
        mine: list[Pending] = []
        async with self._lock:
            if not dag_ids:
                mine.append(Pending(delivery, None, {}))
            for dag_id in dag_ids:
                earlier = await self._earlier(delivery, dag_id)
                if earlier is not None:
                    results.append(earlier)
                    continue
                run_conf = conf(dag_id) if callable(conf) else conf
                item = Pending(delivery, dag_id, run_conf, ignore_pause, members)
                if delivery.dedup_key is not None:
                    self._inflight[_key(delivery, dag_id)] = item
                mine.append(item)
                results.append(item)
            if self.engine.serving:
                self.engine.submit(mine)
            else:
                await self._commit_now(mine)
        await self._wait_recorded(delivery, mine, results)
        if not dag_ids:
            return [item.outcome for item in mine if item.outcome is not None]
        outcomes = [_settled(r, mine) for r in results]
        if delivery.kind in LEDGER_DUPLICATES:
            await self._ledger_duplicates(delivery, outcomes)
        return outcomes

    async def _wait_recorded(self, delivery: Delivery, mine: list[Pending],
                             results: list[Outcome | Pending]) -> None:
        """Wait for this delivery's items, and for any twin in flight (a delivery of
        the same key that came first) whose outcome this one repeats."""
        try:
            for item in mine:
                await self._recorded(item)
            for twin in results:
                if isinstance(twin, Pending) and not any(twin is item for item in mine):
                    await self._recorded(twin)
        finally:
            for item in mine:
                # One not recorded yet (the database cannot be written) stays in flight:
                # a retry of its key must find it, not queue it twice.
                if (item.dag_id is not None and delivery.dedup_key is not None
                        and item.done.is_set()):
                    self._inflight.pop(_key(delivery, item.dag_id), None)

    async def _recorded(self, item: Pending) -> None:
        """Wait until the tick that records `item` is committed. While the database
        cannot be written, answer within UNWRITABLE_WAIT seconds that it is not recorded
        yet: the tick is retried and may still record it, so the sender's retry (with
        the same Idempotency-Key) is told apart from a new delivery."""
        while True:
            with anyio.move_on_after(UNWRITABLE_WAIT):
                await item.done.wait()
                return
            if self.engine.unhealthy is not None:
                raise StorageUnavailable(
                    f"not recorded yet: {self.engine.unhealthy}; send it again later (with "
                    "the same Idempotency-Key, it counts once)")

    async def _ledger_duplicates(self, delivery: Delivery, outcomes: list[Outcome]) -> None:
        """A repeated delivery from another system is worth a row ("why no new run?");
        a file seen again at a rescan, or a timer, is not."""
        for o in outcomes:
            if o.duplicate_of is not None:
                await self.record_rejection(
                    kind=delivery.kind, source=delivery.source, dag_id=o.dag_id,
                    outcome=DUPLICATE, payload=delivery.payload, run_id=o.run_id,
                    detail=f"duplicate of event {o.duplicate_of} (key {delivery.dedup_key!r})",
                )

    async def _earlier(self, delivery: Delivery, dag_id: str) -> Outcome | Pending | None:
        if delivery.dedup_key is None:
            return None
        key = _key(delivery, dag_id)
        twin = self._inflight.get(key)
        if twin is not None and twin.done.is_set():  # recorded since: the store answers
            del self._inflight[key]
            twin = None
        if twin is not None:
            _check_digest(delivery, twin.delivery.digest, None, dag_id)
            return twin
        earlier = await self.engine.store.find_event(
            kind=delivery.kind, source=delivery.source, dag_id=dag_id,
            dedup_key=delivery.dedup_key,
        )
        if earlier is None:
            return None
        _check_digest(delivery, earlier.digest, earlier.id, dag_id)
        return Outcome(earlier.id, dag_id, DUPLICATE, earlier.run_id, earlier.id)

    def dags(self) -> Mapping[str, DAG]:
        return self.engine.dags

    async def seen(self, *, kind: str, source: str, dag_id: str, dedup_key: str) -> bool:
        return await self.engine.store.find_event(
            kind=kind, source=source, dag_id=dag_id, dedup_key=dedup_key) is not None

    async def last_key(self, *, kind: str, source: str, dag_id: str) -> str | None:
        return await self.engine.store.last_dedup_key(kind=kind, source=source, dag_id=dag_id)

    async def _commit_now(self, items: list[Pending]) -> None:
        engine = self.engine
        batch = engine.store.batch()
        batch.now = engine.clock()
        rows = [item.record(batch, engine.paused) for item in items]
        await engine.store.commit(batch)
        for row in rows:
            if row is not None:
                engine.enqueue(row)
        for item in items:
            item.done.set()

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
        dag = self.engine.dags[dag_id]
        if getattr(dag, "param_schemas", None) is None:
            check_default_types(dag, conf)  # a dagd DAG's params, as a webhook's body is
        check_conf(dag, conf)  # an Airflow DAG's, by their Param schemas (as Airflow does)
        delivery = Delivery(kind=kind, source=source, payload=conf, logical_date=logical_date)
        [outcome] = await self.deliver(delivery, [dag_id], conf, ignore_pause=True)
        assert outcome.run_id is not None
        return outcome.run_id

    async def replay(self, event_id: int, *, source: str = "api") -> int:
        """Start a new run from a stored event, with the conf of the run it started."""
        store = self.engine.store
        event = await store.get_event(event_id)
        if event.outcome in (UNAUTHORIZED, REJECTED):
            # What a sender could not prove, or what its DAG refused, must not become a
            # run by a click.
            raise StateError(f"event {event_id} was refused ({event.outcome}: "
                             f"{event.detail}); a refused event is not replayed",
                             dag_id=event.dag_id)
        if event.dag_id is None:
            raise InvalidInput(f"event {event_id} concerns no DAG ({event.outcome}): "
                               "nothing to replay")
        conf: Any = event.payload if isinstance(event.payload, dict) else {}
        if event.run_id is not None:
            try:
                conf = (await store.get_run(event.run_id)).conf
            except NotFound:  # pruned ([retention]): the event's payload is its conf
                pass
        return await self.trigger(event.dag_id, conf=conf, source=f"event {event_id}",
                                  kind="replay")

    async def backfill(self, dag_id: str, *, start: Any, end: Any) -> Backfill:
        """A run for every logical date of the DAG's timer in [start, end], oldest first.

        Airflow's rule: the range is over logical dates (a run's data interval start).
        A date without a time covers its whole day, and a date or a naive time is read
        in the timer's timezone; no run is dated after the DAG's end_date. Each run is
        deduplicated by its fire time, so a backfill repeated over the same range queues
        nothing new (`existing` names those runs).
        A paused DAG's backfill runs are recorded and wait, queued, until it is unpaused:
        it is an explicit request.
        """
        dag = self.engine.dags.get(dag_id)
        if dag is None:
            raise NotFound("no such DAG", dag_id=dag_id)
        timers = timers_of(dag.triggers)
        if not timers:
            raise InvalidInput("the DAG has no Cron or Interval trigger to backfill",
                               dag_id=dag_id, field="triggers")
        timer = timers[0]
        first = _when(start, "start", timer.zone, end_of_day=False)
        last = _when(end, "end", timer.zone, end_of_day=True)
        if last < first:
            raise InvalidInput("end is before start", dag_id=dag_id, field="end")
        most = self.engine.settings.max_backfill_runs
        try:
            end_date = getattr(dag, "end_date", None)  # no run dated after it
            fires = [fire for fire in logical_fires(timer, first, last, most + 1)
                     if not past_end(timer, fire, end_date)]
            confs: list[dict[str, Any]] = [{**fire_conf(timer, fire), "backfill": True}
                                           for fire in fires]
        except (ValueError, OverflowError):  # a fire time past year 9999
            raise InvalidInput(f"the range reaches past what {timer.source} can fire in "
                               "(year 9999): end it earlier", dag_id=dag_id,
                               field="end") from None
        if len(fires) > most:
            raise InvalidInput(
                f"the range holds more than {most} runs of {timer.source} "
                "([server] max_backfill_runs): backfill it in smaller ranges",
                dag_id=dag_id, field="end")
        result = Backfill()
        for fire, conf in zip(fires, confs, strict=True):
            delivery = Delivery(kind="backfill", source=f"backfill:{timer.source}",
                                payload=conf, dedup_key=fire.astimezone(UTC).isoformat(),
                                logical_date=timer.data_interval(fire)[0])
            for outcome in await self.deliver(delivery, [dag_id], conf, ignore_pause=True):
                if outcome.run_id is None:
                    continue
                result.logical_dates.append(conf["logical_date"])
                if outcome.duplicate_of is None:
                    result.queued.append(outcome.run_id)
                else:
                    result.existing.append(outcome.run_id)
        return result

    async def record_rejection(
        self, *, kind: str, source: str, dag_id: str | None, outcome: str, detail: str,
        payload: Any = None, run_id: int | None = None,
    ) -> int:
        """Ledger a delivery that started nothing (refused, or a duplicate), for
        `dagd events`: counted on one row per minute, source, DAG, outcome and run, so
        a flood of them adds a row a minute. No dedup key: it never stands in for the
        delivery it repeats."""
        return await self.engine.store.record_refusal(
            kind=kind, source=source, dag_id=dag_id, outcome=outcome, detail=detail,
            payload=payload or {}, run_id=run_id, at=self.engine.clock())


def _when(value: Any, name: str, zone: tzinfo, *, end_of_day: bool) -> datetime:
    """An ISO date or datetime, aware; a date or a naive time is in `zone`. A date alone
    is the first instant of its day, or with `end_of_day` the last one."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be an ISO date like 2026-01-31, got {value!r}",
                           field=name)
    try:
        day: date | None = date.fromisoformat(value)
    except ValueError:
        day = None
    try:
        if day is None:
            parsed = datetime.fromisoformat(value)
        elif end_of_day:
            parsed = datetime.combine(day, time.max)
        else:
            parsed = datetime.combine(day, time.min)
    except ValueError:
        raise InvalidInput(f"{name} is not an ISO date or datetime: {value!r}",
                           field=name) from None
    aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    if not 1970 <= aware.year <= 9998:
        raise InvalidInput(f"{name} must be between the years 1970 and 9998, got {value!r}",
                           field=name)
    return aware


def _key(delivery: Delivery, dag_id: str) -> tuple[str, str, str, str]:
    return (delivery.kind, delivery.source, dag_id, delivery.dedup_key or "")


def _check_digest(delivery: Delivery, digest: str | None, event_id: int | None,
                  dag_id: str) -> None:
    if delivery.digest and digest and delivery.digest != digest:
        where = f"event {event_id}" if event_id is not None else "a delivery in flight"
        raise IdempotencyConflict(
            f"key {delivery.dedup_key!r} was used before ({where}) with a different body",
            dag_id=dag_id, field="Idempotency-Key",
        )


def _settled(result: Outcome | Pending, mine: list[Pending]) -> Outcome:
    if not isinstance(result, Pending):
        return result
    if result.outcome is None:
        raise RuntimeError("a delivery was dropped before it was recorded")
    if any(result is item for item in mine):
        return result.outcome
    o = result.outcome  # a twin that was in flight when this one arrived
    return Outcome(o.event_id, o.dag_id, DUPLICATE, o.run_id, o.event_id)
