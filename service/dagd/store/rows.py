"""Frozen dataclasses that the store maps its rows to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


def _json(text: str | None) -> Any:
    return orjson.loads(text) if text else None


@dataclass(frozen=True)
class DagRow:
    dag_id: str
    fileloc: str
    description: str
    is_paused: bool
    is_active: bool
    spec: dict[str, Any]
    updated_at: float
    last_run_state: str | None = None
    last_run_id: int | None = None

    @classmethod
    def from_row(cls, r: Any) -> DagRow:
        return cls(
            dag_id=r[0],
            fileloc=r[1],
            description=r[2],
            is_paused=bool(r[3]),
            is_active=bool(r[4]),
            spec=_json(r[5]) or {},
            updated_at=r[6],
            last_run_state=r[7],
            last_run_id=r[8],
        )


@dataclass(frozen=True)
class ImportErrorRow:
    file: str
    line: int | None
    message: str
    traceback: str
    created_at: float

    @classmethod
    def from_row(cls, r: Any) -> ImportErrorRow:
        return cls(*r)


@dataclass(frozen=True)
class RunRow:
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

    @classmethod
    def from_row(cls, r: Any) -> RunRow:
        return cls(
            id=r[0],
            dag_id=r[1],
            state=r[2],
            run_type=r[3],
            event_id=r[4],
            logical_date=r[5],
            conf=_json(r[6]) or {},
            created_at=r[7],
            started_at=r[8],
            ended_at=r[9],
        )


@dataclass(frozen=True)
class TaskInstanceRow:
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

    @classmethod
    def from_row(cls, r: Any) -> TaskInstanceRow:
        return cls(*r)


@dataclass(frozen=True)
class AttemptRow:
    id: int
    ti_id: int
    try_number: int
    state: str
    started_at: float
    ended_at: float | None
    pid: int | None
    error: str | None
    log_path: str

    @classmethod
    def from_row(cls, r: Any) -> AttemptRow:
        return cls(*r)


@dataclass(frozen=True)
class EventRow:
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

    @classmethod
    def from_row(cls, r: Any) -> EventRow:
        return cls(
            id=r[0],
            kind=r[1],
            source=r[2],
            dag_id=r[3],
            payload=_json(r[4]),
            dedup_key=r[5],
            outcome=r[6],
            detail=r[7],
            run_id=r[8],
            created_at=r[9],
            digest=r[10],
        )


@dataclass(frozen=True)
class HistoryRow:
    run_id: int
    ti_id: int | None
    from_state: str | None
    to_state: str
    at: float
    reason: str | None

    @classmethod
    def from_row(cls, r: Any) -> HistoryRow:
        return cls(*r)


@dataclass(frozen=True)
class NotificationRow:
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

    @classmethod
    def from_row(cls, r: Any) -> NotificationRow:
        return cls(r[0], r[1], r[2], r[3], r[4], r[5], _json(r[6]) or {}, *r[7:])
