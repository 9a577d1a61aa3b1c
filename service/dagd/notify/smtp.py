"""SMTP delivery: one connection for many messages, each step's answer, and what a
refusal means (aiosmtplib).

`Mailer.deliver` opens one connection (implicit TLS, or STARTTLS when configured),
logs in when a password is set, and sends each `Outgoing` message over it, telling
`on_result` how each one went as soon as the server has answered its DATA (so the
outbox records it before the next is sent). The whole connection set-up, and then each
message, must finish within `[smtp] deadline` seconds: aiosmtplib's `timeout` bounds one
socket operation only, and a server that trickles its answers could otherwise hold a
send for ever.

A password is never sent without TLS: with one configured, the server's certificate is
verified (against `[smtp] ca_file` when set), and a server that does not offer STARTTLS
fails the send before anything else is said. A refusal is `permanent` (a 5xx, a
refused recipient, a login refused: sending again would be refused again) or temporary
(a 4xx, a connection lost or refused, a timeout), which the outbox retries.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import anyio

from dagd.config import Settings

# Messages sent over one connection before it is closed and another opened (many
# servers cap this at 100 and close the connection after it).
PER_CONNECTION = 100
# Connections one `deliver` may open after the first was lost mid-batch.
RECONNECTS = 3

Trace = Callable[[str, str], None]


class SendError(Exception):
    """A send that did not happen: `step` is where it stopped, `permanent` whether
    trying again could help, `answer` the server's own words (or the local error)."""

    def __init__(self, step: str, answer: str, *, permanent: bool, hint: str = "") -> None:
        self.step = step
        self.answer = answer
        self.permanent = permanent
        self.hint = hint
        super().__init__(f"{step}: {answer}" + (f" ({hint})" if hint else ""))


@dataclass
class Outgoing:
    """One message to send: its envelope and the outbox row it is for (`key`)."""

    message: EmailMessage
    recipients: Sequence[str]
    key: int = 0


@dataclass
class Result:
    item: Outgoing
    error: SendError | None = None
    # Recipients the server refused while it accepted others: the message went out.
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def _answer(response: aiosmtplib.SMTPResponse) -> str:
    return f"{response.code} {' '.join(response.message.split())}"


def read_password(settings: Settings) -> str | None:
    """The SMTP password, from its environment variable or file; None when none is set.
    A named one that cannot be read is a permanent SendError (which says where)."""
    if settings.smtp_password_env:
        value = os.environ.get(settings.smtp_password_env)
        if not value:
            raise SendError("login", f"environment variable {settings.smtp_password_env} "
                            "(the SMTP password, [smtp] password_env) is not set",
                            permanent=True)
        return value
    if settings.smtp_password_file:
        try:
            value = Path(settings.smtp_password_file).read_text("utf-8").strip()
        except OSError as exc:
            raise SendError("login", f"cannot read [smtp] password_file "
                            f"{settings.smtp_password_file}: {exc.strerror or exc}",
                            permanent=True) from None
        if not value:
            raise SendError("login", f"[smtp] password_file {settings.smtp_password_file} "
                            "is empty", permanent=True)
        return value
    return None


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificates verified, host name checked; a private CA from `ca_file`."""
    try:
        return ssl.create_default_context(cafile=settings.smtp_ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise SendError("TLS", f"cannot read [smtp] ca_file {settings.smtp_ca_file}: {exc}",
                        permanent=True) from None


def unknown_outcome(item: Outgoing, answer: str) -> SendError:
    """No answer to the end of a message's data: the server may have accepted it. Sent
    again on its own, it could arrive once per try; a person decides (a permanent
    failure that says so, and `dagd notifications retry`)."""
    message_id = item.message.get("Message-ID", "")
    return SendError("DATA", f"{answer}, after the message was sent: the server may have "
                     f"accepted it (Message-ID {message_id}), so it is not sent again on "
                     "its own", permanent=True,
                     hint="`dagd notifications retry ID` sends it again")


def classify(step: str, exc: BaseException) -> SendError:
    """What an exception from aiosmtplib (or the deadline) means for the outbox."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        if exc.code < 500:  # 454: the server's login service is down for now
            return SendError(step, f"{exc.code} {exc.message}", permanent=False)
        return SendError(step, f"{exc.code} {exc.message}", permanent=True,
                         hint="check [smtp] username and the password")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return SendError(step, f"the server closed the connection: {exc}", permanent=False)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendError(step, f"{exc.code} {' '.join(str(exc.message).split())}",
                         permanent=exc.code >= 500)
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, ssl.SSLCertVerificationError) or isinstance(
            cause, ssl.SSLCertVerificationError):
        detail = getattr(cause if cause is not None else exc, "verify_message", "") or exc
        return SendError(step, f"the server's certificate is not trusted: {detail}",
                         permanent=True, hint="for a private CA set [smtp] ca_file")
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return SendError(step, f"no answer in time ({exc or 'deadline passed'})",
                         permanent=False)
    return SendError(step, f"{type(exc).__name__}: {exc}", permanent=False)


async def _login(smtp: aiosmtplib.SMTP, username: str, password: str) -> Any:
    """One mechanism, the plainest the server offers (over TLS, as checked): trying
    the others after a refusal would only repeat it, and some servers then stall."""
    offered = {m.lower() for m in smtp.server_auth_methods}
    if "plain" in offered:
        return await smtp.auth_plain(username, password)
    if "login" in offered:
        return await smtp.auth_login(username, password)
    return await smtp.login(username, password)


