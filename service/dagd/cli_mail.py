"""The `dagd notifications list|retry` and `dagd email test` commands: the outbox and
the mail server, from the command line (cli.py registers them).

`notifications list` reads the database (read-only, daemon running or not);
`notifications retry` goes through the daemon's API, so its outbox sends at once, or,
with no daemon, marks the row owed in the database (sent when `dagd run` starts).
`email test` talks to the configured `[smtp]` server itself and prints each step with
the server's answer: connect, EHLO, STARTTLS, login, MAIL FROM, RCPT TO, DATA.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from rich.console import Console
from rich.markup import escape

from dagd.config import Settings
from dagd.errors import InvalidInput
from dagd.lock import daemon_running
from dagd.tables import Column, fitted, state_cell, when

STATES = ("pending", "sent", "failed")

# Where a failed test stopped -> what to look at.
HINTS = {
    "connect": "is the server up, and are [smtp] host, port and tls right? (465 is "
               "usually tls = true, 587 starttls = true)",
    "EHLO": "the server did not greet dagd as SMTP: is [smtp] port an SMTP port?",
    "TLS": "the server's certificate: for a private CA set [smtp] ca_file",
    "STARTTLS": "the server (or something between) offers no STARTTLS: use its TLS "
                "port with tls = true, or fix the path to the server",
    "login": "check [smtp] username and the password (password_env or password_file)",
    "MAIL FROM": "the server refuses [smtp] sender: use an address it lets dagd send as",
    "RCPT TO": "the server refuses this recipient (unknown, or relaying not allowed)",
    "DATA": "the server refused the message itself, or did not answer in time "
            "(raise [smtp] timeout and deadline for a slow server)",
}


def add_parsers(sub: Any, whole: Any) -> None:
    notes = sub.add_parser("notifications", help="the outbox: emails and other "
                           "notifications owed, sent or failed")
    nsub = notes.add_subparsers(dest="notifications_command", required=True)
    nlist = nsub.add_parser("list", help="notifications, newest first, with the last error")
    nlist.add_argument("--state", choices=STATES)
    nlist.add_argument("--dag")
    nlist.add_argument("--limit", type=whole(1, 1000), default=50)
    nretry = nsub.add_parser("retry", help="send a failed notification again")
    nretry.add_argument("id", type=whole(1))
    mail = sub.add_parser("email", help="check the [smtp] set-up")
    msub = mail.add_subparsers(dest="email_command", required=True)
    mtest = msub.add_parser("test", help="send a test message, printing each SMTP step")
    mtest.add_argument("address")


async def cmd_list(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from dagd.store import Store

    store = await Store.open(settings.db_path, readonly=True)
    try:
        rows = await store.list_notifications(args.dag, limit=args.limit, state=args.state)
    finally:
        await store.close()

    def about(payload: dict[str, Any]) -> str:
        task = payload.get("task_id")
        return f"{task} try {payload.get('try_number')}" if task else "the run"

    def to(row: Any) -> str:
        return ", ".join(row.payload.get("to") or []) or row.notifier

    columns = [
        Column("id", [str(r.id) for r in rows]),
        Column("state", [state_cell(r.state) for r in rows]),
        Column("event", [r.event for r in rows]),
        Column("dag", [r.dag_id for r in rows]),
        Column("run", [str(r.run_id or "") for r in rows]),
        Column("about", [escape(about(r.payload)) for r in rows], drop=3),
        Column("to", [escape(to(r)) for r in rows], wrap=True, drop=4),
        Column("tries", [str(r.attempts) for r in rows], drop=5),
        Column("when", [when(r.sent_at or r.created_at) for r in rows],
               short=[when(r.sent_at or r.created_at, short=True) for r in rows], drop=2),
        Column("last error", [escape(r.last_error or "") for r in rows], wrap=True,
               drop=1),
    ]
    title = "notifications" + (f" ({args.state})" if args.state else "")
    console.print(fitted(title, columns, console.width))
    return 0


async def cmd_retry(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from dagd.client import OFFLINE_PATIENCE, api
    from dagd.lock import DataDirLock
    from dagd.store import Store

    holder = daemon_running(settings.lock_path)
    if holder is not None:
        await api(holder, "POST", f"/api/v1/notifications/{args.id}/retry")
        console.print(f"notification {args.id}: owed again; the daemon is sending it")
        return 0
    with DataDirLock(settings.lock_path, patience=OFFLINE_PATIENCE):
        store = await Store.open(settings.db_path, synchronous=settings.synchronous)
        try:
            await store.retry_notification(args.id)
        finally:
            await store.close()
    console.print(f"notification {args.id}: owed again; no daemon is running, it is sent "
                  "when `dagd run` starts")
    return 0


def test_message(settings: Settings, address: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_sender
    msg["To"] = address
    msg["Subject"] = "[dagd] test message"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid("dagd.test", domain=settings.smtp_sender.rpartition("@")[2]
                                   or None)
    msg.set_content(
        "This is a test message from dagd (`dagd email test`).\n\n"
        f"Server: {settings.smtp_host}:{settings.smtp_port}"
        f"{' (TLS)' if settings.smtp_tls else ' (STARTTLS)' if settings.smtp_starttls else ''}"
        f"\nSender: {settings.smtp_sender}\n\nIf you can read this, dagd's email alerts "
        "will reach you.\n")
    return msg


async def cmd_email_test(settings: Settings, args: argparse.Namespace,
                         console: Console) -> int:
    from dagd.authoring.settings import check_address
    from dagd.notify.smtp import Mailer

    if not check_address(args.address):
        raise InvalidInput(f"{args.address!r} is not an email address (like "
                           "name@example.com)", field="ADDRESS")

    def trace(step: str, answer: str) -> None:
        console.print(f"[bold]{step:<10}[/] {escape(answer)}", highlight=False,
                      soft_wrap=True)

    mailer = Mailer(settings, trace=trace)
    started = time.monotonic()
    result = await mailer.send(test_message(settings, args.address), [args.address])
    if result.error is not None:
        error = result.error
        step = "TLS" if "certificate" in error.answer else error.step
        console.print(f"[red]failed[/] at {escape(error.step)}: {escape(error.answer)}",
                      highlight=False, soft_wrap=True)
        hint = error.hint or HINTS.get(step, "")
        if hint:
            console.print(f"hint: {escape(hint)}", highlight=False, soft_wrap=True)
        return 1
    console.print(f"[green]sent[/] a test message to {escape(args.address)} in "
                  f"{time.monotonic() - started:.2f}s", highlight=False)
    return 0
