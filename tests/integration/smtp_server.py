"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the email tests: it keeps what it
receives, counts its connections, and can be told to refuse (a recipient with a 550,
DATA with a 451 a few times), to offer STARTTLS with a certificate of a test CA
(trustme), and to ask for a login."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    peer: Any

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def part(self, subtype: str) -> str:
        body = self.message.get_body((subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())  # type: ignore[attr-defined]


@dataclass
class Inbox:
    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> answer
    data_failures: int = 0  # DATA answered 451 this many times first
    peers: set[Any] = field(default_factory=set)  # one per connection that sent
    delay: float = 0.0  # seconds DATA takes to answer (a slow server)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_failures > 0:
            self.data_failures -= 1
            return "451 4.3.0 try again later"
        if self.delay:
            await asyncio.sleep(self.delay)
        self.peers.add(session.peer)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      bytes(envelope.original_content or envelope.content),
                                      session.peer))
        return "250 OK queued"

    def subjects(self) -> list[str]:
        return [str(r.message["Subject"]) for r in self.received]


@dataclass
class CertAuthority:
    """A certificate authority of the test's own, and a server certificate it signed."""

    server_context: ssl.SSLContext
    ca_file: Path


def make_ca(folder: Path) -> CertAuthority:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    path = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return CertAuthority(context, path)


def authenticator(user: str, password: str) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str,
              auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False)

    return check


@contextmanager
def smtp_server(port: int, inbox: Inbox | None = None, *,
                tls_context: ssl.SSLContext | None = None,
                login: tuple[str, str] | None = None) -> Iterator[Inbox]:
    inbox = inbox if inbox is not None else Inbox()
    options: dict[str, Any] = {}
    if tls_context is not None:
        options.update(tls_context=tls_context, require_starttls=login is not None)
    if login is not None:
        options.update(authenticator=authenticator(*login), auth_required=True,
                       auth_require_tls=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
