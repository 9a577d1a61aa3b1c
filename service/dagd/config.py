"""Settings: the config file, then the environment, then command-line options.

Produces one frozen `Settings`. Relative paths are taken from the working directory.
The file is found at `--config`, else `$DAGD_CONFIG`, else `./config/dagd.toml` if it
exists, else `/etc/dagd/dagd.toml` if it exists; with none, the defaults below apply.

`[connections.NAME]` tables name the HTTP endpoints tasks may use (`HttpTask(conn=...)`):
a base URL, headers, and credentials whose secrets are read from the environment when a
task runs (`token_env`, `password_env`, `headers_env`), never stored in the file.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dagd.config_connections import read_connections
from dagd.config_dask import dask_checks
from dagd.config_sources import brief, environment_keys, key_lines, line_of, parse_text
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
    # A Dask cluster for tasks with executor="dask" ([executors.dask]): a scheduler's
    # address ("tcp://host:8786", "tls://..."), or "local" for a LocalCluster the daemon
    # starts and stops (n_workers: 0 is the number of cores; memory_limit per worker,
    # None: Dask's own); "" (the default): none. TLS: the CA and client certificate.
    dask_address: str = ""
    dask_n_workers: int = 0
    dask_threads_per_worker: int = 1
    dask_memory_limit: int | None = None
    dask_ca_file: str = ""
    dask_cert: str = ""
    dask_key: str = ""
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
    # Where each value came from, by field ("config/dagd.toml:12", "environment
    # DAGD_SERVER__PORT", "--port"); a field not in it has its default. Not compared.
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}),
                                       hash=False, compare=False, repr=False)
    origin: Origin | None = field(default=None, hash=False, compare=False, repr=False)

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


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
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
                             f"got {brief(value)}")
        scaled = float(match[1]) * _UNITS[(match[2] or "b").lower()]
        if not math.isfinite(scaled):  # 400 digits: int() would raise OverflowError
            raise ValueError(f"must be a number of bytes below 10^300, got {brief(value)}")
        number = int(scaled)
    if number <= 0:
        raise ValueError(f"must be more than 0 bytes, got {brief(value)}")
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
    ("executors.dask", "address"): ("dask_address", str),
    ("executors.dask", "n_workers"): ("dask_n_workers", int),
    ("executors.dask", "threads_per_worker"): ("dask_threads_per_worker", int),
    ("executors.dask", "memory_limit"): ("dask_memory_limit", Size),
    ("executors.dask", "ca_file"): ("dask_ca_file", str),
    ("executors.dask", "cert"): ("dask_cert", str),
    ("executors.dask", "key"): ("dask_key", str),
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
        return expand_path(value, where)
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


def expand_path(value: str | Path, where: str) -> Path:
    """`value` with a leading ~ or ~user made the home folder; a ConfigError names
    `where` when that user is unknown (pathlib's bare RuntimeError otherwise)."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        raise ConfigError(f"{where} names the home of an unknown user: {str(value)!r}"
                          ) from None


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


# Command-line options that override a key, by Settings field.
OPTIONS = {"dags_folder": "--dags-folder", "data_dir": "--data-dir", "host": "--host",
           "port": "--port"}
# Settings field -> "section.key", for messages and `dagd config show`.
KEY_OF = {name: f"{section}.{key}" for (section, key), (name, _) in _KEYS.items()}
FIELD_OF = {key: name for name, key in KEY_OF.items()}


