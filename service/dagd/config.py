"""Settings: the config file, then the environment, then command-line options.

Produces one frozen `Settings`. Relative paths are taken from the working directory.
The file is found at `--config`, else `$DAGD_CONFIG`, else `./config/dagd.toml` if it
exists, else `/etc/dagd/dagd.toml` if it exists; with none, the defaults below apply.

`[connections.NAME]` tables name the HTTP endpoints tasks may use (`HttpTask(conn=...)`):
a base URL, headers, and credentials whose secrets are read from the environment when a
task runs (`token_env`, `password_env`, `headers_env`), never stored in the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dagd.dburl import check_url
from dagd.errors import ConfigError

DEFAULT_PATHS = (Path("config/dagd.toml"), Path("/etc/dagd/dagd.toml"))
SYNCHRONOUS = ("full", "normal")
ISOLATIONS = ("process", "fresh", "thread")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Settings:
    dags_folder: Path = Path("dags")
    plugins_folder: Path = Path("plugins")
    data_dir: Path = Path(".dagd")
    parallelism: int = 64
    default_isolation: str = "process"
    default_max_active_runs: int = 16
    default_max_active_tasks: int = 32
    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = 1024 * 1024  # bytes: a webhook body past this is refused with 413
    max_backfill_runs: int = 10_000  # runs one backfill request may queue; more: a 422
    # Email notifications ([smtp]); the password only ever by environment variable name.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_sender: str = "dagd@localhost"
    smtp_username: str = ""
    smtp_password_env: str = ""
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout: float = 30.0
    smtp_password_file: str = ""  # a file holding the password (a systemd credential)
    smtp_ca_file: str = ""  # CA certificates for a server with a private certificate
    smtp_deadline: float = 60.0  # seconds one whole send may take, all steps together
    # Notifications ([notifications]): email templates, and how a failed send is retried.
    templates_folder: Path | None = None
    notify_max_attempts: int = 8
    notify_retry_delay: float = 2.0
    # Where the UI is reached, for links in emails ([server] base_url); "": no UI links.
    base_url: str = ""
    log_max_bytes: int = 10 * 1024 * 1024
    xcom_max_bytes: int = 1024 * 1024
    synchronous: str = "full"
    shutdown_grace_period: float = 10.0
    # Seconds a task's or DAG's callback may run before it is abandoned (and that noted).
    callback_timeout: float = 30.0
    log_level: str = "INFO"
    log_format: str = "text"  # "json": one JSON object per line, for log shippers
    # Bytes a task in a worker process may allocate, unless it sets its own; None: no cap.
    default_memory_limit: int | None = None
    # The warm worker pool of sync tasks ([workers]): kept ready (0: the number of cores,
    # at least 2), the most at once under load (0: core.parallelism), seconds an extra
    # worker may idle, and when a worker is recycled.
    workers_size: int = 0
    workers_max_size: int = 0
    workers_idle_timeout: float = 60.0
    workers_max_tasks: int = 1000
    workers_max_memory: int | None = 512_000_000
    # Retention ([retention]): finished runs (their task instances, attempts, logs,
    # XComs), events and sent notifications older than max_age_days, and each DAG's
    # finished runs past its newest max_runs_per_dag, are pruned every `interval`
    # seconds, `batch_size` rows per transaction. 0: kept forever (the default).
    retention_max_age_days: float = 0.0
    retention_max_runs_per_dag: int = 0
    retention_interval: float = 300.0
    retention_batch_size: int = 500
    # Authentication ([auth]): on unless turned off; sessions' lifetime; what is open.
    auth_enabled: bool = True
    auth_session_hours: float = 12.0
    auth_public_health: bool = False
    auth_public_metrics: bool = False
    config_file: Path | None = None
    # name -> {"base_url", "headers", "headers_env", "token_env", "username",
    # "password_env"}; read-only mappings. Not hashed: a dict cannot be.
    connections: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "dagd.db"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "dagd.lock"


class Size(int):
    """A config value in bytes: a whole number, or a string such as "512MB" or "2GiB"."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_bytes(value: object) -> int:
    """Bytes from an int or a string like "512MB" (10^6) or "2GiB" (2^30); ValueError
    says what is accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        match = _SIZE.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"must be a number of bytes or a string such as \"512MB\" or "
                             f"\"2GiB\" (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), "
                             f"got {value!r}")
        number = int(float(match[1]) * _UNITS[(match[2] or "b").lower()])
    if number <= 0:
        raise ValueError(f"must be more than 0 bytes, got {value!r}")
    return number


def format_bytes(number: int) -> str:
    """512000000 -> "512 MB", 2147483648 -> "2 GiB": the largest unit that divides it."""
    for unit in ("TiB", "GiB", "MiB", "TB", "GB", "MB", "KiB", "KB"):
        size = _UNITS[unit.lower()]
        if number >= size and number % size == 0:
            return f"{number // size} {unit}"
    return f"{number} bytes"


# (section, key) -> (Settings field, type)
_KEYS: dict[tuple[str, str], tuple[str, type]] = {
    ("core", "dags_folder"): ("dags_folder", Path),
    ("core", "data_dir"): ("data_dir", Path),
    ("core", "plugins_folder"): ("plugins_folder", Path),
    ("core", "parallelism"): ("parallelism", int),
    ("core", "default_isolation"): ("default_isolation", str),
    ("core", "default_max_active_runs"): ("default_max_active_runs", int),
    ("core", "default_max_active_tasks"): ("default_max_active_tasks", int),
    ("core", "shutdown_grace_period"): ("shutdown_grace_period", float),
    ("core", "callback_timeout"): ("callback_timeout", float),
    ("core", "log_level"): ("log_level", str),
    ("core", "log_format"): ("log_format", str),
    ("core", "default_memory_limit"): ("default_memory_limit", Size),
    ("server", "host"): ("host", str),
    ("server", "port"): ("port", int),
    ("server", "max_body"): ("max_body", int),
    ("server", "max_backfill_runs"): ("max_backfill_runs", int),
    ("server", "base_url"): ("base_url", str),
    ("smtp", "host"): ("smtp_host", str),
    ("smtp", "port"): ("smtp_port", int),
    ("smtp", "sender"): ("smtp_sender", str),
    ("smtp", "username"): ("smtp_username", str),
    ("smtp", "password_env"): ("smtp_password_env", str),
    ("smtp", "starttls"): ("smtp_starttls", bool),
    ("smtp", "tls"): ("smtp_tls", bool),
    ("smtp", "timeout"): ("smtp_timeout", float),
    ("smtp", "password_file"): ("smtp_password_file", str),
    ("smtp", "ca_file"): ("smtp_ca_file", str),
    ("smtp", "deadline"): ("smtp_deadline", float),
    ("notifications", "templates_folder"): ("templates_folder", Path),
    ("notifications", "max_attempts"): ("notify_max_attempts", int),
    ("notifications", "retry_delay"): ("notify_retry_delay", float),
    ("workers", "size"): ("workers_size", int),
    ("workers", "max_size"): ("workers_max_size", int),
    ("workers", "idle_timeout"): ("workers_idle_timeout", float),
    ("workers", "max_tasks_per_worker"): ("workers_max_tasks", int),
    ("workers", "max_memory_per_worker"): ("workers_max_memory", Size),
    ("logs", "max_bytes"): ("log_max_bytes", int),
    ("xcom", "max_bytes"): ("xcom_max_bytes", int),
    ("database", "synchronous"): ("synchronous", str),
    ("retention", "max_age_days"): ("retention_max_age_days", float),
    ("retention", "max_runs_per_dag"): ("retention_max_runs_per_dag", int),
    ("retention", "interval"): ("retention_interval", float),
    ("retention", "batch_size"): ("retention_batch_size", int),
    ("auth", "enabled"): ("auth_enabled", bool),
    ("auth", "session_hours"): ("auth_session_hours", float),
    ("auth", "public_health"): ("auth_public_health", bool),
    ("auth", "public_metrics"): ("auth_public_metrics", bool),
}


def _coerce(value: Any, kind: type, where: str) -> Any:
    if kind is Size:
        try:
            return parse_bytes(value)
        except ValueError as exc:
            raise ConfigError(f"{where} {exc}") from None
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a non-empty path string, got {value!r}")
        return Path(value).expanduser()
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def find_config(
    explicit: str | Path | None, environ: Mapping[str, str] | None = None
) -> Path | None:
    if explicit:
        return Path(explicit)
    env = (os.environ if environ is None else environ).get("DAGD_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    config: str | Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from file, environment and explicit overrides (in rising priority)."""
    env = os.environ if environ is None else environ
    path = find_config(config, env)
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_file(path))
        values["config_file"] = path
    if env.get("DAGD_DAGS_FOLDER"):
        values["dags_folder"] = Path(env["DAGD_DAGS_FOLDER"]).expanduser()
    if env.get("DAGD_DATA_DIR"):
        values["data_dir"] = Path(env["DAGD_DATA_DIR"]).expanduser()
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = Path(value).expanduser() if key in ("dags_folder", "data_dir") else value
    settings = replace(Settings(), **values)
    _validate(settings, path)
    return settings


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None
    values: dict[str, Any] = {}
    for section, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table", file=str(path), field=section)
        if section == "connections":
            values["connections"] = _read_connections(table, str(path))
            continue
        for key, value in table.items():
            spec = _KEYS.get((section, key))
            if spec is None and section == "smtp" and key == "password":
                raise ConfigError(
                    "smtp.password: secrets never go in the config file; use password_env "
                    "(the name of an environment variable) or password_file (a file's path)",
                    file=str(path), field="smtp.password")
            if spec is None:
                raise ConfigError(
                    f"unknown key {section}.{key}", file=str(path), field=f"{section}.{key}"
                )
            name, kind = spec
            try:
                values[name] = _coerce(value, kind, f"{section}.{key}")
            except ConfigError as exc:
                raise ConfigError(exc.message, file=str(path), field=f"{section}.{key}") from None
    return values


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


