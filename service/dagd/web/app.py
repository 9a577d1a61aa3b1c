"""The aiohttp app factory: one app serves the REST API (`api`), the webhooks (`hooks`)
and, registered here too, every other part of the web side; one error middleware turns
every DagdError into a JSON error."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dagd.errors import DagdError
from dagd.scheduler.loop import Engine
from dagd.store import Store
from dagd.supervise import Supervisor
from dagd.web import api, auth, drain, hooks, metrics, stream, ui
from dagd.web.base import ENGINE, EVENTS, READER, SETTINGS, SUPERVISOR, Handler, json_response

log = logging.getLogger(__name__)


class ClientFaults(logging.Filter):
    """aiohttp logs a request it cannot parse (a header line too long, a body that does
    not decode as its Content-Encoding says) with a whole traceback, each time: anyone
    could fill the daemon's log so. Such a record becomes one line, at most one a
    second; the client got its 400 anyway."""

    def __init__(self) -> None:
        super().__init__()
        self.last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError | web.RequestPayloadError):
            return True
        now = time.monotonic()
        if now - self.last < 1.0:
            return False
        self.last = now
        reason = " ".join(str(getattr(exc, "message", exc) or exc).split())[:120]
        record.msg, record.args = f"a bad request from a client, refused: {reason}", None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


CLIENT_FAULTS = ClientFaults()


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DagdError as exc:
        response = json_response(exc.to_dict(), status=exc.status)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(int(retry_after))
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(
            {"error": exc.reason.lower().replace(" ", "_"), "message": exc.text or exc.reason},
            status=exc.status,
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response(
            {"error": "internal", "message": "internal error; see the daemon's log"}, status=500
        )


def create_app(engine: Engine, reader: Store, *,
               supervisor: Supervisor | None = None) -> web.Application:
    logging.getLogger("aiohttp.server").addFilter(CLIENT_FAULTS)  # once, however many apps
    # The drain's refusals (503 + Retry-After) come before authentication: a sender
    # told to retry later is told so whoever it is.
    app = web.Application(middlewares=[errors, drain.middleware],
                          client_max_size=1024 * 1024)
    app[ENGINE] = engine
    app[EVENTS] = engine.intake
    app[READER] = reader
    app[SETTINGS] = engine.settings
    if supervisor is not None:
        app[SUPERVISOR] = supervisor
    api.add_routes(app)
    hooks.add_routes(app)
    stream.add_routes(app)
    metrics.add_routes(app)
    ui.add_routes(app)
    auth.setup(app)  # its middleware after `errors`; /login, /logout
    return app
