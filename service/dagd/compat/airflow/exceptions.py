"""Airflow's exceptions, as a task or a DAG file raises and catches them: a skip ends the
task instance as skipped (`dagd.errors.SkipTask`), a fail ends it failed without its
retries (`dagd.errors.FailTask`); the others are ordinary failures."""

from __future__ import annotations

from typing import Any

from dagd.errors import FailTask, SkipTask


class AirflowException(Exception):
    """The base of Airflow's exceptions: fails the attempt (retried as usual)."""

    status_code = 500


class AirflowSkipException(AirflowException, SkipTask):
    """Raised by a task: its task instance ends as skipped."""


class AirflowFailException(AirflowException, FailTask):
    """Raised by a task: its task instance fails now, without its retries."""


class AirflowTaskTimeout(AirflowException):
    """A task ran past its execution_timeout."""


class AirflowSensorTimeout(AirflowException):
    """A sensor waited too long."""


class AirflowNotFoundException(AirflowException):
    """Something asked for does not exist."""

    status_code = 404


class AirflowBadRequest(AirflowException):
    status_code = 400


class AirflowRescheduleException(AirflowException):
    """Asks to run again later: in dagd an ordinary failure, retried by the task's
    retries."""

    def __init__(self, reschedule_date: Any = None) -> None:
        super().__init__(f"reschedule at {reschedule_date}")
        self.reschedule_date = reschedule_date


class ParamValidationError(AirflowException):
    """A Param's value does not fit its schema."""


class DuplicateTaskIdFound(AirflowException):
    """Two tasks of a DAG have one id (dagd refuses it when the DAG loads)."""


class TaskDeferred(AirflowException):
    """Deferral to a triggerer: dagd has no triggerer, so a deferring task fails."""
