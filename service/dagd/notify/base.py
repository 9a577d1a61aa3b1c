"""Notifier: where a notification goes. A DAG lists its notifiers; each says which events
it wants. Plugins add kinds (a chat webhook, email) by subclassing it. Pure.

Events: `run_success`, `run_failed`, `task_failed` (no try left), `task_retry`.

Who the built-in email (a task's `email=`, a DAG's `email=` and `notify_on=`) goes to
is `dagd.authoring.alerts.emailed`; its rows name the notifier `BUILTIN_EMAIL`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from dagd.authoring.alerts import BUILTIN_EMAIL as BUILTIN_EMAIL  # re-exported
from dagd.authoring.alerts import EMAIL_EVENTS as EMAIL_EVENTS
from dagd.authoring.alerts import emailed as emailed
from dagd.errors import DagDefinitionError

EVENTS = ("run_success", "run_failed", "task_failed", "task_retry")
@dataclass(frozen=True)
class Notification:
    """What happened, as a notifier receives it."""

    event: str
    dag_id: str
    run_id: int | None
    task_id: str | None = None
    try_number: int | None = None
    state: str | None = None
    error: str | None = None
    at: str | None = None  # ISO time of the state change

    @property
    def title(self) -> str:
        what = {
            "run_success": "succeeded",
            "run_failed": "failed",
            "task_failed": "failed",
            "task_retry": "failed, will retry",
        }.get(self.event, self.event)
        if self.task_id:
            return (f"{self.dag_id}.{self.task_id} [run {self.run_id} try {self.try_number}] "
                    f"{what}")
        return f"{self.dag_id} [run {self.run_id}] {what}"

    @property
    def text(self) -> str:
        return f"{self.title}: {self.error}" if self.error else self.title

    @classmethod
    def from_payload(cls, event: str, payload: dict[str, Any]) -> Notification:
        return cls(
            event=event, dag_id=str(payload.get("dag_id", "")), run_id=payload.get("run_id"),
            task_id=payload.get("task_id"), try_number=payload.get("try_number"),
            state=payload.get("state"), error=payload.get("error"), at=payload.get("at"),
        )


class Notifier:
    """Base class: subclasses set `kind` and implement `send`."""

    kind: ClassVar[str] = "notifier"

    def __init__(self, *, name: str | None = None,
                 on: Iterable[str] = ("run_failed", "task_failed")) -> None:
        events = tuple(on)
        unknown = [e for e in events if e not in EVENTS]
        if unknown or not events:
            raise DagDefinitionError(
                f"notifier events must be among {', '.join(EVENTS)}, got {events!r}",
                field="on",
            )
        self.name = name or self.kind
        self.on = frozenset(events)

    async def send(self, notification: Notification) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement send()")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "on": sorted(self.on)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {sorted(self.on)}>"
