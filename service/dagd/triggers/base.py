"""Trigger: the base class of triggers that plugins add.

dagd runs `watch(emit)` for as long as a DAG that lists the trigger is loaded (it is
cancelled, and started again, when the DAGs are reloaded). The trigger calls
`await emit(payload, dedup_key=...)` for each event: the event is recorded in the ledger
and starts a run of each DAG that lists it, with `payload` as the run's conf. A
`dedup_key` makes the event count once, across restarts. An exception from `watch` is
logged and `watch` is started again a second later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

Emit = Callable[..., Awaitable[list[Any]]]


class Trigger:
    kind: ClassVar[str] = "custom"

    @property
    def source(self) -> str:
        """Names this trigger in the event ledger (and scopes its dedup keys)."""
        return self.kind

    async def watch(self, emit: Emit) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement watch()")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source}
