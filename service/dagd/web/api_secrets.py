"""The secret values the API masks in what it serves (logs, XCom, DAG source): those of
the environment variables that connections, SMTP and the DAGs' webhooks name, and the
SMTP password's file, read at each request (a task may print one anyway)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dagd.executors.logs import MASK, MASK_MIN_CHARS, secret_values
from dagd.kinds.connections import connection_names, get_connection
from dagd.web.base import ENGINE, SETTINGS


def secrets(request: web.Request) -> list[str]:
    settings = request.app[SETTINGS]
    return secret_values(
        smtp_password_env=settings.smtp_password_env,
        smtp_password_file=settings.smtp_password_file,
        # The config's connections, and those a SIGHUP loaded since.
        connections=[*settings.connections.values(),
                     *map(get_connection, connection_names())],
        webhook_secret_envs=[getattr(trigger, "secret_env", None)
                             for dag in request.app[ENGINE].dags.values()
                             for trigger in dag.triggers])


def mask_value(value: Any, values: list[str]) -> Any:
    """A JSON value with each secret inside its strings (keys too) shown as `***`."""
    hidden = sorted({s for s in values if len(s) >= MASK_MIN_CHARS}, key=len, reverse=True)
    if not hidden:
        return value
    shown = MASK.decode()

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for secret in hidden:
                item = item.replace(secret, shown)
            return item
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        return item

    return walk(value)