def _read_connections(table: dict[str, Any], file: str) -> Mapping[str, Mapping[str, Any]]:
    """`[connections.NAME]` tables -> read-only {name: {key: value}}, every key checked."""
    out: dict[str, Mapping[str, Any]] = {}
    for name, conn in table.items():
        where = f"connections.{name}"
        if not isinstance(conn, dict):
            raise ConfigError(f"[{where}] must be a table", file=file, field=where)
        for key, value in conn.items():
            if key not in _CONNECTION_KEYS:
                hint = (
                    f"; secrets never go in the config file: use {_SECRET_KEYS[key]} "
                    "(the name of an environment variable)"
                    if key in _SECRET_KEYS
                    else f"; use {', '.join(_CONNECTION_KEYS)}"
                )
                raise ConfigError(f"unknown key {where}.{key}{hint}", file=file,
                                  field=f"{where}.{key}")
            if not _connection_value_ok(key, value):
                # A bad URL may hold a password: never echo it back.
                got = "" if key == "url" else f", got {value!r}"
                raise ConfigError(f"{where}.{key} must be {_CONNECTION_KEYS[key]}{got}",
                                  file=file, field=f"{where}.{key}")
        if "url" in conn and "base_url" in conn:
            raise ConfigError(f"[{where}] sets both url (a database) and base_url (HTTP): "
                              "one connection is one or the other", file=file, field=where)
        # A database URL carries its user; HTTP basic auth needs both halves here.
        if "url" not in conn and ("username" in conn) != ("password_env" in conn):
            raise ConfigError(f"[{where}] needs both username and password_env for basic auth",
                              file=file, field=where)
        if "username" in conn and "token_env" in conn:
            raise ConfigError(f"[{where}] sets both token_env and username: choose one",
                              file=file, field=where)
        out[name] = MappingProxyType(
            {k: MappingProxyType(dict(v)) if isinstance(v, dict) else v for k, v in conn.items()}
        )
    return MappingProxyType(out)


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


