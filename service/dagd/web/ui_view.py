"""What the UI's pages show, worked out from rows and loaded DAGs: times and durations
as text, a DAG's triggers with their next fire time, the fields of its params, and the
masked text of a log or DAG file read from disk."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from aiohttp import web
from markupsafe import Markup, escape

from dagd.authoring.dag import DAG, describe_trigger
from dagd.executors.logs import mask, open_log, secret_values
from dagd.kinds.connections import connection_names, get_connection
from dagd.triggers.timers import timers_of
from dagd.web.base import ENGINE, SETTINGS

MAX_SHOWN = 2 * 1024 * 1024  # bytes of a log or a DAG file put in a page, at most (the tail)


def when(ts: float | None) -> str:
    """A Unix time as UTC text, or "-"."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def span(start: float | None, end: float | None, now: float | None = None) -> str:
    """How long from start to end (to now while it runs), as "1m 05s"."""
    if start is None:
        return "-"
    seconds = max(0.0, (end if end is not None else (now or time.time())) - start)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours < 48 else f"{hours // 24}d {hours % 24}h"


def ti_times(ti: Any, latest: Any | None) -> tuple[float | None, float | None]:
    """When a task instance's latest attempt started and ended (a cleared instance keeps
    its first start in its row: the page shows the try that counts now)."""
    if latest is None:
        return ti.started_at, ti.ended_at
    return latest.started_at, latest.ended_at


def ticking(start: float | None, end: float | None, now: float | None = None) -> Markup:
    """A duration as text; one still running carries its start, for the page's one
    timer (static/live.js) to keep it ticking."""
    text = span(start, end, now)
    if start is None or end is not None:
        return Markup(escape(text))
    return Markup(f'<span data-tick="{float(start):.3f}">{escape(text)}</span>')


def short_date(value: str | None) -> str:
    """An ISO date-time as "2026-12-02 04:21 UTC" (the full text goes in a title)."""
    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
        return parsed.strftime("%Y-%m-%d %H:%M UTC")
    return parsed.strftime("%Y-%m-%d %H:%M")


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
                        default=repr).decode()


def compact_json(value: Any) -> str:
    return orjson.dumps(value, default=repr).decode()


def ti_key(run_id: int, task_id: str, map_index: int = -1) -> str:
    """The value of a `data-ti` attribute, which the live script matches stream events by."""
    return f"{run_id}:{task_id}" if map_index < 0 else f"{run_id}:{task_id}:{map_index}"


def _trigger_text(t: dict[str, Any]) -> str:
    kind = str(t.get("kind", "?"))
    if kind == "cron":
        return f"{t.get('expression')} ({t.get('timezone') or 'UTC'})"
    if kind == "interval":
        return f"every {t.get('period')}"
    if kind == "file":
        return f"{t.get('pattern') or '*'} in {t.get('folder')}"
    if kind == "webhook":
        return f"POST /hooks/{t.get('name')}"
    return str(t.get("source") or t.get("repr") or kind)


def _next_fire(trigger: Any, *, paused: bool) -> str:
    if paused:
        return "paused"
    try:
        return str(trigger.next_fire(datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"))
    except (ValueError, OverflowError, StopIteration):  # a cron that never fires again
        return "never"


def describe_triggers(dag: DAG | None, spec: dict[str, Any], *,
                      paused: bool) -> list[dict[str, str]]:
    """Each trigger as {"kind", "text", "next"}: a timer with its next fire time, a file
    drop with its folder and pattern, a webhook with its path. From the loaded DAG when
    there is one, else from the stored description."""
    if dag is None:
        return [{"kind": str(t.get("kind", "?")), "text": _trigger_text(t), "next": ""}
                for t in spec.get("triggers", [])]
    timers = {id(t) for t in timers_of(dag.triggers)}
    out = []
    for trigger in dag.triggers:
        described = describe_trigger(trigger)
        out.append({"kind": str(described.get("kind", "?")),
                    "text": _trigger_text(described),
                    "next": _next_fire(trigger, paused=paused) if id(trigger) in timers
                    else ""})
    return out


def param_fields(params: dict[str, Any]) -> list[dict[str, str]]:
    """A form field per param: its name, JSON type (checked in the browser before the
    conf is sent) and default value as the field's text."""
    fields = []
    for name, default in params.items():
        if isinstance(default, bool):
            kind, text = "boolean", "true" if default else "false"
        elif isinstance(default, int):
            kind, text = "integer", str(default)
        elif isinstance(default, float):
            kind, text = "number", repr(default)
        elif isinstance(default, str):
            kind, text = "string", default
        elif default is None:
            kind, text = "any", "null"
        else:
            kind, text = ("array" if isinstance(default, list) else "json",
                          orjson.dumps(default, default=repr).decode())
        fields.append({"name": str(name), "type": kind, "value": text})
    return fields


def _secrets(request: web.Request) -> list[str]:
    settings = request.app[SETTINGS]
    return secret_values(
        smtp_password_env=settings.smtp_password_env,
        smtp_password_file=settings.smtp_password_file,
        connections=[*settings.connections.values(),
                     *map(get_connection, connection_names())],
        webhook_secret_envs=[getattr(trigger, "secret_env", None)
                             for dag in request.app[ENGINE].dags.values()
                             for trigger in dag.triggers])


def _tail(path: str, *, log: bool) -> tuple[bytes, int]:
    try:
        with open_log(path) if log else open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_SHOWN:
                f.seek(size - MAX_SHOWN)
            return f.read(), size
    except OSError:  # gone, a folder, unreadable, or (a log) a link in its place
        return b"", 0


async def read_tail(path: str, *, log: bool = True) -> tuple[bytes, int]:
    """The last MAX_SHOWN bytes of a file (empty when it is gone) and its size; an
    attempt's log (`log`) is never read through a symbolic link (see `open_log`)."""
    return await anyio.to_thread.run_sync(lambda: _tail(path, log=log))


async def masked_log(request: web.Request, path: str, *,
                     log: bool = True) -> tuple[str, int, bool]:
    """An attempt's log (or, not `log`, a DAG file) as the page shows it (secrets as
    `***`), the byte offset its end is at (where the live tail goes on) and whether its
    start was cut."""
    body, size = await read_tail(path, log=log)
    text = mask(body, _secrets(request)).decode(errors="replace")
    return text, size, size > len(body)


def group_tis(tis: Iterable[Any]) -> dict[tuple[int, str], list[Any]]:
    """(run id, task id) -> its task instances (several for a mapped task, whose row of
    map index -1 stands for it until it expands)."""
    out: dict[tuple[int, str], list[Any]] = {}
    for ti in tis:
        out.setdefault((ti.run_id, ti.task_id), []).append(ti)
    for key, found in out.items():  # a mapped task: its instances, not its placeholder
        if len(found) > 1:
            out[key] = [ti for ti in found if ti.map_index >= 0]
    return out
