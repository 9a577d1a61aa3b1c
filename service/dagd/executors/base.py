"""What an executor receives (AttemptSpec) and returns (AttemptResult), and XCom encoding."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import orjson

from dagd.retry import exception_names

if TYPE_CHECKING:
    from dagd.authoring.context import Context
    from dagd.authoring.tasks import BaseTask

XCOM_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class XComError(Exception):
    """A return value that cannot be stored as XCom."""


def _as_json(value: Any) -> Any:
    """What orjson does not write itself: a subclass of datetime, date or time (a
    pendulum DateTime, as Airflow DAGs return) is written as orjson writes those, in
    ISO 8601."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def encode_xcom(value: Any, max_bytes: int) -> str | None:
    if value is None:
        return None
    try:
        data = orjson.dumps(value, option=XCOM_OPTIONS, default=_as_json)
    except TypeError as exc:
        raise XComError(f"return value is not JSON-serializable ({exc})") from None
    if len(data) > max_bytes:
        raise XComError(
            f"return value is {len(data)} bytes, over the {max_bytes}-byte XCom limit "
            "(write large data to a file and return its path)"
        )
    return data.decode()


def retry_after_of(exc: BaseException) -> float | None:
    """The exception's `retry_after` (seconds, >= 0), if it carries a usable one."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return max(float(value), 0.0)


# Internal messages between the scheduler and the executors, one of each per attempt:
# slotted and not frozen, which makes them several times cheaper to build.
@dataclass(slots=True)
class AttemptSpec:
    attempt_id: int
    ti_id: int
    run_id: int
    dag_id: str
    task_id: str
    try_number: int
    task: BaseTask
    context: Context
    dag_file: str
    log_path: str
    timeout: float | None
    isolation: str
    map_index: int = -1

    @property
    def ref(self) -> str:
        """Compact reference for messages: dag.task[run 42 #2]."""
        return f"{self.dag_id}.{self.task_id}[run {self.run_id} #{self.try_number}]"

    @property
    def log_extra(self) -> dict[str, Any]:
        """The fields every log record about this attempt carries (`extra=`)."""
        return {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id,
                "try_number": self.try_number, "attempt_id": self.attempt_id}


@dataclass(slots=True)
class AttemptResult:
    spec: AttemptSpec
    ok: bool
    xcom: str | None = None
    error: str | None = None
    error_names: list[str] = field(default_factory=list)
    reason: str = ""
    # Seconds the other side asked us to wait before trying again (an HTTP Retry-After),
    # taken from the exception's `retry_after` attribute; None when nobody asked.
    retry_after: float | None = None

    @classmethod
    def failure(
        cls, spec: AttemptSpec, exc: BaseException | None = None, *, error: str = "",
        reason: str = "",
    ) -> AttemptResult:
        if exc is not None:
            return cls(
                spec=spec,
                ok=False,
                error=error or f"{type(exc).__name__}: {exc}",
                error_names=exception_names(type(exc)),
                reason=reason,
                retry_after=retry_after_of(exc),
            )
        return cls(spec=spec, ok=False, error=error, reason=reason)

    @classmethod
    def timeout(cls, spec: AttemptSpec) -> AttemptResult:
        return cls(
            spec=spec,
            ok=False,
            error=f"execution_timeout of {spec.timeout:g}s exceeded: the attempt was stopped",
            error_names=exception_names(TimeoutError),
            reason="timeout",
        )
