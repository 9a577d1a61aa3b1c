"""The events port: how every trigger hands an event to the scheduler side.

Triggers (timers, file drops, plugin triggers) and the webhook handler see only this:
a `Delivery` (one firing, with its dedup key), the DAGs it is for, and the `Outcome`
for each of them, plus the few questions a trigger must ask before it delivers ("has
this key been seen?", "which fire time did this timer last act on?"). The scheduler's
intake implements it; a trigger never holds the engine, the intake or the store.
Pure: types only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from dagd.errors import InvalidInput

if TYPE_CHECKING:
    from dagd.authoring.dag import DAG

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


Conf = Callable[[str], dict[str, Any]] | dict[str, Any]


class Events(Protocol):
    """What a trigger may do and ask. Implemented by `dagd.scheduler.intake.Intake`."""

    def dags(self) -> Mapping[str, DAG]:
        """The DAGs loaded now (read-only: a trigger reads their declarations)."""
        ...

    async def deliver(
        self, delivery: Delivery, dag_ids: Sequence[str], conf: Conf, *,
        members: Sequence[Delivery] = (), ignore_pause: bool = False,
    ) -> list[Outcome]:
        """Record `delivery` for each DAG; a run for each that is new and not paused."""
        ...

    async def seen(self, *, kind: str, source: str, dag_id: str, dedup_key: str) -> bool:
        """Has a delivery with this dedup key been recorded for this DAG?"""
        ...

    async def last_key(self, *, kind: str, source: str, dag_id: str) -> str | None:
        """The dedup key of the newest delivery recorded from `source` for the DAG."""
        ...

    async def record_rejection(
        self, *, kind: str, source: str, dag_id: str | None, outcome: str, detail: str,
        payload: Any = None, run_id: int | None = None,
    ) -> int:
        """Ledger a delivery that started nothing (refused, unknown, a duplicate)."""
        ...
