"""What a notification email says: its facts read from the rows, rendered by templates.

`gather` reads what the message needs (the run and what triggered it, the attempt's
times and error, the last lines of its log, every task of the run for a summary);
`render` runs the subject and both bodies through Jinja2's sandboxed environment (the
built-in templates of `templates/`, each replaceable by a file of the same name in
`[notifications] templates_folder`); `build` makes the EmailMessage. Values from
outside (DAG and task ids, errors, log lines, conf) are data: the HTML body escapes
them, and no header can take a CR or LF, so none can add a header or a recipient.

Threads: a notification's Message-ID is fixed by its row (sending it again after a
crash sends the same Message-ID, so a client shows it once); the messages about one
task instance answer the first one (In-Reply-To, References), one thread per incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
from jinja2 import ChoiceLoader, FileSystemLoader, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dagd.authoring.settings import check_address as valid_address
from dagd.config import Settings
from dagd.errors import DagdError, NotFound

if TYPE_CHECKING:
    from dagd.store import Store
    from dagd.store.rows import NotificationRow

__all__ = ["Templates", "build", "gather", "header_text", "message_id", "valid_address"]

BUILTIN = Path(__file__).parent / "templates"
LOG_LINES = 50
LOG_READ = 256 * 1024  # bytes read from the end of a log for its last lines
LINE_MAX = 2000  # characters of one log line shown

LABELS = {
    "task_failed": ("FAILED", "#cf222e"),
    "task_retry": ("RETRY", "#bf8700"),
    "task_success": ("SUCCESS", "#1a7f37"),
    "task_resolved": ("RESOLVED", "#1a7f37"),
    "run_failed": ("FAILED", "#cf222e"),
    "run_success": ("SUCCESS", "#1a7f37"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


def header_text(value: str, limit: int = 250) -> str:
    """One line for a header: every control character (CR, LF, TAB, ...) a space."""
    flat = " ".join(_CONTROL.sub(" ", value).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _when(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start: float | None, end: float | None) -> str | None:
    if start is None or end is None:
        return None
    seconds = max(end - start, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _trigger(run: Any, event: Any) -> str:
    """What started the run, in words: `timer cron:0 2 * * * at 2026-01-02T02:00`, ..."""
    kind = event.kind if event is not None else run.run_type
    source = event.source if event is not None else ""
    words = f"{kind} ({source})" if source else kind
    if run.logical_date:
        words += f" at {run.logical_date}"
    path = run.conf.get("path") if isinstance(run.conf, dict) else None
    if kind in ("file", "file_drop", "filedrop") and isinstance(path, str):
        words += f", file {path}"
    return header_text(words, 300)


async def log_tail(path: str | None, secrets: Iterable[str] = (),
                   lines: int = LOG_LINES) -> list[str]:
    """The last `lines` lines of an attempt's log, secrets masked."""
    from dagd.executors.logs import mask

    if not path:
        return []
    file = anyio.Path(path)
    try:
        size = (await file.stat()).st_size
        async with await anyio.open_file(path, "rb") as f:
            await f.seek(max(size - LOG_READ, 0))
            data = await f.read()
    except OSError:
        return []
    text = mask(data, secrets).decode("utf-8", "replace")
    tail = text.splitlines()[-lines:]
    return [line if len(line) <= LINE_MAX else line[:LINE_MAX] + " ..." for line in tail]


