"""The effective configuration as rows: each key, its value, where it came from, and
whether SIGHUP or only a restart applies a change; secrets shown as `***`.

What `dagd config show` prints and `GET /api/v1/config` answers. Pure: the settings in,
JSON-ready rows out. The configuration holds no secret by design (passwords and tokens
are named by environment variable or file, never written), but a connection's static
`headers` may carry one, so their values are masked, as is any user:password@ in a URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from dagd.config import _KEYS, Settings

MASK = "***"
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# Fields only a restart changes (what the HTTP server, the store and the worker pool
# were built with); SIGHUP applies every other key (dagd.reload).
RESTART_ONLY = frozenset({
    "dags_folder", "plugins_folder", "data_dir", "host", "port", "max_body",
    "max_backfill_runs", "synchronous", "log_format", "log_max_bytes", "xcom_max_bytes",
    *(f.name for f in fields(Settings) if f.name.startswith(("workers_", "auth_", "dask_"))),
})


def jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def _masked(value: Any) -> Any:
    """A string with any user:password@ of a URL in it as ***@ (server.base_url too)."""
    return _USERINFO.sub(MASK + "@", value) if isinstance(value, str) else value


def _masked_connection(conn: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in conn.items():
        if key == "headers" and isinstance(value, Mapping):
            out[key] = {name: MASK for name in value}
        elif isinstance(value, str):
            out[key] = _USERINFO.sub(MASK + "@", value)
        else:
            out[key] = jsonable(value)
    return out


def rows(settings: Settings, on_disk: Settings | None = None) -> list[dict[str, Any]]:
    """[{"key", "value", "source", "applies"}] for every key, in the order of the
    reference file; with `on_disk` (the configuration as it reads now), a key whose
    value there differs also has "on_disk" and "note" (what applies it)."""
    out = []
    for (section, key), (name, _) in _KEYS.items():
        row = _row(f"{section}.{key}", name, jsonable(getattr(settings, name)), settings)
        if on_disk is not None and getattr(on_disk, name) != getattr(settings, name):
            row["on_disk"] = _masked(jsonable(getattr(on_disk, name)))
            row["note"] = _note(name)
        out.append(row)
    out.extend(_connection_rows(settings, on_disk))
    return out


def _connection_rows(settings: Settings, on_disk: Settings | None) -> list[dict[str, Any]]:
    """One row per key of each connection: connections.crm.base_url, ..."""
    running = {n: _masked_connection(c) for n, c in settings.connections.items()}
    disk = {n: _masked_connection(c) for n, c in (on_disk.connections if on_disk else {}).items()}
    out = []
    for name in sorted(set(running) | set(disk)):
        mine, theirs = running.get(name, {}), disk.get(name, {})
        for key in sorted(set(mine) | set(theirs)):
            row = _row(f"connections.{name}.{key}", "connections", mine.get(key), settings)
            if on_disk is not None and mine.get(key) != theirs.get(key):
                row["on_disk"] = theirs.get(key)
                row["note"] = _note("connections")
            out.append(row)
    return out


def _row(key: str, name: str, value: Any, settings: Settings) -> dict[str, Any]:
    return {"key": key, "value": _masked(value), "source": settings.sources.get(name, "default"),
            "applies": "restart" if name in RESTART_ONLY else "reload"}


def _note(name: str) -> str:
    if name in RESTART_ONLY:
        return "changed on disk; only a restart applies it"
    return "changed on disk; SIGHUP (systemctl reload dagd) applies it"
