"""Reading a request's input for the REST API: path and query parameters, JSON bodies
and their fields. Every bad value is an error that names its field (422 for a value
out of its type or range), never a 500; a run id, try number or offset is a number
before anything uses it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from dagd.errors import BadRequest, InvalidInput, NotFound

MAX_PAGE = 1000  # rows per answer of a list route, at most
MAX_ID = 2**63 - 1  # SQLite's largest integer
MAX_MAP_INDEX = 2**31
MAX_TEXT = 250  # a DAG id, task id or filter value: longer is refused, not looked up
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _shown(raw: str) -> str:
    return raw if len(raw) <= 40 else f"{raw[:40]}... ({len(raw)} characters)"


def raw_param(request: web.Request, name: str) -> str | None:
    """A path parameter, else a query parameter, as sent; None when absent."""
    if name in request.match_info:
        return request.match_info[name]
    return request.query.get(name)


def int_param(request: web.Request, name: str, default: int | None = None, *, low: int = 0,
              high: int = MAX_ID) -> int:
    """A whole-number path or query parameter in [low, high]; a bad one is a 422 that
    names it, never a 500."""
    raw = raw_param(request, name) or ""
    if not raw and default is not None:
        return default
    return check_int(raw, name, low=low, high=high)


def check_int(raw: str, name: str, *, low: int = 0, high: int = MAX_ID) -> int:
    value: int | None = None
    if len(raw) <= 40 and raw.isascii():
        try:
            value = int(raw)
        except ValueError:
            value = None
    if value is None:
        raise InvalidInput(f"{name} must be a whole number, got {_shown(raw)!r}", field=name)
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {_shown(raw)}",
                           field=name)
    return value


def limit_param(request: web.Request, default: int = 50) -> int:
    return int_param(request, "limit", default, low=1, high=MAX_PAGE)


def map_index_param(request: web.Request) -> int:
    return int_param(request, "map_index", -1, low=-1, high=MAX_MAP_INDEX)


def text_param(request: web.Request, name: str) -> str | None:
    """A text query parameter (a filter); an empty one is absent."""
    raw = request.query.get(name)
    if not raw:
        return None
    if len(raw) > MAX_TEXT:
        raise InvalidInput(f"{name} must be at most {MAX_TEXT} characters, got "
                           f"{len(raw)}", field=name)
    return raw


def choice_param(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if not raw:
        return None
    if raw not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, got "
                           f"{_shown(raw)!r}", field=name)
    return raw


def bool_param(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return BOOLEANS[raw.lower()]
    except KeyError:
        raise InvalidInput(f"{name} must be true or false, got {_shown(raw)!r}",
                           field=name) from None


def time_param(request: web.Request, name: str) -> float | None:
    """A time as Unix seconds, or an ISO 8601 date or date-time (UTC when it names no
    zone); None when absent."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not -1e11 < seconds < 1e11:  # NaN, infinities, and beyond year 5000
            raise InvalidInput(f"{name} must be a time (Unix seconds or an ISO 8601 date), "
                               f"got {_shown(raw)!r}", field=name)
        return seconds
    try:
        # A "+01:00" sent unencoded in a query arrives as " 01:00".
        when = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        raise InvalidInput(f"{name} must be a time (Unix seconds or an ISO 8601 date), got "
                           f"{_shown(raw)!r}", field=name) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


async def json_body(request: web.Request) -> Any:
    """The request's JSON body; an empty body is {}."""
    try:
        raw = await request.read()
    except web.RequestPayloadError:  # e.g. Content-Encoding: gzip, and not gzip
        raise BadRequest("the body cannot be read as sent: it does not decode as its "
                         "Content-Encoding says", field="body") from None
    if not raw.strip():
        return {}
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise BadRequest(f"expected a JSON body (Content-Type: application/json), got "
                         f"{request.content_type[:80]}; with curl, add "
                         "-H 'Content-Type: application/json'", field="body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", field="body") from None


async def body_object(request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object body whose keys are among `fields`; an unknown key is refused
    (a misspelt "downstream" must not silently mean false)."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object", field="body")
    for key in body:
        if key not in fields:
            raise InvalidInput(f"unknown field {_shown(str(key))!r}; known: "
                               f"{', '.join(fields)}", field=str(key)[:MAX_TEXT])
    return body


def body_bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {value!r:.40}", field=name)
    return value


def body_int(body: dict[str, Any], name: str, default: int, *, low: int,
             high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a whole number between {low} and {high}, got "
                           f"{value!r:.40}", field=name)
    return value


def body_choice(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = body.get(name)
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, got "
                           f"{value!r:.40}", field=name)
    return str(value)



@contextmanager
def naming(field: str) -> Iterator[None]:
    """A NotFound raised within, that names nothing yet, names `field`: the path
    parameter that found nothing."""
    try:
        yield
    except NotFound as exc:
        if exc.field is None and exc.dag_id is None and exc.task_id is None:
            exc.field = field
        raise
