"""EmailTask against a real SMTP server (aiosmtpd on 127.0.0.1): the message arrives with
its recipients, parts and attachments; a refused recipient fails the attempt with the
server's answer; a rendered value cannot add a header or a recipient; attachments that
are missing or too large fail the attempt before anything is sent."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from dagd.config import Settings
from dagd.notify import email as notify_email
from integration.harness import Harness, StartEngine

pytestmark = pytest.mark.anyio


class Inbox:
    """Keeps every message; refuses RCPT TO for addresses in `refuse`."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK: queued"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=email.policy.default)
                for e in self.envelopes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(settings: Settings) -> Iterator[Inbox]:
    port = free_port()
    notify_email.configure(replace(settings, smtp_host="127.0.0.1", smtp_port=port,
                                   smtp_sender="dagd@test.example", smtp_timeout=5.0,
                                   smtp_deadline=10.0))
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
        notify_email.configure(settings)


MAIL = """
    from dagd import DAG, EmailTask

    with DAG("mail"):
        EmailTask(task_id="report", to="team@example.com; lead@example.com",
                  cc=["cc@example.com"], bcc="audit@example.com",
                  subject="Sales for {{ conf.region }}, run {{ run_id }}",
                  body="Hello,\\nthe note: {{ conf.note }}\\n",
                  html_content="<p>Note: {{ conf.note }}</p>",
                  files=["{{ conf.report }}"])

    with DAG("mail_to"):
        EmailTask(task_id="send", to="{{ conf.to }}", subject="{{ conf.subject }}",
                  body="body")

    with DAG("mail_hdr"):
        EmailTask(task_id="send", to="team@example.com", subject="hi", body="body",
                  custom_headers={"X-Dagd-Tag": "{{ conf.tag }}", "Reply-To": "ops@example.com"},
                  mime_charset="utf-8")

    with DAG("mail_refused"):
        EmailTask(task_id="send", to="nobody@example.com", subject="hi", body="body")

    with DAG("mail_big"):
        EmailTask(task_id="send", to="team@example.com", subject="hi", body="body",
                  attachments=["{{ conf.path }}"], max_attachment_bytes=1000)
"""


async def error_of(h: Harness, run_id: int, task_id: str) -> str:
    [attempt] = await h.attempts(run_id, task_id)
    assert attempt.state == "failed"
    return attempt.error or ""


async def test_an_email_arrives_with_its_recipients_parts_and_attachment(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    tmp_path: Path,
) -> None:
    write_dag("mail.py", MAIL)
    report = tmp_path / "sales.csv"
    report.write_bytes(b"region,total\neu,42\n")
    conf = {"region": "eu", "note": "<script>alert(1)</script> & more",
            "report": str(report)}
    with smtp_server(settings) as inbox:
        async with start_engine() as h:
            run_id, state = await h.run("mail", conf)
            assert state == "success", await h.attempts(run_id, "report")
            xcom = await h.xcom(run_id, "report")
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "dagd@test.example"
    assert sorted(envelope.rcpt_tos) == ["audit@example.com", "cc@example.com",
                                         "lead@example.com", "team@example.com"]
    [msg] = inbox.messages()
    assert msg["Subject"] == f"Sales for eu, run {run_id}"
    assert msg["To"] == "team@example.com, lead@example.com"
    assert msg["Cc"] == "cc@example.com"
    assert msg["Bcc"] is None  # the envelope only
    assert msg["Message-ID"] == xcom["message_id"]
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert "the note: <script>alert(1)</script> & more" in text.get_content()
    assert ("<p>Note: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</p>"
            in html.get_content())
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "sales.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_content().replace("\r\n", "\n") == "region,total\neu,42\n"
    assert xcom["refused"] == {}


async def test_a_refused_recipient_fails_the_attempt_with_the_servers_answer(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("mail.py", MAIL)
    with smtp_server(settings) as inbox:
        inbox.refuse.add("nobody@example.com")
        async with start_engine() as h:
            run_id, state = await h.run("mail_refused")
            assert state == "failed"
            error = await error_of(h, run_id, "send")
    assert inbox.envelopes == []
    assert "EmailSendError" in error
    assert "550 5.1.1 <nobody@example.com>: no such mailbox here" in error


@pytest.mark.parametrize("conf, field", [
    ({"to": "team@example.com", "subject": "hi\r\nBcc: evil@example.com"}, "subject"),
    ({"to": "team@example.com\r\nBcc: evil@example.com", "subject": "hi"}, "to"),
    ({"to": "team@example.com, evil@example.com", "subject": "hi"}, "to"),
])
async def test_a_rendered_value_cannot_add_a_header_or_a_recipient(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    conf: dict[str, str], field: str,
) -> None:
    write_dag("mail.py", MAIL)
    with smtp_server(settings) as inbox:
        async with start_engine() as h:
            run_id, state = await h.run("mail_to", conf)
            assert state == "failed"
            error = await error_of(h, run_id, "send")
    assert inbox.envelopes == []  # nothing sent
    assert f"field '{field}'" in error or f"{field}:" in error, error


async def test_a_missing_or_oversized_attachment_fails_before_anything_is_sent(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    tmp_path: Path,
) -> None:
    write_dag("mail.py", MAIL)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 5000)
    with smtp_server(settings) as inbox:
        async with start_engine() as h:
            run_id, state = await h.run("mail_big", {"path": str(tmp_path / "gone.csv")})
            assert state == "failed"
            missing = await error_of(h, run_id, "send")
            run_id, state = await h.run("mail_big", {"path": str(big)})
            assert state == "failed"
            too_big = await error_of(h, run_id, "send")
    assert inbox.envelopes == []
    assert f"attachment {str(tmp_path / 'gone.csv')!r} cannot be read" in missing
    assert "No such file or directory" in missing
    assert "over max_attachment_bytes=1000" in too_big


async def test_custom_headers_arrive_and_a_rendered_one_cannot_add_another(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("mail.py", MAIL)
    with smtp_server(settings) as inbox:
        async with start_engine() as h:
            _, state = await h.run("mail_hdr", {"tag": "nightly"})
            assert state == "success"
            run_id, state = await h.run("mail_hdr", {"tag": "x\r\nBcc: evil@example.com"})
            assert state == "failed"
            error = await error_of(h, run_id, "send")
    [msg] = inbox.messages()
    assert (msg["X-Dagd-Tag"], msg["Reply-To"]) == ("nightly", "ops@example.com")
    assert "custom_headers.X-Dagd-Tag holds a line break" in error