def _validate(s: Settings, path: Path | None) -> None:
    where = str(path) if path else None
    checks = [
        (s.parallelism >= 1, "core.parallelism", "must be at least 1"),
        (s.workers_size >= 0, "workers.size", "must be 0 (the number of cores) or more"),
        (s.workers_max_size >= 0, "workers.max_size",
         "must be 0 (core.parallelism) or more"),
        (s.workers_idle_timeout > 0, "workers.idle_timeout", "must be more than 0 seconds"),
        (s.workers_max_tasks >= 1, "workers.max_tasks_per_worker", "must be at least 1"),
        (s.default_max_active_runs >= 1, "core.default_max_active_runs", "must be at least 1"),
        (s.default_max_active_tasks >= 1, "core.default_max_active_tasks", "must be at least 1"),
        (s.default_isolation in ISOLATIONS, "core.default_isolation",
         f"must be one of {ISOLATIONS}"),
        (0 <= s.port <= 65535, "server.port", "must be between 0 and 65535"),
        (s.max_body >= 1, "server.max_body", "must be at least 1"),
        (s.max_backfill_runs >= 1, "server.max_backfill_runs", "must be at least 1"),
        (0 < s.smtp_port <= 65535, "smtp.port", "must be between 1 and 65535"),
        (not (s.smtp_tls and s.smtp_starttls), "smtp.tls",
         "and smtp.starttls cannot both be true"),
        (not (s.smtp_password_env and s.smtp_password_file), "smtp.password_env",
         "and smtp.password_file cannot both be set: choose one"),
        (not ((s.smtp_password_env or s.smtp_password_file)
              and not (s.smtp_tls or s.smtp_starttls)), "smtp.starttls",
         "or smtp.tls must be true when a password is set: it is never sent in the clear"),
        (not ((s.smtp_password_env or s.smtp_password_file) and not s.smtp_username),
         "smtp.username", "must be set when a password is"),
        (s.smtp_timeout > 0, "smtp.timeout", "must be more than 0"),
        (s.smtp_deadline > 0, "smtp.deadline", "must be more than 0"),
        (s.notify_max_attempts >= 1, "notifications.max_attempts", "must be at least 1"),
        (s.notify_retry_delay >= 0, "notifications.retry_delay", "must not be negative"),
        (not s.base_url or s.base_url.startswith(("http://", "https://")), "server.base_url",
         "must be an http:// or https:// URL"),
        (s.log_max_bytes >= 1024, "logs.max_bytes", "must be at least 1024"),
        (s.xcom_max_bytes >= 1024, "xcom.max_bytes", "must be at least 1024"),
        (s.synchronous in SYNCHRONOUS, "database.synchronous", f"must be one of {SYNCHRONOUS}"),
        (s.shutdown_grace_period >= 0, "core.shutdown_grace_period", "must not be negative"),
        (s.callback_timeout > 0, "core.callback_timeout", "must be more than 0 seconds"),
        (0 < s.auth_session_hours <= 24 * 366, "auth.session_hours",
         "must be more than 0 and at most a year (8784)"),
        # logging.basicConfig would otherwise fail at start with a bare ValueError.
        (s.log_level in LOG_LEVELS, "core.log_level", f"must be one of {LOG_LEVELS}"),
        (s.log_format in LOG_FORMATS, "core.log_format", f"must be one of {LOG_FORMATS}"),
        (s.retention_max_age_days >= 0, "retention.max_age_days",
         "must be 0 (keep forever) or more"),
        (s.retention_max_runs_per_dag >= 0, "retention.max_runs_per_dag",
         "must be 0 (keep every run) or more"),
        (s.retention_interval > 0, "retention.interval", "must be more than 0 seconds"),
        (1 <= s.retention_batch_size <= 100_000, "retention.batch_size",
         "must be between 1 and 100000"),
    ]
    for ok, key, message in checks:
        if not ok:
            raise ConfigError(f"{key} {message}", file=where, field=key)
