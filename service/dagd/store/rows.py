"""Frozen dataclasses that the store maps its rows to.

`from_row` reads each field's column by name (the store's read connection returns
`sqlite3.Row`s), so the order of the columns in a SELECT of `queries.sql` is free; a
class's `decode` says how a column becomes its field (JSON text, a 0/1 flag).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

import orjson


def _json(text: str | None) -> Any:
    return orjson.loads(text) if text else None


def _json_object(text: str | None) -> Any:
    return _json(text) or {}


_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


class Row:
    decode: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Self:
        decode = cls.decode
        return cls(**{name: decode[name](r[name]) if name in decode else r[name]
                      for name in _field_names(cls)})


@dataclass(frozen=True)
class DagRow(Row):
    decode = {"is_paused": bool, "is_active": bool, "spec": _json_object}

    dag_id: str
    fileloc: str
    description: str
    is_paused: bool
    is_active: bool
    spec: dict[str, Any]
    updated_at: float
    last_run_state: str | None = None
    last_run_id: int | None = None


@dataclass(frozen=True)
class ImportErrorRow(Row):
    file: str
    line: int | None
    message: str
    traceback: str
    created_at: float


@dataclass(frozen=True)
class RunRow(Row):
    decode = {"conf": _json_object}

    id: int
    dag_id: str
    state: str
    run_type: str
    event_id: int | None
    logical_date: str | None
    conf: dict[str, Any]
    created_at: float
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True)
class TaskInstanceRow(Row):
    id: int
    run_id: int
    task_id: str
    map_index: int
    state: str
    try_number: int
    max_tries: int
    next_attempt_at: float | None
    started_at: float | None
    ended_at: float | None
    updated_at: float
    queued_at: float | None = None  # when first queued (its first try's happy path)


@dataclass(frozen=True)
class AttemptRow(Row):
    id: int
    ti_id: int
    try_number: int
    state: str
    started_at: float
    ended_at: float | None
    pid: int | None
    error: str | None
    log_path: str
    worker: str | None = None  # the Dask worker's address (executor="dask")


@dataclass(frozen=True)
class EventRow(Row):
    decode = {"payload": _json}

    id: int
    kind: str
    source: str
    dag_id: str | None
    payload: Any
    dedup_key: str | None
    outcome: str
    detail: str | None
    run_id: int | None
    created_at: float
    digest: str | None = None
    # A refusal's row counts the refusals of its minute (see `Store.record_refusal`):
    # how many, and the last one's time (None on every other event).
    count: int = 1
    last_at: float | None = None


@dataclass(frozen=True)
class HistoryRow(Row):
    run_id: int
    ti_id: int | None
    from_state: str | None
    to_state: str
    at: float
    reason: str | None


@dataclass(frozen=True)
class NotificationRow(Row):
    decode = {"payload": _json_object}

    id: int
    dag_id: str
    run_id: int | None
    ti_id: int | None
    notifier: str
    event: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    sent_at: float | None
