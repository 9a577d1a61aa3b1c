"""Frozen dataclasses that the store maps its rows to.

Each `from_row` reads its columns by name (the store's read connection returns
`sqlite3.Row`s), so the order of the columns in a SELECT of `queries.sql` is free.
"""

from __future__ import annotations

import sqlite3
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
    def from_row(cls, r: sqlite3.Row) -> DagRow:
        return cls(
            dag_id=r["dag_id"],
            fileloc=r["fileloc"],
            description=r["description"],
            is_paused=bool(r["is_paused"]),
            is_active=bool(r["is_active"]),
            spec=_json(r["spec"]) or {},
            updated_at=r["updated_at"],
            last_run_state=r["last_run_state"],
            last_run_id=r["last_run_id"],
        )


@dataclass(frozen=True)
class ImportErrorRow:
    file: str
    line: int | None
    message: str
    traceback: str
    created_at: float

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> ImportErrorRow:
        return cls(
            file=r["file"],
            line=r["line"],
            message=r["message"],
            traceback=r["traceback"],
            created_at=r["created_at"],
        )


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
    def from_row(cls, r: sqlite3.Row) -> RunRow:
        return cls(
            id=r["id"],
            dag_id=r["dag_id"],
            state=r["state"],
            run_type=r["run_type"],
            event_id=r["event_id"],
            logical_date=r["logical_date"],
            conf=_json(r["conf"]) or {},
            created_at=r["created_at"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
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
    def from_row(cls, r: sqlite3.Row) -> TaskInstanceRow:
        return cls(
            id=r["id"],
            run_id=r["run_id"],
            task_id=r["task_id"],
            map_index=r["map_index"],
            state=r["state"],
            try_number=r["try_number"],
            max_tries=r["max_tries"],
            next_attempt_at=r["next_attempt_at"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            updated_at=r["updated_at"],
        )


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
    def from_row(cls, r: sqlite3.Row) -> AttemptRow:
        return cls(
            id=r["id"],
            ti_id=r["ti_id"],
            try_number=r["try_number"],
            state=r["state"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            pid=r["pid"],
            error=r["error"],
            log_path=r["log_path"],
        )


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
    def from_row(cls, r: sqlite3.Row) -> EventRow:
        return cls(
            id=r["id"],
            kind=r["kind"],
            source=r["source"],
            dag_id=r["dag_id"],
            payload=_json(r["payload"]),
            dedup_key=r["dedup_key"],
            outcome=r["outcome"],
            detail=r["detail"],
            run_id=r["run_id"],
            created_at=r["created_at"],
            digest=r["digest"],
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
    def from_row(cls, r: sqlite3.Row) -> HistoryRow:
        return cls(
            run_id=r["run_id"],
            ti_id=r["ti_id"],
            from_state=r["from_state"],
            to_state=r["to_state"],
            at=r["at"],
            reason=r["reason"],
        )


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
    def from_row(cls, r: sqlite3.Row) -> NotificationRow:
        return cls(
            id=r["id"],
            dag_id=r["dag_id"],
            run_id=r["run_id"],
            ti_id=r["ti_id"],
            notifier=r["notifier"],
            event=r["event"],
            payload=_json(r["payload"]) or {},
            state=r["state"],
            attempts=r["attempts"],
            next_attempt_at=r["next_attempt_at"],
            last_error=r["last_error"],
            created_at=r["created_at"],
            sent_at=r["sent_at"],
        )
