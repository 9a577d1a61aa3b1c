"""GET /api/v1/config: the running daemon's effective configuration, each key with its
value, where it came from and what applies a change (operators only); a key whose value
on disk (the file and the daemon's environment, read now) differs says so."""

from __future__ import annotations

import anyio
from aiohttp import web

from dagd.config import reload_settings
from dagd.config_view import rows
from dagd.errors import DagdError, Forbidden
from dagd.web.base import ENGINE, json_response


async def get_config(request: web.Request) -> web.Response:
    identity = request.get("dagd_user")
    if identity is not None and identity.role != "operator":
        raise Forbidden(f"{identity.name} is a {identity.role}: only an operator may read "
                        "the configuration")
    running = request.app[ENGINE].settings
    error = None
    try:
        on_disk = await anyio.to_thread.run_sync(reload_settings, running)
    except DagdError as exc:  # a bad edit: the running configuration stays
        on_disk, error = None, str(exc)
    return json_response({
        "config_file": str(running.config_file) if running.config_file else None,
        "keys": rows(running, on_disk),
        "on_disk_error": error,
    })
