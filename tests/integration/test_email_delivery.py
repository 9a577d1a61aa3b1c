"""Email delivery against real SMTP servers on 127.0.0.1: STARTTLS with a test CA's
certificate and a login; a password with a server that offers no STARTTLS (nothing is
said past EHLO); a wrong password (a clear error in the outbox, the rest of dagd
unaffected); a server that trickles its answers (the overall deadline); and
`dagd email test` against a good and a bad server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from dagd import cli
from dagd.config import Settings
from dagd.notify import email
from integration.harness import Harness, StartEngine, outbox_running, wait_until
from integration.smtp_server import free_port, make_ca, smtp_server

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def default_mail_settings() -> Iterator[None]:
    """Each test configures the daemon's [smtp] its own way: none leaks into the next."""
    yield
    email.configure(Settings())

PASSWORD = "s3cret-Pa55word-for-tests"

FAILING = """
    from dagd import DAG, task

    @task(email="oncall@example.com", retries=0)
    async def breaks():
        raise RuntimeError("the source is empty")

    @task
    async def fine():
        return 1

    with DAG("alerting"):
        breaks()

    with DAG("other"):
        fine()
"""


def tls_settings(settings: Settings, port: int, ca_file: Path | None, **more: Any) -> Settings:
    chosen = replace(settings, smtp_host="127.0.0.1", smtp_port=port,
                     smtp_sender="dagd@test.example", smtp_timeout=5.0, smtp_deadline=10.0,
                     smtp_starttls=True, smtp_username="dagd",
                     smtp_password_env="TEST_SMTP_PASSWORD",
                     smtp_ca_file=str(ca_file or ""), notify_retry_delay=0.2, **more)
    email.configure(chosen)
    return chosen


async def settled(h: Harness, dag_id: str) -> Any:
    async def done() -> bool:
        rows = await h.store.list_notifications(dag_id)
        return bool(rows) and all(r.state != "pending" for r in rows)

    await wait_until(done, deadline=20, what="the notification settled")
    [row] = await h.store.list_notifications(dag_id)
    return row


