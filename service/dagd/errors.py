"""The one exception root, `DagdError`, and its subclasses.

Each error carries the context a user needs to find the problem (file, line, DAG,
task, field) and an HTTP status, so the CLI, the API and the UI all show the same thing.
"""

from __future__ import annotations

from typing import Any


class DagdError(Exception):
    """Base of every error dagd raises on purpose."""

    status: int = 400
    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        dag_id: str | None = None,
        task_id: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.dag_id = dag_id
        self.task_id = task_id
        self.field = field

    def where(self) -> str:
        """A compact 'file:line, DAG d, task t, field f' prefix; empty when nothing is known."""
        parts: list[str] = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.dag_id:
            parts.append(f"DAG {self.dag_id!r}")
        if self.task_id:
            parts.append(f"task {self.task_id!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"error": self.code, "message": str(self)}
        for key in ("file", "line", "dag_id", "task_id", "field"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


class DagDefinitionError(DagdError):
    """A DAG or task is defined wrongly: bad setting, duplicate id, self-dependency."""

    code = "dag_definition"


class CycleError(DagDefinitionError):
    """The dependencies form a cycle; `cycle` lists the task ids on it, in order."""

    code = "cycle"

    def __init__(self, message: str, *, cycle: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.cycle = cycle


class ConfigError(DagdError):
    code = "config"


class NotFound(DagdError):
    status = 404
    code = "not_found"


class Conflict(DagdError):
    status = 409
    code = "conflict"


class InvalidInput(DagdError):
    status = 422
    code = "invalid"


class StateError(DagdError):
    """A state change that the transitions table forbids, or that lost a race."""

    status = 409
    code = "state"


class AlreadyRunning(DagdError):
    code = "already_running"


class DaemonUnavailable(DagdError):
    status = 503
    code = "daemon_unavailable"


class TaskFailure(Exception):
    """Raised by the worker side to report a failed attempt; not a DagdError (user code)."""


class SkipTask(Exception):
    """Raised by a task to end its task instance as skipped, not failed: what Airflow's
    AirflowSkipException and a bash command's exit code 99 mean. Its downstream tasks
    then follow their trigger rules, as after any skip."""


class FailTask(Exception):
    """Raised by a task to fail its task instance at once, whatever its retries (what
    Airflow's AirflowFailException means)."""


# How the scheduler recognises them in an attempt's exception names (across processes).
SKIP_TASK = f"{__name__}.SkipTask"
FAIL_TASK = f"{__name__}.FailTask"


class StorageUnavailable(DagdError):
    """The database cannot be written now (disk full, I/O error): try again later."""

    status = 503
    code = "storage_unavailable"
    retry_after = 5


class Draining(DagdError):
    """The daemon is stopping: no new work is taken; send it again after `retry_after`
    seconds (to the restarted daemon)."""

    status = 503
    code = "draining"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthorized(DagdError):
    """A request to the UI or the API with no valid login or token."""

    status = 401
    code = "unauthorized"


class Forbidden(DagdError):
    """A login whose role may not do this (a viewer asking to change something)."""

    status = 403
    code = "forbidden"


class BadRequest(DagdError):
    """A request that cannot be read as sent (a body that does not decode)."""

    status = 400
    code = "bad_request"


class PayloadTooLarge(DagdError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(DagdError):
    status = 415
    code = "unsupported_media_type"
