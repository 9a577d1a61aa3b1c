"""The outbox: sends the notifications the scheduler queued, until each is sent.

A notification row is written in the same transaction as the state change it reports,
so nothing is lost if the daemon dies before sending it. The outbox sends what is due,
retries a failed send with a growing delay (a notifier that is down, an SMTP server
that refuses), gives up after MAX_ATTEMPTS with the last error kept in the row, and
sleeps until the next due time or until the scheduler says there is something new.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from dagd.notify.base import Notification, Notifier
from dagd.retry import RetryPolicy
from dagd.store.rows import NotificationRow

if TYPE_CHECKING:
    from dagd.authoring.dag import DAG
    from dagd.store import Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
SEND_TIMEOUT = 30.0
IDLE_CHECK = 60.0

# A failed send waits 2, 4, 8 ... seconds (at most 300) before the next of MAX_ATTEMPTS
# tries: the tasks' own backoff formula, without jitter.
SEND_RETRY = RetryPolicy.build(
    retries=MAX_ATTEMPTS - 1, retry_delay=2.0, retry_exponential_backoff=True,
    max_retry_delay=300.0,
)


class Outbox:
    def __init__(self, store: Store, dags: Callable[[], dict[str, DAG]],
                 *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.dags = dags
        self.clock = clock
        self._wake = anyio.Event()
        self._limiter = anyio.CapacityLimiter(8)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.send_due()
            next_at = await self.store.next_notification_at()
            timeout = IDLE_CHECK if next_at is None else max(next_at - self.clock(), 0.0)
            with anyio.move_on_after(min(timeout, IDLE_CHECK)):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def send_due(self) -> int:
        due = await self.store.due_notifications(self.clock())
        if due:
            async with anyio.create_task_group() as tg:
                for row in due:
                    tg.start_soon(self._send, row)
        return len(due)

    async def flush(self, deadline: float) -> None:
        """At shutdown: send what is due now, for at most `deadline` seconds."""
        with anyio.move_on_after(deadline):
            await self.send_due()

    def _notifier(self, row: NotificationRow) -> Notifier | None:
        dag = self.dags().get(row.dag_id)
        for notifier in getattr(dag, "notifiers", ()) if dag else ():
            if notifier.name == row.notifier:
                return notifier
        return None

    async def _send(self, row: NotificationRow) -> None:
        notifier = self._notifier(row)
        if notifier is None:
            await self.store.notification_failed(
                row.id, f"notifier {row.notifier!r} is no longer declared by DAG {row.dag_id!r}",
                None)
            return
        notification = Notification.from_payload(row.event, row.payload)
        try:
            async with self._limiter:
                with anyio.fail_after(SEND_TIMEOUT):
                    await notifier.send(notification)
        except Exception as exc:
            attempts = row.attempts + 1
            error = f"{type(exc).__name__}: {exc}"
            if not SEND_RETRY.should_retry(attempts, []):
                log.error("notification %d (%s to %s) given up after %d tries: %s", row.id,
                          row.event, row.notifier, attempts, error, extra=_extra(row))
                await self.store.notification_failed(row.id, error, None)
            else:
                delay = SEND_RETRY.delay(attempts)
                log.warning("notification %d (%s to %s) failed, retry in %.0fs: %s", row.id,
                            row.event, row.notifier, delay, error, extra=_extra(row))
                await self.store.notification_failed(row.id, error, self.clock() + delay)
            return
        await self.store.notification_sent(row.id)
        log.info("notification %d sent to %s: %s", row.id, row.notifier, notification.title,
                 extra=_extra(row))


def _extra(row: NotificationRow) -> dict[str, Any]:
    return {"dag_id": row.dag_id, "run_id": row.run_id, "notification_id": row.id}
