"""The secret values the API masks in what it serves (logs, XCom, DAG source): those of
the environment variables that connections, SMTP and the DAGs' webhooks name, and the
SMTP password's file, read at each request (a task may print one anyway)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dagd.executors.logs import MASK, MASK_MIN_CHARS, configured_secrets
from dagd.web.base import ENGINE, SETTINGS


def secrets(request: web.Request) -> list[str]:
    return configured_secrets(request.app[SETTINGS], request.app[ENGINE].dags.values())


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
