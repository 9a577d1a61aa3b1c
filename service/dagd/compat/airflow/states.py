"""Airflow's state names (`airflow.utils.state`), as a callback or a DAG file compares
them: the same strings dagd stores."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """A task instance's state (Airflow's TaskInstanceState)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    REMOVED = "removed"
    RESTARTING = "restarting"
    UP_FOR_RESCHEDULE = "up_for_reschedule"
    DEFERRED = "deferred"


class DagRunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
