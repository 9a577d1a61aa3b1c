"""`[connections.NAME]` of the config file: named HTTP endpoints and databases that tasks
use (`HttpTask(conn=...)`, `SqlTask(conn=...)`), every key checked. Secrets are only ever
named (an environment variable), never written in the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from dagd.dburl import check_url
from dagd.errors import ConfigError

# Connection key -> what its value must be. Secrets only ever by environment variable name.
_CONNECTION_KEYS = {
    "url": "a database URL (sqlite:///path.db, postgresql://user@host/db), with no password",
    "base_url": "an http:// or https:// URL",
    "headers": "a table of header names to strings",
    "headers_env": "a table of header names to environment variable names",
    "token_env": "the name of an environment variable holding a bearer token",
    "username": "a string",
    "password_env": "the name of an environment variable holding the password",
}
_SECRET_KEYS = {"token": "token_env", "password": "password_env", "secret": "token_env",
                "api_key": "headers_env"}


def read_connections(table: dict[str, Any], locate: Callable[[str], dict[str, Any]]
                      ) -> Mapping[str, Mapping[str, Any]]:
    """`[connections.NAME]` tables -> read-only {name: {key: value}}, every key checked;
    `locate(key)` says where a key was set (file= and line= of the error)."""
    out: dict[str, Mapping[str, Any]] = {}
    for name, conn in table.items():
        where = f"connections.{name}"
        if not isinstance(conn, dict):
            raise ConfigError(f"[{where}] must be a table", **locate(where), field=where)
        for key, value in conn.items():
            if key not in _CONNECTION_KEYS:
                hint = (
                    f"; secrets never go in the config file: use {_SECRET_KEYS[key]} "
                    "(the name of an environment variable)"
                    if key in _SECRET_KEYS
                    else f"; use {', '.join(_CONNECTION_KEYS)}"
                )
                raise ConfigError(f"unknown key {where}.{key}{hint}",
                                  **locate(f"{where}.{key}"), field=f"{where}.{key}")
            if not _connection_value_ok(key, value):
                # A bad URL may hold a password, a header's value a token: never echo
                # them back, only the header names and a URL without its userinfo.
                got = _shown_value(key, value)
                raise ConfigError(f"{where}.{key} must be {_CONNECTION_KEYS[key]}{got}",
                                  **locate(f"{where}.{key}"), field=f"{where}.{key}")
        if "url" in conn and "base_url" in conn:
            raise ConfigError(f"[{where}] sets both url (a database) and base_url (HTTP): "
                              "one connection is one or the other", **locate(where),
                              field=where)
        # A database URL carries its user; HTTP basic auth needs both halves here.
        if "url" not in conn and ("username" in conn) != ("password_env" in conn):
            raise ConfigError(f"[{where}] needs both username and password_env for basic auth",
                              **locate(where), field=where)
        if "username" in conn and "token_env" in conn:
            raise ConfigError(f"[{where}] sets both token_env and username: choose one",
                              **locate(where), field=where)
        out[name] = MappingProxyType(
            {k: MappingProxyType(dict(v)) if isinstance(v, dict) else v for k, v in conn.items()}
        )
    return MappingProxyType(out)


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _shown_value(key: str, value: Any) -> str:
    """", got ..." for an error about `value`, with nothing secret in it."""
    if key == "url":
        return ""
    if key in ("headers", "headers_env"):
        if not isinstance(value, dict):
            return f", got a {type(value).__name__}"
        return f", got a table of {', '.join(repr(str(name)) for name in value)}"
    if isinstance(value, str):
        return f", got {_USERINFO.sub('***@', value)!r}"
    return f", got {value!r}"


def _connection_value_ok(key: str, value: Any) -> bool:
    if key in ("headers", "headers_env"):
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
        )
    if not isinstance(value, str) or not value:
        return False
    if key == "base_url":
        return value.startswith(("http://", "https://"))
    if key == "url":
        try:
            check_url(value)
        except ValueError:
            return False
    return True