async def test_starttls_with_a_private_ca_and_a_login_delivers(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_dag("alerting.py", FAILING)
    ca = make_ca(tmp_path)
    port = free_port()
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    tls_settings(settings, port, ca.ca_file)
    with smtp_server(port, tls_context=ca.server_context, login=("dagd", PASSWORD)) as inbox:
        async with start_engine() as h, outbox_running(h):
            await h.run("alerting")
            row = await settled(h, "alerting")
    assert row.state == "sent", row.last_error
    [mail] = inbox.received
    assert mail.rcpt_tos == ["oncall@example.com"]
    assert str(mail.message["Subject"]).startswith("[dagd] FAILED alerting.breaks run ")
    # The password reached neither the database nor the outbox's error.
    assert PASSWORD.encode() not in settings.db_path.read_bytes()


async def test_the_certificate_is_verified(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_dag("alerting.py", FAILING)
    ca = make_ca(tmp_path)
    port = free_port()
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    tls_settings(settings, port, None)  # the system's CAs do not know the test CA
    with smtp_server(port, tls_context=ca.server_context, login=("dagd", PASSWORD)) as inbox:
        async with start_engine() as h, outbox_running(h):
            await h.run("alerting")
            row = await settled(h, "alerting")
    assert row.state == "failed" and row.attempts == 1
    assert "certificate is not trusted" in row.last_error and "ca_file" in row.last_error
    assert not inbox.received


class PlainServer:
    """A minimal SMTP server that offers no STARTTLS and records every line it hears;
    `trickle` sends its greeting one byte a second."""

    def __init__(self, *, trickle: bool = False) -> None:
        self.lines: list[str] = []
        self.trickle = trickle
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            greeting = b"220 plain.test ESMTP\r\n"
            if self.trickle:
                for byte in greeting:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1)
            writer.write(greeting)
            while line := await reader.readline():
                text = line.decode().strip()
                self.lines.append(text)
                verb = text.split(" ")[0].upper()
                if verb in ("EHLO", "HELO"):
                    writer.write(b"250-plain.test\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000000\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"502 not here\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> PlainServer:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def test_a_server_without_starttls_never_sees_the_password(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_dag("alerting.py", FAILING)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    async with PlainServer() as server:
        tls_settings(settings, server.port, None)
        async with start_engine() as h, outbox_running(h):
            await h.run("alerting")
            row = await settled(h, "alerting")
    assert row.state == "failed" and row.attempts == 1
    assert "STARTTLS: the server does not offer STARTTLS" in row.last_error
    assert "never sends a password" in row.last_error
    verbs = [line.split(" ")[0].upper() for line in server.lines]
    assert "AUTH" not in verbs and "MAIL" not in verbs and "DATA" not in verbs
    assert not any(PASSWORD in line for line in server.lines)


async def test_a_wrong_password_is_a_clear_error_and_the_rest_runs_on(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_dag("alerting.py", FAILING)
    ca = make_ca(tmp_path)
    port = free_port()
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "not-the-password")
    tls_settings(settings, port, ca.ca_file)
    with smtp_server(port, tls_context=ca.server_context, login=("dagd", PASSWORD)) as inbox:
        async with start_engine() as h, outbox_running(h):
            _, state = await h.run("alerting")
            assert state == "failed"
            row = await settled(h, "alerting")
            _, state = await h.run("other")  # the scheduler is not held up by the mail
            assert state == "success"
    assert row.state == "failed" and row.attempts == 1
    assert row.last_error.startswith("login: 535")
    assert "check [smtp] username and the password" in row.last_error
    assert not inbox.received


async def test_a_trickling_server_is_given_up_at_the_deadline(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings,
) -> None:
    write_dag("alerting.py", FAILING)
    async with PlainServer(trickle=True) as server:
        email.configure(replace(settings, smtp_host="127.0.0.1", smtp_port=server.port,
                                smtp_timeout=5.0, smtp_deadline=1.5,
                                notify_retry_delay=60.0))
        async with start_engine() as h, outbox_running(h):
            await h.run("alerting")

            async def refused() -> bool:
                rows = await h.store.list_notifications("alerting")
                return bool(rows) and rows[0].attempts == 1

            started = anyio.current_time()
            await wait_until(refused, deadline=10, what="the send given up")
            assert anyio.current_time() - started < 5  # each byte came within `timeout`
            [row] = await h.store.list_notifications("alerting")
    assert row.state == "pending"
    assert "connect: no answer within the deadline (1.5s" in (row.last_error or "")


# -- dagd email test ---------------------------------------------------------------------
@contextmanager
def config_file(tmp_path: Path, port: int, **smtp: Any) -> Iterator[Path]:
    lines = ["[core]", f'data_dir = "{tmp_path / "data"}"', f'dags_folder = "{tmp_path}"',
             "[smtp]", 'host = "127.0.0.1"', f"port = {port}", 'sender = "dagd@test.example"',
             "timeout = 5.0", "deadline = 10.0"]
    lines += [f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else
              f"{k} = {str(v).lower()}" for k, v in smtp.items()]
    path = tmp_path / "dagd.toml"
    path.write_text("\n".join(lines) + "\n")
    yield path


def email_test(config: Path, address: str, capsys: pytest.CaptureFixture[str]) -> tuple[int,
                                                                                      str]:
    code = cli.main(["--config", str(config), "email", "test", address])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_email_test_prints_each_step_against_a_good_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    ca = make_ca(tmp_path)
    port = free_port()
    secret = tmp_path / "smtp_password"  # a systemd credential, say
    secret.write_text(PASSWORD + "\n")
    with smtp_server(port, tls_context=ca.server_context, login=("dagd", PASSWORD)) as inbox, \
            config_file(tmp_path, port, starttls=True, username="dagd",
                        password_file=str(secret), ca_file=str(ca.ca_file)) as config:
        code, out = email_test(config, "me@example.com", capsys)
    assert code == 0, out
    for step in ("connect", "EHLO", "STARTTLS", "login", "MAIL FROM", "RCPT TO", "DATA"):
        assert step in out, (step, out)
    assert "220" in out and "235" in out and "250 OK queued" in out
    assert "sent a test message to me@example.com" in out
    assert PASSWORD not in out
    [mail] = inbox.received
    assert mail.rcpt_tos == ["me@example.com"]
    assert str(mail.message["Subject"]) == "[dagd] test message"


def test_email_test_names_the_step_and_hints_against_a_bad_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    with smtp_server(port) as inbox, config_file(tmp_path, port, starttls=True) as config:
        code, out = email_test(config, "me@example.com", capsys)
    assert code == 1
    assert "failed at STARTTLS: the server does not offer STARTTLS" in out
    assert "EHLO" in out and "hint:" in out
    assert not inbox.received
    # Nobody listening at all.
    with config_file(tmp_path, free_port()) as config:
        code, out = email_test(config, "me@example.com", capsys)
    assert code == 1 and "failed at connect" in out and "hint: is the server up" in out
    # A recipient the server refuses.
    inbox_refusing = smtp_server(port, None)
    with inbox_refusing as inbox, config_file(tmp_path, port) as config:
        inbox.refuse["me@example.com"] = "550 5.1.1 no such user"
        code, out = email_test(config, "me@example.com", capsys)
    assert code == 1 and "550 5.1.1 no such user" in out and "refuses this recipient" in out
