"""The aiohttp app factory: one app serves the REST API (`api`), the webhooks (`hooks`)
and, registered here too, every other part of the web side; one error middleware turns
every DagdError into a JSON error."""

from __future__ import annotations

import logging

from aiohttp import web

from dagd.errors import DagdError
from dagd.scheduler.loop import Engine
from dagd.store import Store
from dagd.supervise import Supervisor
from dagd.web import api, auth, hooks, metrics, stream, ui
from dagd.web.base import ENGINE, EVENTS, READER, SETTINGS, SUPERVISOR, Handler, json_response

log = logging.getLogger(__name__)


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
    app = web.Application(middlewares=[errors], client_max_size=1024 * 1024)
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
