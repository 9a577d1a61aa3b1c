"""What the web modules share: the app's typed keys and the JSON response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from dagd.config import Settings
from dagd.events import Events
from dagd.scheduler.loop import Engine
from dagd.store import Store
from dagd.supervise import Supervisor

# The engine, for commands (pause, trigger, replay, backfill); the events port, for
# webhooks; a read-only store, for every read; the settings.
ENGINE = web.AppKey("engine", Engine)
EVENTS = web.AppKey("events", Events)
READER = web.AppKey("reader", Store)
SETTINGS = web.AppKey("settings", Settings)
SUPERVISOR = web.AppKey("supervisor", Supervisor)  # the daemon's side tasks and their health

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
