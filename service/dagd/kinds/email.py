"""EmailTask: send one email as a step of a DAG (Airflow's `EmailOperator`), through the
`[smtp]` server the notifications use (dagd.notify.smtp).

    EmailTask(task_id="report", to="team@example.com", subject="Sales for {{ ds }}",
              body="Attached.", html="<p>{{ conf.note }}</p>", attachments=["/srv/{{ ds }}.csv"])

`subject`, `body`, `html`, each address, each attachment path and each value of
`custom_headers` (Airflow's, say `{"Reply-To": ...}`; not the headers the task sets
itself) are templates rendered when the attempt starts. The subject and the plain-text
body are rendered as text; the HTML part with every value HTML-escaped
(`dagd.templating.render_html`), so a conf value shows as text and cannot add markup. A
rendered subject, address or custom header value that holds a line break is refused (no
value can add a header), and each recipient is one address: the `to`/`cc`/`bcc`
template is split at commas before it is rendered, so a value can never add a second
one. Literal addresses are checked when the DAG loads, rendered ones when the attempt
starts.

Attachments must exist (regular files) when the task runs, `max_attachment_bytes`
together at most. A refusal by the server (every recipient refused, a 5xx, a login
refused, the server down) fails the attempt with the server's answer; retries follow
the task's retry settings. The XCom is `{"message_id", "recipients", "refused"}`
(recipients the server refused while it accepted others: the message went out to them).
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import anyio

from dagd.authoring.context import Context
from dagd.authoring.settings import check_address
from dagd.authoring.tasks import BaseTask
from dagd.errors import DagDefinitionError
from dagd.executors.logs import current_log
from dagd.notify.email import current_settings
from dagd.notify.smtp import Mailer
from dagd.templating import TemplateRenderError, render, render_html

DEFAULT_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# Headers the task sets itself: custom_headers cannot replace or add them.
OWN_HEADERS = frozenset({"from", "to", "cc", "bcc", "subject", "date", "message-id",
                         "mime-version", "content-type", "content-transfer-encoding",
                         "sender", "return-path"})
HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII, no colon or space

__all__ = ["EmailAttachmentError", "EmailSendError", "EmailTask"]


class EmailSendError(Exception):
    """The server did not take the message: where it stopped and what it answered."""


class EmailAttachmentError(Exception):
    """An attachment is missing, not a regular file, or over the size cap."""


def _templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def _split(value: Any) -> list[str] | None:
    """An address list as written: a string (commas or semicolons between addresses, as
    Airflow accepts) or a list of strings; None if it is neither."""
    if isinstance(value, str):
        items: Iterable[Any] = value.replace(";", ",").split(",")
    elif isinstance(value, list | tuple):
        items = [part for item in value
                 for part in (item.replace(";", ",").split(",") if isinstance(item, str)
                              else [item])]
    else:
        return None
    parts = [item.strip() if isinstance(item, str) else item for item in items]
    if not all(isinstance(p, str) for p in parts):
        return None
    return [p for p in parts if p]


class EmailTask(BaseTask):
    """Send one email (a text part, an HTML part, or both; attachments) through `[smtp]`."""

    kind = "email"

    def __init__(
        self,
        *,
        task_id: str,
        to: str | Iterable[str],
        subject: str,
        body: str | None = None,
        html: str | None = None,
        attachments: Iterable[str] | None = None,
        cc: str | Iterable[str] | None = None,
        bcc: str | Iterable[str] | None = None,
        html_content: str | None = None,
        files: Iterable[str] | None = None,
        max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
        custom_headers: Mapping[str, str] | None = None,
        mime_subtype: str = "mixed",
        mime_charset: str = "utf-8",
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id=task_id, **kwargs)
        self._where: dict[str, Any] = {"dag_id": self.dag.dag_id, "task_id": self.task_id,
                                       "file": self.fileloc, "line": self.lineno}
        # Airflow's EmailOperator names: html_content for html, files for attachments.
        self._require(html is None or html_content is None, "html_content",
                      "give html or html_content (Airflow's name for it), not both")
        self._require(attachments is None or files is None, "files",
                      "give attachments or files (Airflow's name for them), not both")
        html = html if html is not None else html_content
        attachments = attachments if attachments is not None else files
        self.to = self._addresses(to, "to", required=True)
        self.cc = self._addresses(cc, "cc")
        self.bcc = self._addresses(bcc, "bcc")
        self._require(isinstance(subject, str) and bool(subject.strip()), "subject",
                      f"subject must be a non-empty string, got {subject!r}")
        self._require(not any(c in subject for c in "\r\n"), "subject",
                      "subject must be one line (a line break would end the header)")
        self._require(body is None or isinstance(body, str), "body",
                      f"body must be a string, got {body!r}")
        self._require(html is None or isinstance(html, str), "html",
                      f"html must be a string, got {html!r}")
        self._require(body is not None or html is not None, "body",
                      "give body (plain text), html, or both")
        paths = [attachments] if isinstance(attachments, str) else list(attachments or [])
        self._require(all(isinstance(p, str | os.PathLike) and str(p) for p in paths),
                      "attachments", f"attachments must be a list of file paths, got "
                      f"{attachments!r}")
        self._require(
            not isinstance(max_attachment_bytes, bool) and isinstance(max_attachment_bytes, int)
            and max_attachment_bytes > 0, "max_attachment_bytes",
            f"max_attachment_bytes must be a positive whole number, got "
            f"{max_attachment_bytes!r}")
        # Airflow's EmailOperator arguments with the one value dagd sends.
        self._require(mime_subtype == "mixed", "mime_subtype",
                      f"mime_subtype: dagd sends multipart/mixed, got {mime_subtype!r}")
        self._require(isinstance(mime_charset, str) and mime_charset.lower().replace("-", "")
                      == "utf8", "mime_charset",
                      f"mime_charset: dagd sends UTF-8, got {mime_charset!r}")
        self.custom_headers = self._headers(custom_headers)
        self.subject = subject
        self.body = body
        self.html = html
        self.attachments = [str(p) for p in paths]
        self.max_attachment_bytes = max_attachment_bytes

    def _require(self, ok: bool, field: str, message: str) -> None:
        if not ok:
            raise DagDefinitionError(message, field=field, **self._where)

    def _headers(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        self._require(isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
            "custom_headers", f"custom_headers must map header names to strings, got {value!r}")
        for name, text in value.items():
            self._require(HEADER_NAME.match(name) is not None, "custom_headers",
                          f"custom_headers: {name!r} is not a header name")
            self._require(name.lower() not in OWN_HEADERS, "custom_headers",
                          f"custom_headers: {name} is set by the task itself (to, cc, bcc, "
                          "subject...)")
            self._require(not any(c in text for c in "\r\n\0"), "custom_headers",
                          f"custom_headers: the value of {name} must be one line")
        return dict(value)

    def _addresses(self, value: Any, field: str, *, required: bool = False) -> list[str]:
        if value is None and not required:
            return []
        parts = _split(value)
        self._require(parts is not None, field,
                      f"{field} must be an email address, a comma-separated string of them "
                      f"or a list, got {value!r}")
        assert parts is not None
        self._require(bool(parts) or not required, field, f"{field} names no address")
        for part in parts:
            if not _templated(part):
                self._require(check_address(part), field,
                              f"{field}: {part!r} is not an email address (one address "
                              "each, like name@example.com)")
        return parts

    # -- running ----------------------------------------------------------------------
    def _rendered_addresses(self, parts: list[str], field: str, context: Context) -> list[str]:
        out: list[str] = []
        for i, part in enumerate(parts):
            value = render(part, context, field=f"{field}[{i}]").strip()
            if not check_address(value):
                raise TemplateRenderError(
                    f"{field}: the rendered value {value[:200]!r} is not one email address "
                    "(one address each, like name@example.com; no line break, no second "
                    "address)", dag_id=self.dag.dag_id, task_id=self.task_id, field=field)
            out.append(value)
        return out

    def _one_line(self, value: str, field: str) -> str:
        if any(c in value for c in "\r\n\0"):
            raise TemplateRenderError(
                f"the rendered {field} holds a line break (CR or LF) or NUL: a header is one "
                "line, so nothing was sent", dag_id=self.dag.dag_id, task_id=self.task_id,
                field=field)
        return value

    def message(self, context: Context, sender: str) -> tuple[EmailMessage, list[str]]:
        """This attempt's message (without attachments) and its envelope recipients."""
        to = self._rendered_addresses(self.to, "to", context)
        cc = self._rendered_addresses(self.cc, "cc", context)
        bcc = self._rendered_addresses(self.bcc, "bcc", context)
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = ", ".join(to)
        if cc:
            msg["Cc"] = ", ".join(cc)
        msg["Subject"] = self._one_line(render(self.subject, context, field="subject"),
                                        "subject")
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        for name, template in self.custom_headers.items():
            field = f"custom_headers.{name}"
            msg[name] = self._one_line(render(template, context, field=field), field)
        body = render(self.body, context, field="body") if self.body is not None else None
        html = render_html(self.html, context, field="html") if self.html is not None else None
        if body is not None:
            msg.set_content(body)
            if html is not None:
                msg.add_alternative(html, subtype="html")
        else:
            msg.set_content(html or "", subtype="html")
        # Bcc goes in the envelope only, never in a header.
        return msg, list(dict.fromkeys([*to, *cc, *bcc]))

    async def _attach(self, msg: EmailMessage, context: Context) -> None:
        total = 0
        for i, template in enumerate(self.attachments):
            path = Path(render(template, context, field=f"attachments[{i}]"))
            try:
                info = await anyio.Path(path).stat()
            except OSError as exc:
                raise EmailAttachmentError(
                    f"attachment {str(path)!r} cannot be read: {exc.strerror or exc}; "
                    "nothing was sent") from None
            if not stat.S_ISREG(info.st_mode):
                raise EmailAttachmentError(f"attachment {str(path)!r} is not a regular file; "
                                           "nothing was sent")
            total += info.st_size
            if total > self.max_attachment_bytes:
                raise EmailAttachmentError(
                    f"attachments are over max_attachment_bytes={self.max_attachment_bytes} "
                    f"(at {str(path)!r}, {total} bytes so far); nothing was sent")
            data = await anyio.Path(path).read_bytes()
            kind, encoding = mimetypes.guess_type(path.name)
            if kind is None or encoding is not None:
                kind = "application/octet-stream"
            maintype, subtype = kind.split("/", 1)
            msg.add_attachment(data, maintype=maintype, subtype=subtype,
                               filename=self._one_line(path.name, "attachment name"))

    async def execute(self, context: Context) -> dict[str, Any]:
        settings = current_settings()
        msg, recipients = self.message(context, settings.smtp_sender)
        await self._attach(msg, context)
        result = await Mailer(settings).send(msg, recipients)
        attempt_log = current_log()
        if result.error is not None:
            raise EmailSendError(f"the message was not sent: {result.error}")
        if attempt_log is not None:
            attempt_log.write(f"[dagd] email {msg['Message-ID']} sent to "
                              f"{len(recipients) - len(result.refused)} recipient(s)\n")
            for rcpt, answer in result.refused.items():
                attempt_log.write(f"[dagd] the server refused recipient {rcpt}: {answer}\n")
        return {"message_id": str(msg["Message-ID"]), "recipients": recipients,
                "refused": dict(result.refused)}

    # -- description ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data.update({"to": self.to, "cc": self.cc, "bcc": self.bcc, "subject": self.subject,
                     "attachments": self.attachments, "html": self.html is not None,
                     "custom_headers": sorted(self.custom_headers),
                     "max_attachment_bytes": self.max_attachment_bytes})
        return data
