"""POST /hooks/{name}: a webhook delivery becomes an event, and a run of each DAG that
listens on that name.

In order: is the name known (404), is the body within the limit (413), does the request
authenticate (401/403), is it JSON (415), a JSON object (422), valid against the DAG's
declared params (422 naming the field). Then the intake records it, deduplicated by the
`Idempotency-Key` header or the provider's delivery id, and only after the commit the
answer is `202 {"run_id": ...}`. Every refusal is recorded in the event ledger too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

import anyio
import orjson
from aiohttp import web

from dagd.authoring.dag import DAG
from dagd.authoring.params import check_default_types
from dagd.authoring.settings import ID_PATTERN
from dagd.errors import (
    BadRequest,
    DagdError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from dagd.events import (
    NO_MATCHING_DAG,
    REJECTED,
    UNAUTHORIZED,
    Delivery,
    Events,
    IdempotencyConflict,
)
from dagd.triggers.webhooks import Webhook, WebhookAuthError, resolve_secret, verify
from dagd.web.base import EVENTS, SETTINGS, json_response

log = logging.getLogger(__name__)



def listeners(events: Events, name: str) -> list[tuple[DAG, Webhook]]:
    return [
        (dag, t) for dag in events.dags().values() for t in dag.triggers
        if isinstance(t, Webhook) and t.name == name
    ]


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes is over the "
                              f"{limit}-byte limit of this webhook", field="body")
    try:
        body = await request.content.read(limit + 1)
    except web.RequestPayloadError:  # e.g. Content-Encoding: gzip, and not gzip
        raise BadRequest("the body cannot be read as sent: it does not decode as its "
                         "Content-Encoding says", field="body") from None
    if len(body) > limit:
        raise PayloadTooLarge(f"body is over the {limit}-byte limit of this webhook",
                              field="body")
    return body


FORM = "application/x-www-form-urlencoded"


def _form_payload(body: bytes) -> bytes:
    """The JSON in a form body's one `payload` field: how GitHub sends a webhook whose
    content type is left at its default (`application/x-www-form-urlencoded`)."""
    try:
        fields = urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True,
                                       strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("form body is not valid application/x-www-form-urlencoded",
                           field="body") from None
    values = fields.get("payload", [])
    if len(values) != 1 or set(fields) != {"payload"}:
        raise InvalidInput("a form body must hold one field, payload=<JSON>, as GitHub "
                           "sends it", field="payload")
    return values[0].encode("utf-8")


def _parse(request: web.Request, body: bytes) -> dict[str, Any]:
    ctype = request.content_type
    if ctype == FORM:
        body = _form_payload(body)
    elif ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"expected Content-Type application/json (or {FORM} with a payload= field, "
            f"as GitHub sends it), got {ctype!r}", field="Content-Type")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", field="body") from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"body must be a JSON object, got {type(payload).__name__}",
                           field="body")
    return payload


# Deliveries to a webhook nothing listens on are ledgered (a sender's misconfiguration
# shows in `dagd events`), but anyone may send them: at most this many a minute, and
# only for a name a webhook could have.
UNKNOWN_PER_MINUTE = 60


class _UnknownHooks:
    """How many deliveries to unknown webhooks came in the minute since the first."""

    def __init__(self) -> None:
        self.start = -60.0
        self.count = 0

    def ledger(self, name: str) -> bool:
        if not ID_PATTERN.match(name):
            return False
        now = time.monotonic()
        if now - self.start >= 60:
            if self.count > UNKNOWN_PER_MINUTE:
                log.warning("%d deliveries to webhooks nothing listens on in a minute; "
                            "%d ledgered", self.count, UNKNOWN_PER_MINUTE)
            self.start, self.count = now, 0
        self.count += 1
        return self.count <= UNKNOWN_PER_MINUTE


UNKNOWN = web.AppKey("unknown_hooks", _UnknownHooks)


def add_routes(app: web.Application) -> None:
    app[UNKNOWN] = _UnknownHooks()
    app.router.add_post("/hooks/{name}", receive)


async def receive(request: web.Request) -> web.Response:
    events = request.app[EVENTS]
    name = request.match_info["name"]
    source = f"webhook:{name}"
    found = listeners(events, name)
    if not found:
        if request.app[UNKNOWN].ledger(name):
            await events.record_rejection(
                kind="webhook", source=source, dag_id=None, outcome=NO_MATCHING_DAG,
                detail="no DAG listens on this webhook")
        shown = name if len(name) <= 80 else f"{name[:80]}... ({len(name)} characters)"
        raise NotFound(f"no DAG listens on webhook {shown!r}")
    webhook = found[0][1]
    # A refusal is filed under the DAG when only one listens, for `dagd events --dag`.
    about = found[0][0].dag_id if len(found) == 1 else None
    try:
        body = await _read_body(request, webhook.max_body or request.app[SETTINGS].max_body)
        secret = await anyio.to_thread.run_sync(
            resolve_secret, webhook, os.environ, lambda p: Path(p).read_bytes())
        delivery_id = verify(webhook, request.headers, body, secret=secret, now=time.time())
        payload = _parse(request, body)
        for dag, _ in found:
            check_default_types(dag, payload)
    except WebhookAuthError as exc:
        log.warning("webhook %s: refused %s: %s", name, exc.status, exc.reason)
        await events.record_rejection(kind="webhook", source=source, dag_id=about,
                                             outcome=UNAUTHORIZED, detail=exc.reason)
        raise
    except DagdError as exc:
        await events.record_rejection(kind="webhook", source=source, dag_id=about,
                                             outcome=REJECTED, detail=str(exc))
        raise
    key = request.headers.get("Idempotency-Key") or delivery_id
    delivery = Delivery(kind="webhook", source=source, payload=payload, dedup_key=key,
                        digest=hashlib.sha256(body).hexdigest())
    try:
        outcomes = await events.deliver(delivery, [dag.dag_id for dag, _ in found],
                                               payload)
    except IdempotencyConflict as exc:  # the key's earlier delivery had another body
        await events.record_rejection(kind="webhook", source=source, dag_id=about,
                                             outcome=REJECTED, detail=str(exc))
        raise
    runs = [{"dag_id": o.dag_id, "run_id": o.run_id, "event_id": o.event_id,
             "outcome": o.outcome} for o in outcomes]
    first = next((o.run_id for o in outcomes if o.run_id is not None), None)
    return json_response(
        {"run_id": first, "runs": runs,
         "duplicate": all(o.duplicate_of is not None for o in outcomes)},
        status=202,
    )
