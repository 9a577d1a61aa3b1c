"""EmailNotifier, and the `[smtp]` settings every email of the daemon is sent with.

    from dagd import DAG
    from dagd.notify.email import EmailNotifier

    with DAG("etl", notifiers=[EmailNotifier(to=["data-team@example.com"],
                                             on=("run_failed", "task_retry"))]):
        ...

The outbox sends an EmailNotifier's notifications as it sends the built-in task emails
(`email=` on a task): the same subject, text and HTML parts, thread headers, and the
same delivery (dagd.notify.smtp); a server that is down or refuses for now makes the
outbox try again later. `send_message` sends any message through `[smtp]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.message import EmailMessage
from typing import Any

from dagd.authoring.settings import check_address
from dagd.config import Settings
from dagd.errors import DagDefinitionError
from dagd.notify.base import Notification, Notifier
from dagd.notify.message import header_text
from dagd.notify.smtp import Mailer

# The daemon's Settings (their `[smtp]` and `[notifications]` parts), set at start.
_settings = Settings()


def configure(settings: Settings) -> None:
    """Use these Settings' `[smtp]` for every email (called by the daemon at start)."""
    global _settings
    _settings = settings


def current_settings() -> Settings:
    return _settings


async def send_message(message: EmailMessage, recipients: Sequence[str], *,
                       settings: Settings | None = None) -> None:
    """Send one message through `[smtp]`; a refusal raises `SendError` (its `permanent`
    says whether trying again could help, its text the server's answer)."""
    result = await Mailer(settings or _settings).send(message, recipients)
    if result.error is not None:
        raise result.error


class EmailNotifier(Notifier):
    """Send each notification as an email to `to`."""

    kind = "email"

    def __init__(self, *, to: Iterable[str], name: str | None = None,
                 on: Iterable[str] = ("run_failed", "task_failed"),
                 subject_prefix: str = "[dagd]") -> None:
        super().__init__(name=name, on=on)
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients or not all(check_address(r) for r in recipients):
            raise DagDefinitionError(f"to= must list email addresses (one each, like "
                                     f"name@example.com), got {to!r}", field="to")
        self.to = recipients
        self.subject_prefix = header_text(subject_prefix)

    def message(self, n: Notification, sender: str) -> EmailMessage:
        """A short plain-text message (the outbox sends the full one; this is for a
        notifier used on its own)."""
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = ", ".join(self.to)
        msg["Subject"] = header_text(f"{self.subject_prefix} {n.title}".strip())
        lines = [n.title, "", f"DAG:   {n.dag_id}", f"Run:   {n.run_id}"]
        if n.task_id:
            lines.append(f"Task:  {n.task_id} (try {n.try_number})")
            lines.append(f"Log:   dagd logs {n.dag_id} {n.run_id} {n.task_id}"
                         f" --try {n.try_number}")
        if n.at:
            lines.append(f"At:    {n.at}")
        if n.error:
            lines += ["", "Error:", n.error]
        msg.set_content("\n".join(lines) + "\n")
        return msg

    async def send(self, notification: Notification) -> None:
        await send_message(self.message(notification, _settings.smtp_sender), self.to)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "to": self.to}
