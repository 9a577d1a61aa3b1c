"""EmailNotifier: notifications by email, through the SMTP server of `[smtp]` (aiosmtplib).

    from dagd import DAG
    from dagd.notify.email import EmailNotifier

    with DAG("etl", notifiers=[EmailNotifier(to=["data-team@example.com"],
                                             on=("run_failed", "task_retry"))]):
        ...

A server that is down or refuses the message makes the send fail; the outbox keeps the
notification and tries again later (see dagd.notify.outbox).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from dagd.config import Settings
from dagd.errors import DagDefinitionError
from dagd.notify.base import Notification, Notifier

# The `[smtp]` part of the daemon's Settings (its smtp_* fields), set at start.
_settings = Settings()


def configure(settings: Settings) -> None:
    """Use these Settings' `[smtp]` for every email (called by the daemon at start)."""
    global _settings
    _settings = settings


class EmailNotifier(Notifier):
    """Send each notification as a plain-text email to `to`."""

    kind = "email"

    def __init__(self, *, to: Iterable[str], name: str | None = None,
                 on: Iterable[str] = ("run_failed", "task_failed"),
                 subject_prefix: str = "[dagd]") -> None:
        super().__init__(name=name, on=on)
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients or not all(isinstance(r, str) and "@" in r for r in recipients):
            raise DagDefinitionError(f"to= must list email addresses, got {to!r}", field="to")
        self.to = recipients
        self.subject_prefix = subject_prefix

    def message(self, n: Notification, sender: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = ", ".join(self.to)
        msg["Subject"] = f"{self.subject_prefix} {n.title}".strip()
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
        s = _settings
        password = None
        if s.smtp_password_env:
            password = os.environ.get(s.smtp_password_env)
            if not password:
                raise RuntimeError(f"environment variable {s.smtp_password_env} "
                                   "(the SMTP password) is not set")
        await aiosmtplib.send(
            self.message(notification, s.smtp_sender),
            hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username or None,
            password=password, use_tls=s.smtp_tls, start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "to": self.to}