class Mailer:
    """Sends messages through the `[smtp]` server of `settings`."""

    def __init__(self, settings: Settings, *, trace: Trace | None = None) -> None:
        self.settings = settings
        self.trace = trace or (lambda step, answer: None)
        self.step = ""  # where the send in progress is (the deadline reads it)
        self.connections = 0  # opened so far (the outbox's burst test counts them)

    async def connect(self) -> aiosmtplib.SMTP:
        """Connected, TLS up if configured, logged in if a password is set."""
        s = self.settings
        password = read_password(s)
        wants_tls = s.smtp_tls or s.smtp_starttls
        context = tls_context(s) if wants_tls else None
        smtp = aiosmtplib.SMTP(hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout,
                               use_tls=s.smtp_tls, start_tls=False, tls_context=context)
        step = "connect"
        try:
            answer = await smtp.connect()
            self.connections += 1
            self.trace("connect", f"{s.smtp_host}:{s.smtp_port}"
                       f"{' (TLS)' if s.smtp_tls else ''}: {_answer(answer)}")
            step = "EHLO"
            self.trace("EHLO", _answer(await smtp.ehlo()))
            if s.smtp_starttls:
                step = "STARTTLS"
                if not smtp.supports_extension("starttls"):
                    raise SendError("STARTTLS", "the server does not offer STARTTLS",
                                    permanent=True,
                                    hint="nothing was sent; dagd never sends a password or "
                                    "a message without the TLS it is configured for")
                self.trace("STARTTLS", _answer(await smtp.starttls()))
                step = "EHLO"
                self.trace("EHLO", _answer(await smtp.ehlo()))
            if password is not None:
                step = "login"
                if not wants_tls:  # the config refuses this; never send it in the clear
                    raise SendError("login", "a password is set but TLS is not",
                                    permanent=True, hint="set [smtp] starttls or tls")
                self.trace("login", _answer(await _login(smtp, s.smtp_username, password)))
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, Exception):
                raise classify(step, exc) from None
            raise
        return smtp

    async def _send_one(self, smtp: aiosmtplib.SMTP, item: Outgoing) -> Result:
        step = self.step = "MAIL FROM"
        try:
            self.trace("MAIL FROM", _answer(await smtp.mail(self.settings.smtp_sender)))
            refused: dict[str, str] = {}
            permanent = True
            for rcpt in item.recipients:
                step = "RCPT TO"
                try:
                    self.trace("RCPT TO", f"<{rcpt}>: {_answer(await smtp.rcpt(rcpt))}")
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused[rcpt] = f"{exc.code} {' '.join(str(exc.message).split())}"
                    permanent = permanent and exc.code >= 500
                    self.trace("RCPT TO", f"<{rcpt}>: {refused[rcpt]}")
            if len(refused) == len(item.recipients):
                await smtp.rset()
                answers = "; ".join(f"{r}: {a}" for r, a in refused.items())
                return Result(item, SendError("RCPT TO", f"every recipient refused: {answers}",
                                              permanent=permanent))
            step = self.step = "DATA"
            self.trace("DATA", _answer(await smtp.data(item.message.as_bytes())))
            return Result(item, refused=refused)
        except Exception as exc:
            error = classify(step, exc)
            if step == "DATA" and not isinstance(exc, aiosmtplib.SMTPResponseException):
                error = unknown_outcome(item, error.answer)
            if error.permanent and smtp.is_connected:
                # The message is refused, the connection is fine: clear the transaction.
                with anyio.move_on_after(self.settings.smtp_timeout):
                    try:
                        await smtp.rset()
                    except Exception:
                        smtp.close()
            return Result(item, error)

    async def deliver(self, items: Sequence[Outgoing],
                      on_result: Callable[[Result], Awaitable[None]]) -> None:
        """Send every item, over as few connections as the server allows; `on_result`
        hears of each (set-up failures included) exactly once."""
        deadline = self.settings.smtp_deadline
        pending = list(items)
        reconnects = 0
        while pending:
            try:
                with anyio.fail_after(deadline):
                    smtp = await self.connect()
            except (SendError, TimeoutError) as exc:
                error = classify("connect", exc) if isinstance(exc, SendError) else \
                    SendError("connect", f"no answer within the deadline ({deadline:g}s, "
                              "[smtp] deadline)", permanent=False)
                for item in pending:
                    await on_result(Result(item, error))
                return
            try:
                sent_here = 0
                while pending and sent_here < PER_CONNECTION and smtp.is_connected:
                    item = pending.pop(0)
                    try:
                        with anyio.fail_after(deadline):
                            result = await self._send_one(smtp, item)
                    except TimeoutError:
                        smtp.close()
                        late = SendError(
                            "send", f"not done within the deadline ({deadline:g}s, [smtp] "
                            "deadline)", permanent=False)
                        if self.step == "DATA":  # the message may be in already
                            late = unknown_outcome(item, late.answer)
                        result = Result(item, late)
                    sent_here += 1
                    await on_result(result)
                    lost = not smtp.is_connected
                    if lost and result.error is not None and not result.error.permanent:
                        reconnects += 1
                        if reconnects > RECONNECTS:
                            for rest in pending:
                                await on_result(Result(rest, result.error))
                            return
            finally:
                await self.close(smtp)

    async def close(self, smtp: aiosmtplib.SMTP) -> None:
        if smtp.is_connected:
            with anyio.move_on_after(self.settings.smtp_timeout):
                try:
                    self.trace("QUIT", _answer(await smtp.quit()))
                except Exception:
                    pass
            smtp.close()

    async def send(self, message: EmailMessage, recipients: Sequence[str]) -> Result:
        """One message, as `deliver` sends it; its result (the caller raises on error)."""
        results: list[Result] = []

        async def keep(result: Result) -> None:
            results.append(result)

        await self.deliver([Outgoing(message, recipients)], keep)
        return results[0]
