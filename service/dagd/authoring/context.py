"""The run context a task receives when it asks for it, and `get_current_context()`.

A task asks by naming a parameter `context`, or any of the context's fields
(`run_id`, `logical_date`, `ds`, `conf`, `params`, `try_number`, `attempt_id`, `ti_key`,
`dag_id`, `task_id`, `map_index`), or by calling `get_current_context()` while it runs.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dagd.errors import DagdError

_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "dagd_context", default=None
)
# Set to "1" by `dagd test` and `dagd tasks test` for their tasks (Airflow's test_mode);
# worker processes inherit it (dagd.executors.env lets it through).
TEST_MODE = "DAGD_TEST_MODE"


@dataclass(frozen=True)
class Context:
    dag_id: str
    task_id: str
    run_id: int
    try_number: int
    attempt_id: int
    logical_date: datetime | None = None
    conf: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, Any] = field(default_factory=dict)
    map_index: int = -1

    @property
    def ds(self) -> str | None:
        """The logical date as YYYY-MM-DD, or None for runs without one."""
        return self.logical_date.date().isoformat() if self.logical_date else None

    @property
    def ti_key(self) -> str:
        """Stable across retries of this task in this run: a key for idempotent work."""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}" + (
            f"/{self.map_index}" if self.map_index >= 0 else ""
        )

    def xcom_pull(self, task_id: str, default: Any = None) -> Any:
        """The return value of an upstream task of this one in this run."""
        if task_id not in self.upstream:
            return default
        return self.upstream[task_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "try_number": self.try_number,
            "attempt_id": self.attempt_id,
            "logical_date": self.logical_date.isoformat() if self.logical_date else None,
            "conf": self.conf,
            "params": self.params,
            "upstream": self.upstream,
            "map_index": self.map_index,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Context:
        logical = data.get("logical_date")
        return cls(
            dag_id=data["dag_id"],
            task_id=data["task_id"],
            run_id=data["run_id"],
            try_number=data["try_number"],
            attempt_id=data["attempt_id"],
            logical_date=datetime.fromisoformat(logical) if logical else None,
            conf=data.get("conf") or {},
            params=data.get("params") or {},
            upstream=data.get("upstream") or {},
            map_index=data.get("map_index", -1),
        )

    def value(self, name: str) -> Any:
        """The value injected for a parameter named `name`."""
        if name == "context":
            return self
        return getattr(self, name)


INJECTABLE = frozenset(
    {
        "context",
        "run_id",
        "logical_date",
        "ds",
        "conf",
        "params",
        "try_number",
        "attempt_id",
        "ti_key",
        "dag_id",
        "task_id",
        "map_index",
    }
)


def get_current_context() -> Context:
    ctx = _current.get()
    if ctx is None:
        raise DagdError("get_current_context() called outside a running task")
    return ctx


def set_current_context(ctx: Context | None) -> contextvars.Token[Context | None]:
    return _current.set(ctx)


def reset_current_context(token: contextvars.Token[Context | None]) -> None:
    _current.reset(token)
