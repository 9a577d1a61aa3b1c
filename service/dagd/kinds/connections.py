"""Named connections for task kinds: the config's `[connections.NAME]` tables, as the
daemon hands them over at start and on reload (`set_connections(settings.connections)`).

A task names a connection (`conn="warehouse"`) instead of writing a URL and its secret in
the DAG file; the secret itself stays in the environment (`password_env`). Kept here,
module-level, because tasks run in the daemon's process and receive no settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from dagd.errors import DagdError

_connections: Mapping[str, Mapping[str, Any]] = MappingProxyType({})


class ConnectionNotFound(DagdError):
    code = "connection_not_found"


def set_connections(mapping: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace the known connections (the daemon calls this at start and on SIGHUP)."""
    global _connections
    _connections = MappingProxyType({name: MappingProxyType(dict(conn))
                                     for name, conn in mapping.items()})


def get_connection(name: str) -> Mapping[str, Any]:
    """The `[connections.NAME]` table, read-only; `ConnectionNotFound` names what exists."""
    try:
        return _connections[name]
    except KeyError:
        known = ", ".join(sorted(_connections)) or "none configured"
        raise ConnectionNotFound(
            f"no connection named {name!r}: add [connections.{name}] to the config file "
            f"(known: {known})"
        ) from None


def connection_names() -> list[str]:
    return sorted(_connections)
