"""The changes port: what was committed, for whoever must hear of it.

After each commit the scheduler publishes the state changes it made (run and task
instance transitions, attempts started and ended, events recorded) as `Change` values.
A subscriber (the file mover today; the UI's live stream, metrics and notifications
next) takes them from its own `Subscription`, never by holding the engine. Publishing
never waits: a subscriber that falls more than `limit` changes behind is dropped, and
its next read raises `Dropped`, telling it to re-read the rows it cares about.
Changes are built only for the kinds some subscriber asked for. `pruned` says what
retention deleted (a subscriber re-reading rows from before it finds them gone).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio

RUN = "run"  # a run's state changed (queued, running, success, failed)
TI = "ti"  # a task instance was created or its state changed
ATTEMPT = "attempt"  # an attempt started (state "running") or ended (success, failed)
EVENT = "event"  # an event was recorded in the ledger (state: its outcome)
KINDS = frozenset({RUN, TI, ATTEMPT, EVENT})


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # RUN, TI, ATTEMPT or EVENT
    id: int  # the run's, task instance's, attempt's or event's id
    run_id: int | None
    dag_id: str | None
    state: str | None
    at: float
    # Kind-specific facts: a task instance's task_id and reason; an ended run's
    # run_type and conf; an attempt's ti_id and try_number; an event's kind and source.
    detail: Mapping[str, Any] | None = None


class Dropped(Exception):
    """The subscriber fell behind and was dropped: re-read the rows, subscribe again."""


class Subscription:
    """One subscriber's queue. `async with hub.subscribe(...) as sub: await sub.next()`."""

    def __init__(self, hub: Changes, kinds: frozenset[str], limit: int) -> None:
        self.kinds = kinds
        self.limit = limit
        self.dropped = False
        self._hub = hub
        self._items: deque[Change] = deque()
        self._ready = anyio.Event()

    def _offer(self, changes: list[Change]) -> None:
        for change in changes:
            if change.kind in self.kinds:
                self._items.append(change)
        if len(self._items) > self.limit:
            self.dropped = True
            self._items.clear()
            self._hub.unsubscribe(self)
        if self._items or self.dropped:
            self._ready.set()

    async def next(self) -> list[Change]:
        """Every change queued since the last call (waits for at least one)."""
        while not self._items:
            if self.dropped:
                raise Dropped(f"more than {self.limit} changes behind")
            await self._ready.wait()
            self._ready = anyio.Event()
        items = list(self._items)
        self._items.clear()
        return items

    @property
    def pending(self) -> int:
        """Changes queued and not yet read (`next()` returns them without waiting)."""
        return len(self._items)

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass
class Pruned:
    """What retention ([retention]) deleted since the daemon started: rows by table, and
    the newest change time among them. The rows of a change at or before `through` may
    be gone, so a catch-up from a cursor before it cannot be rebuilt exactly."""

    through: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    passes: int = 0


class Changes:
    """The hub: the scheduler publishes, subscribers read at their own pace."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self.wanted: frozenset[str] = frozenset()  # the kinds some subscriber wants
        self.pruned = Pruned()

    def subscribe(self, kinds: Iterable[str] = KINDS, *, limit: int = 10_000) -> Subscription:
        chosen = frozenset(kinds)
        unknown = chosen - KINDS
        if unknown:
            raise ValueError(f"unknown change kind(s) {sorted(unknown)}; known: {sorted(KINDS)}")
        sub = Subscription(self, chosen, limit)
        self._subs.append(sub)
        self._update()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._update()

    def _update(self) -> None:
        self.wanted = frozenset().union(*(s.kinds for s in self._subs))

    def publish(self, changes: list[Change]) -> None:
        """Hand committed changes to every subscriber; never blocks."""
        if changes:
            for sub in list(self._subs):
                sub._offer(changes)