def load_settings(
    config: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from the file, `DAGD_SECTION__KEY` environment variables and
    explicit overrides (command-line options), in rising priority; each value's origin
    is kept in `Settings.sources`."""
    env = os.environ if environ is None else environ
    path = find_config(config, env)
    found = _Found()
    connections: dict[str, Any] = {}
    if path is not None:
        connections = _read_file(path, found)
        found.values["config_file"] = path
    _read_environment(env, found, connections)
    if connections or "connections" in found.sources:
        found.values["connections"] = read_connections(connections, found.locate)
    for name, value in (overrides or {}).items():
        if value is not None:
            found.values[name] = (expand_path(value, OPTIONS[name])
                                  if name in ("dags_folder", "data_dir") else value)
            found.sources[name] = OPTIONS.get(name, name)
            found.places[KEY_OF.get(name, name)] = {"file": OPTIONS.get(name, name)}
    _credential_files(found, env)
    settings = replace(Settings(), **found.values, sources=MappingProxyType(found.sources),
                       origin=Origin(config, MappingProxyType(dict(overrides or {}))))
    _validate(settings, found)
    return settings


def reload_settings(current: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings as `current` was loaded (the same --config and options), read again."""
    origin = current.origin or Origin(current.config_file, MappingProxyType({}))
    return load_settings(origin.config, overrides=origin.overrides, environ=environ)


@dataclass(frozen=True)
class Origin:
    """What a Settings was loaded from: the --config given (or None) and the options."""

    config: str | Path | None
    overrides: Mapping[str, Any]


@dataclass
class _Found:
    """Values read so far, where each came from, and where to point an error."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # field or "connections.x.y"
    places: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> file, line

    def locate(self, key: str) -> dict[str, Any]:
        """ConfigError's file= and line= for `key` ("connections.crm.base_url")."""
        while key:
            if key in self.places:
                return self.places[key]
            key = key.rpartition(".")[0]
        return {}

    def note(self, name: str, key: str, value: Any, place: dict[str, Any]) -> None:
        self.values[name] = value
        self.sources[name] = _shown_place(place)
        self.places[key] = place


def _shown_place(place: dict[str, Any]) -> str:
    file, line = place.get("file", ""), place.get("line")
    return f"{file}:{line}" if line else str(file)


def _read_file(path: Path, found: _Found) -> dict[str, Any]:
    """The file's keys into `found`; returns its raw [connections] tables."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file: {exc}", file=str(path)) from None
    except ValueError as exc:  # TOMLDecodeError, or a 5000-digit integer's ValueError
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None
    lines = key_lines(text)

    def place(key: str) -> dict[str, Any]:
        return {"file": str(path), "line": line_of(lines, key)}

    connections: dict[str, Any] = {}
    for section, table in _nested(raw).items():
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table", **place(section), field=section)
        if section == "connections":
            connections = {name: dict(conn) if isinstance(conn, dict) else conn
                           for name, conn in table.items()}
            for name, conn in table.items():
                found.places[f"connections.{name}"] = place(f"connections.{name}")
                for key in conn if isinstance(conn, dict) else ():
                    found.places[f"connections.{name}.{key}"] = place(
                        f"connections.{name}.{key}")
            first = next(iter(table), "")  # [connections.a] with no [connections]
            found.sources["connections"] = _shown_place(place(f"connections.{first}"))
            continue
        for key, value in table.items():
            name, kind = _spec(section, key, place(f"{section}.{key}"))
            try:
                found.note(name, f"{section}.{key}", _coerce(value, kind, f"{section}.{key}"),
                           place(f"{section}.{key}"))
            except ConfigError as exc:
                raise ConfigError(exc.message, **place(f"{section}.{key}"),
                                  field=f"{section}.{key}") from None
    return connections


def _nested(raw: dict[str, Any]) -> dict[str, Any]:
    """The file's tables by section; `[executors.dask]`, which TOML nests in
    `executors`, is the section "executors.dask"."""
    tables: dict[str, Any] = {}
    for section, table in raw.items():
        if section == "executors" and isinstance(table, dict):
            tables.update({f"executors.{name}": sub for name, sub in table.items()})
        else:
            tables[section] = table
    return tables


def _spec(section: str, key: str, place: dict[str, Any]) -> tuple[str, type]:
    """The Settings field and type of `section.key`; an unknown key is an error."""
    spec = _KEYS.get((section, key))
    if spec is not None:
        return spec
    if section == "smtp" and key == "password":
        raise ConfigError(
            "smtp.password: secrets never go in the config file; use password_env "
            "(the name of an environment variable) or password_file (a file's path)",
            **place, field="smtp.password")
    raise ConfigError(f"unknown key {section}.{key}", **place, field=f"{section}.{key}")


def _read_environment(env: Mapping[str, str], found: _Found,
                      connections: dict[str, Any]) -> None:
    """`DAGD_SECTION__KEY` variables into `found` (and `connections`), each typed."""
    seen: dict[str, str] = {}
    for variable, section, key in environment_keys(env):
        place: dict[str, Any] = {"file": f"environment {variable}"}
        full = f"{section}.{key}"
        if full in seen and env[seen[full]] != env[variable]:
            raise ConfigError(f"{seen[full]} and {variable} both set {full}, differently: "
                              "keep one", **place, field=full)
        seen[full] = variable
        if section == "connections":
            name, _, conn_key = key.partition(".")
            if not name or not conn_key or "." in conn_key:
                raise ConfigError("must be DAGD_CONNECTIONS__NAME__KEY", **place, field=full)
            if conn_key in ("headers", "headers_env"):
                raise ConfigError(f"connections.{name}.{conn_key} is a table: set it in the "
                                  "config file", **place, field=full)
            table = connections.setdefault(name, {})
            if isinstance(table, dict):
                table[conn_key] = env[variable]
            found.places[full] = place
            found.sources["connections"] = ", ".join(
                filter(None, (found.sources.get("connections"), variable)))
            continue
        if section == "executors":  # DAGD_EXECUTORS__DASK__ADDRESS: [executors.dask]
            section, _, key = full.rpartition(".")
        name, kind = _spec(section, key, place)
        try:
            found.note(name, full, _coerce(_typed(env[variable], kind), kind, full), place)
        except (ConfigError, ValueError) as exc:
            message = exc.message if isinstance(exc, ConfigError) else f"{full} {exc}"
            raise ConfigError(message, **place, field=full) from None


def _typed(text: str, kind: type) -> object:
    """An environment variable's text as what `_coerce` expects for `kind`."""
    names = {int: "int", float: "float", bool: "bool"}
    return parse_text(text, names[kind]) if kind in names else text


def _credential_files(found: _Found, env: Mapping[str, str]) -> None:
    """A relative `*_file` setting names a systemd credential (LoadCredential=) when
    $CREDENTIALS_DIRECTORY holds it; otherwise it is taken from the working directory."""
    folder = env.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return
    for name in ("smtp_password_file", "smtp_ca_file"):
        value = found.values.get(name)
        if value and not Path(value).is_absolute() and (Path(folder) / value).is_file():
            found.values[name] = str(Path(folder) / value)
            found.sources[name] += f" (credential in {folder})"


def _validate(s: Settings, found: _Found) -> None:
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
        *dask_checks(s),
    ]
    for ok, key, message in checks:
        if not ok:
            raise ConfigError(f"{key} {message}", **found.locate(key), field=key)
