"""Email notifications through a real SMTP server (aiosmtpd) on 127.0.0.1: a failure and
its retry arrive as mail; an SMTP server that is down keeps the notification pending
until it is back."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiosmtpd.controller import Controller

from dagd.config import Settings
from dagd.notify import email
from dagd.notify.outbox import Outbox
from integration.harness import Harness, StartEngine, wait_until

pytestmark = pytest.mark.anyio

MAILED = """
    from dagd import DAG, task
    from dagd.notify.email import EmailNotifier

    @task(retries=1, retry_delay=0)
    async def load():
        raise ConnectionError("the warehouse refused the connection")

    with DAG("mailed", notifiers=[EmailNotifier(to=["oncall@example.com"],
                                                on=("run_failed", "task_retry"))]):
        load()
"""


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(port: int) -> Iterator[Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


def configure(settings: Settings, port: int) -> None:
    email.configure(replace(settings, smtp_host="127.0.0.1", smtp_port=port,
                            smtp_sender="dagd@test.example", smtp_timeout=5.0))


async def run_with_outbox(h: Harness, dag_id: str) -> None:
    outbox = Outbox(h.store, lambda: h.engine.dags)
    h.engine.notification_listeners.append(outbox.wake)
    async with anyio.create_task_group() as tg:
        await tg.start(outbox.run)
        _, state = await h.run(dag_id)
        assert state == "failed"

        async def both_sent() -> bool:
            rows = await h.store.list_notifications(dag_id)
            return len(rows) == 2 and all(r.state == "sent" for r in rows)

        await wait_until(both_sent, deadline=20, what="both notifications sent")
        tg.cancel_scope.cancel()


async def test_a_failure_and_its_retry_arrive_by_email(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("mailed.py", MAILED)
    port = free_port()
    configure(settings, port)
    with smtp_server(port) as inbox:
        async with start_engine() as h:
            await run_with_outbox(h, "mailed")
    assert len(inbox.messages) == 2
    bodies = [m.content.decode() for m in inbox.messages]
    assert all(m.rcpt_tos == ["oncall@example.com"] for m in inbox.messages)
    assert all(m.mail_from == "dagd@test.example" for m in inbox.messages)
    retry = next(b for b in bodies if "will be retried" in b)
    assert "Subject: [dagd] RETRY mailed.load run 1, try 1/2" in retry
    assert "the warehouse refused the connection" in retry
    assert "dagd logs mailed 1 load --try 1" in retry
    assert any("Subject: [dagd] FAILED mailed run 1: 1 of 1 tasks failed" in b for b in bodies)


async def test_an_smtp_server_that_is_down_is_retried_until_it_is_back(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("mailed.py", MAILED)
    port = free_port()
    configure(settings, port)
    async with start_engine() as h:
        outbox = Outbox(h.store, lambda: h.engine.dags)
        h.engine.notification_listeners.append(outbox.wake)
        async with anyio.create_task_group() as tg:
            await tg.start(outbox.run)
            _, state = await h.run("mailed")
            assert state == "failed"

            async def refused() -> bool:
                rows = await h.store.list_notifications("mailed")
                return len(rows) == 2 and all(r.attempts >= 1 for r in rows)

            await wait_until(refused, what="a first, refused try")
            rows = await h.store.list_notifications("mailed")
            assert all(r.state == "pending" and r.last_error for r in rows)
            with smtp_server(port) as inbox:  # the server comes back

                async def sent() -> bool:
                    rows = await h.store.list_notifications("mailed")
                    return all(r.state == "sent" for r in rows)

                await wait_until(sent, deadline=20, what="the retried sends")
            tg.cancel_scope.cancel()
    assert len(inbox.messages) == 2