async def gather(store: Store, row: NotificationRow, settings: Settings, *,
                 secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The template context of one notification, from its payload and the rows."""
    p = row.payload
    dag_id = str(p.get("dag_id") or row.dag_id)
    ctx: dict[str, Any] = {
        "notification_id": row.id, "event": row.event, "dag_id": dag_id,
        "run_id": row.run_id, "task_id": p.get("task_id"), "map_index": p.get("map_index"),
        "try_number": p.get("try_number"), "max_tries": p.get("max_tries"),
        "error": p.get("error"), "error_type": p.get("error_type"),
        "error_message": _without_type(p.get("error"), p.get("error_type")),
        "prefix": p.get("prefix") or "[dagd]", "trigger": "-", "retries_left": 0,
        "started_at": None, "ended_at": None, "duration": None, "log_tail": [],
        "task_url": None, "log_url": None, "log_command": None, "run_url": None,
        "runs_command": None, "tasks": [], "failed": [], "counts": "", "headline": "",
    }
    label, color = LABELS.get(row.event, (row.event.upper(), "#59636e"))
    ctx.update(label=label, color=color)
    base = settings.base_url.rstrip("/")
    run = None
    if row.run_id is not None:
        try:
            run = await store.get_run(row.run_id)
        except NotFound:
            run = None
    if run is not None:
        event = None
        if run.event_id is not None:
            try:
                event = await store.get_event(run.event_id)
            except NotFound:
                event = None
        ctx["trigger"] = _trigger(run, event)
    if ctx["task_id"]:
        await _task_facts(store, row, ctx, secrets)
        tries = ctx["try_number"] or 0
        ctx["retries_left"] = max((ctx["max_tries"] or tries) - tries, 0)
        ctx["headline"] = _task_headline(row.event, ctx)
        ref = f"{dag_id} {row.run_id} {ctx['task_id']} --try {tries}"
        ctx["log_command"] = f"dagd logs {ref}"
        if base:
            task = quote(str(ctx["task_id"]), safe="")
            # The web UI's task instance page, and that page at this try's log.
            ctx["task_url"] = f"{base}/runs/{row.run_id}/tasks/{task}"
            ctx["log_url"] = f"{ctx['task_url']}?try={tries}"
    elif run is not None:
        await _run_facts(store, run, ctx)
        ctx["runs_command"] = f"dagd tasks list {dag_id} {row.run_id}"
        if base:
            ctx["run_url"] = f"{base}/runs/{row.run_id}"
    return ctx


def _without_type(error: str | None, error_type: str | None) -> str | None:
    """`ConnectionError: refused` -> `refused` when the type is shown beside it."""
    if error and error_type and error.startswith(f"{error_type}: "):
        return error[len(error_type) + 2:]
    return error


def _task_headline(event: str, ctx: dict[str, Any]) -> str:
    what = f"{ctx['dag_id']}.{ctx['task_id']}"
    if event == "task_failed":
        return f"{what} failed on try {ctx['try_number']} of {ctx['max_tries']}: no try left."
    if event == "task_retry":
        return (f"{what} failed on try {ctx['try_number']} of {ctx['max_tries']}; "
                "it will be retried.")
    if event == "task_resolved":
        return (f"{what} succeeded on try {ctx['try_number']}, after the failure reported "
                "earlier in this thread.")
    return f"{what} succeeded on try {ctx['try_number']}."


async def _task_facts(store: Store, row: NotificationRow, ctx: dict[str, Any],
                      secrets: Iterable[str]) -> None:
    if row.run_id is None:
        return
    try:
        ti = await store.get_ti(row.run_id, ctx["task_id"], ctx["map_index"] or -1)
    except NotFound:
        return
    ctx["max_tries"] = ctx["max_tries"] or ti.max_tries
    attempts = await store.list_attempts(ti.id)
    attempt = next((a for a in attempts if a.try_number == ctx["try_number"]), None)
    if attempt is None:
        return
    ctx.update(started_at=_when(attempt.started_at), ended_at=_when(attempt.ended_at),
               duration=_duration(attempt.started_at, attempt.ended_at))
    ctx["error"] = ctx["error"] or attempt.error
    ctx["error_message"] = _without_type(ctx["error"], ctx["error_type"])
    ctx["log_tail"] = await log_tail(attempt.log_path, secrets)


async def _run_facts(store: Store, run: Any, ctx: dict[str, Any]) -> None:
    tis = await store.list_tis(run.id)
    tasks, failed = [], []
    for ti in tis:
        name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        item = {"task_id": name, "state": ti.state, "tries": ti.try_number,
                "duration": _duration(ti.started_at, ti.ended_at), "error": None}
        if ti.state == "failed":
            attempts = await store.list_attempts(ti.id)
            item["error"] = attempts[-1].error if attempts else None
            failed.append(item)
        tasks.append(item)
    ok = sum(1 for t in tasks if t["state"] == "success")
    ctx.update(tasks=tasks, failed=failed, started_at=_when(run.started_at),
               ended_at=_when(run.ended_at), duration=_duration(run.started_at, run.ended_at))
    if ctx["event"] == "run_failed":
        ctx["counts"] = f"{len(failed)} of {len(tasks)} tasks failed"
        ctx["headline"] = f"Run {run.id} of {run.dag_id} failed: {ctx['counts']}."
    else:
        ctx["counts"] = f"{ok} of {len(tasks)} tasks succeeded"
        ctx["headline"] = f"Run {run.id} of {run.dag_id} succeeded: {ctx['counts']}."


class TemplateProblem(DagdError):
    status = 500


class Templates:
    """The subject and bodies, built in or from `[notifications] templates_folder`."""

    def __init__(self, folder: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(folder))] if folder else []
        self.folder = folder
        self.env = ImmutableSandboxedEnvironment(
            loader=ChoiceLoader([*loaders, FileSystemLoader(str(BUILTIN))]),
            autoescape=lambda name: bool(name and name.endswith(".html")),
            keep_trailing_newline=True,
        )

    def render(self, ctx: dict[str, Any]) -> tuple[str, str, str]:
        names = (("subject.txt", "body.txt", "body.html") if ctx.get("task_id") else
                 ("summary_subject.txt", "summary.txt", "summary.html"))
        try:
            subject = header_text(self.env.get_template(names[0]).render(ctx))
            full = {**ctx, "subject": subject}
            text = self.env.get_template(names[1]).render(full)
            html = self.env.get_template(names[2]).render(full)
        except TemplateError as exc:
            where = f" (templates_folder {self.folder})" if self.folder else ""
            raise TemplateProblem(f"email template{where}: {type(exc).__name__}: {exc}",
                                  field="notifications.templates_folder") from None
        return subject, text, html


def domain_of(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(">").strip()
    return domain if re.fullmatch(r"[A-Za-z0-9.-]{1,253}", domain) else "dagd.localhost"


def message_id(row_id: int, created_at: float, sender: str) -> str:
    """Fixed by the row: the same message whenever (and however often) it is sent."""
    return f"<dagd.{row_id}.{int(created_at * 1_000_000)}@{domain_of(sender)}>"


def build(*, subject: str, text: str, html: str, sender: str, to: Iterable[str],
          msg_id: str, thread: list[str], created_at: float) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = header_text(sender)
    msg["To"] = ", ".join(header_text(a) for a in to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.fromtimestamp(created_at, UTC))
    msg["Message-ID"] = msg_id
    if thread:
        msg["In-Reply-To"] = thread[-1]
        msg["References"] = " ".join(thread)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg
