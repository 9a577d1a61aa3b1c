"""The outbox: sends the notifications the scheduler queued, until each is sent.

A notification row is written in the same transaction as the state change it reports,
so nothing is lost if the daemon dies before sending it; after a restart the rows
still pending are sent. The outbox sends what is due, retries a send refused for now
(a notifier that is down, an SMTP 4xx, a timeout) with a growing delay, fails at once
a send refused for good (an SMTP 5xx, a refused recipient), gives up after
`[notifications] max_attempts` with the last error kept in the row, and sleeps until
the next due time or until the scheduler says there is something new. It runs beside
the scheduler, never in its tick: a slow mail server delays only the mail.

Every email due (the built-in ones and EmailNotifier's) goes out over one SMTP
connection (`notify.smtp.Mailer`), each marked sent as soon as the server has taken
it, so a crash can repeat at most the message in flight, and that one carries the
same Message-ID. Other notifiers (a chat webhook) send one row at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from dagd.config import Settings
from dagd.errors import DagdError
from dagd.notify import message
from dagd.notify.base import BUILTIN_EMAIL, Notification, Notifier
from dagd.notify.smtp import Mailer, Outgoing, Result, SendError, read_password
from dagd.retry import RetryPolicy
from dagd.store.rows import NotificationRow

if TYPE_CHECKING:
    from dagd.authoring.dag import DAG
    from dagd.store import Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
SEND_TIMEOUT = 30.0
IDLE_CHECK = 60.0
BATCH = 500  # rows taken per pass
DUE_SLACK = 1.0  # seconds: what falls due this soon is sent with what is due


def send_retry(settings: Settings) -> RetryPolicy:
    """A failed send waits retry_delay, then twice that, ... (at most 300 s), for at
    most max_attempts tries: the tasks' own backoff formula, without jitter."""
    return RetryPolicy.build(
        retries=settings.notify_max_attempts - 1, retry_delay=settings.notify_retry_delay,
        retry_exponential_backoff=True, max_retry_delay=300.0,
    )


class Outbox:
    def __init__(self, store: Store, dags: Callable[[], dict[str, DAG]],
                 *, clock: Callable[[], float] = time.time,
                 settings: Settings | None = None) -> None:
        from dagd.notify import email

        self.store = store
        self.dags = dags
        self.clock = clock
        self.configure(settings if settings is not None else email.current_settings())
        self._wake = anyio.Event()
        self._limiter = anyio.CapacityLimiter(8)

    def configure(self, settings: Settings) -> None:
        """The [smtp] and [notifications] settings sends use from now on (SIGHUP)."""
        self.settings = settings
        self.retry = send_retry(settings)
        self.templates = message.Templates(settings.templates_folder)
        self.mailer = Mailer(settings)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            while await self.send_due() >= BATCH:
                pass  # a burst larger than one pass: carry on at once
            next_at = await self.store.next_notification_at()
            timeout = IDLE_CHECK if next_at is None else max(next_at - self.clock(), 0.0)
            with anyio.move_on_after(min(timeout, IDLE_CHECK)):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def send_due(self) -> int:
        # Rows due within the next moment go too: the retries of one burst, written a
        # few milliseconds apart, share a connection instead of taking one each.
        due = await self.store.due_notifications(self.clock() + DUE_SLACK, limit=BATCH)
        if due:
            mail = [row for row in due if self._is_email(row)]
            async with anyio.create_task_group() as tg:
                if mail:
                    tg.start_soon(self._send_mail, mail)
                for row in due:
                    if not self._is_email(row):
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

    def _is_email(self, row: NotificationRow) -> bool:
        if row.notifier == BUILTIN_EMAIL:
            return True
        from dagd.notify.email import EmailNotifier

        return isinstance(self._notifier(row), EmailNotifier)

    # -- email: every due message over one connection ------------------------------------
    def _recipients(self, row: NotificationRow) -> tuple[list[str], str]:
        """(recipients, subject prefix) of an email row."""
        if row.notifier == BUILTIN_EMAIL:
            return [str(a) for a in row.payload.get("to") or []], "[dagd]"
        notifier: Any = self._notifier(row)
        if notifier is None:
            raise SendError("compose", f"notifier {row.notifier!r} is no longer declared by "
                            f"DAG {row.dag_id!r}", permanent=True)
        return list(notifier.to), notifier.subject_prefix

    async def compose(self, row: NotificationRow) -> Outgoing:
        """The message of an email row, as it is sent (and sent again, identically)."""
        to, prefix = self._recipients(row)
        bad = [a for a in to if not message.valid_address(a)]
        if bad or not to:
            raise SendError("compose", f"not an email address: {bad[0]!r}" if bad else
                            "no recipient", permanent=True)
        ctx = await message.gather(self.store, row, self.settings, secrets=self._secrets())
        ctx["prefix"] = prefix
        subject, text, html = self.templates.render(ctx)
        sender = self.settings.smtp_sender
        thread = [message.message_id(i, at, sender)
                  for i, at in await self.store.notification_thread(row)]
        msg = message.build(subject=subject, text=text, html=html, sender=sender, to=to,
                            msg_id=message.message_id(row.id, row.created_at, sender),
                            thread=thread, created_at=row.created_at)
        return Outgoing(msg, to, key=row.id)

    def _secrets(self) -> list[str]:
        """The configured secrets' values, masked in the log lines an email quotes."""
        from dagd.executors.logs import secret_values
        from dagd.kinds.connections import connection_names, get_connection

        try:
            password = [read_password(self.settings) or ""]
        except SendError:
            password = []
        return password + secret_values(
            smtp_password_env=self.settings.smtp_password_env,
            connections=[*self.settings.connections.values(),
                         *map(get_connection, connection_names())],
            webhook_secret_envs=[getattr(t, "secret_env", None)
                                 for dag in self.dags().values() for t in dag.triggers])

    async def _send_mail(self, rows: list[NotificationRow]) -> None:
        by_id = {row.id: row for row in rows}
        items: list[Outgoing] = []
        for row in rows:
            try:
                items.append(await self.compose(row))
            except (SendError, DagdError) as exc:
                error = exc if isinstance(exc, SendError) else SendError(
                    "compose", str(exc), permanent=True)
                await self._failed(row, error)

        async def record(result: Result) -> None:
            row = by_id[result.item.key]
            if result.error is not None:
                await self._failed(row, result.error)
                return
            note = None
            if result.refused:
                note = "sent; refused by the server for " + "; ".join(
                    f"{r}: {a}" for r, a in result.refused.items())
            await self.store.notification_sent(row.id, note)
            log.info("%s notification %d sent (%s, %s): %s", _ref(row), row.id, row.event,
                     ", ".join(result.item.recipients),
                     result.item.message["Subject"], extra=_extra(row))

        if items:
            await self.mailer.deliver(items, record)

    async def _failed(self, row: NotificationRow, error: SendError) -> None:
        attempts = row.attempts + 1
        text = str(error)
        if error.permanent or not self.retry.should_retry(attempts, []):
            why = "refused" if error.permanent else f"given up after {attempts} tries"
            log.error("%s notification %d (%s to %s) %s: %s", _ref(row), row.id, row.event,
                      row.notifier, why, text, extra=_extra(row))
            await self.store.notification_failed(row.id, text, None)
        else:
            delay = self.retry.delay(attempts)
            log.warning("%s notification %d (%s to %s) failed, retry in %.0fs: %s",
                        _ref(row), row.id, row.event, row.notifier, delay, text,
                        extra=_extra(row))
            await self.store.notification_failed(row.id, text, self.clock() + delay)

    # -- any other notifier: one row at a time ----------------------------------------
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
            await self._failed(row, SendError("send", f"{type(exc).__name__}: {exc}",
                                              permanent=False))
            return
        await self.store.notification_sent(row.id)
        log.info("%s notification %d sent to %s: %s", _ref(row), row.id, row.notifier,
                 notification.title, extra=_extra(row))


def _ref(row: NotificationRow) -> str:
    """`etl.load[run 42 #2]` (a task's) or `etl[run 42]` (a run's), as the scheduler logs."""
    task, tries = row.payload.get("task_id"), row.payload.get("try_number")
    return (f"{row.dag_id}.{task}[run {row.run_id} #{tries}]" if task else
            f"{row.dag_id}[run {row.run_id}]")


def _extra(row: NotificationRow) -> dict[str, Any]:
    return {"dag_id": row.dag_id, "run_id": row.run_id, "task_id": row.payload.get("task_id"),
            "try_number": row.payload.get("try_number"), "notification_id": row.id}
