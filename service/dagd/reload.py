"""What SIGHUP changes in a running daemon's configuration, and what waits for a restart.

The config file and the environment are read again as at the start (the same --config
and options). A bad edit keeps the running configuration, with the error in the log.
Keys the running parts read as they go (connections, SMTP, notifications, limits, the
log level, retention) take effect at once; the others (the port, the data directory,
the worker pool, ...) are named in the log and by `dagd config show` until a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from dagd.config import KEY_OF, Settings, reload_settings
from dagd.config_view import RESTART_ONLY

log = logging.getLogger(__name__)

# Not configuration: where it came from.
_BOOKKEEPING = frozenset({"sources", "origin", "config_file"})


def restart_needed(name: str) -> bool:
    """True for a field that only a restart changes (the port, the data directory...)."""
    return name in RESTART_ONLY


def key_of(name: str) -> str:
    return KEY_OF.get(name, name)


def differing(old: Settings, new: Settings) -> list[str]:
    """The fields whose values differ, in Settings order."""
    return [f.name for f in fields(Settings)
            if f.name not in _BOOKKEEPING and _plain(getattr(old, f.name))
            != _plain(getattr(new, f.name))]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Reloaded:
    """The outcome of one reload: the settings now running, what changed, what waits."""

    running: Settings
    applied: list[str]
    pending: dict[str, Any] = field(default_factory=dict)  # field -> the value on disk


def merge(running: Settings, fresh: Settings) -> Reloaded:
    """`fresh`, except that fields only a restart changes keep their running values
    (and their sources)."""
    changed = differing(running, fresh)
    applied = [name for name in changed if not restart_needed(name)]
    pending = {name: getattr(fresh, name) for name in changed if restart_needed(name)}
    sources = dict(fresh.sources)
    for name in pending:
        if name in running.sources:
            sources[name] = running.sources[name]
        else:
            sources.pop(name, None)
    kept = {name: getattr(running, name) for name in pending}
    merged = replace(fresh, **kept, sources=MappingProxyType(sources))
    return Reloaded(merged, applied, pending)


async def reload_config(running: Settings, apply: Callable[[Settings], None]
                        ) -> Reloaded | None:
    """Read the configuration again; hand what may change now to `apply`. None (and an
    error in the log) when the new configuration is refused: the running one stays."""
    import anyio

    from dagd.errors import DagdError

    try:
        fresh = await anyio.to_thread.run_sync(reload_settings, running)
    except DagdError as exc:
        log.error("SIGHUP: the configuration is refused, the running one stays: %s", exc)
        return None
    outcome = merge(running, fresh)
    apply(outcome.running)
    logging.getLogger().setLevel(outcome.running.log_level)
    if outcome.applied:
        log.info("SIGHUP: configuration reloaded; changed %s",
                 ", ".join(_change(running, outcome.running, n) for n in outcome.applied))
    else:
        log.info("SIGHUP: configuration reloaded; nothing changed")
    for name, value in outcome.pending.items():
        log.warning("SIGHUP: %s is %s in the configuration, but a running daemon cannot "
                    "change it: it stays %s until a restart", key_of(name), _shown(name, value),
                    _shown(name, getattr(running, name)))
    return outcome


def _change(old: Settings, new: Settings, name: str) -> str:
    if name == "connections":
        return "connections (" + (", ".join(sorted(new.connections)) or "none") + ")"
    return f"{key_of(name)} ({_shown(name, getattr(old, name))} -> " \
           f"{_shown(name, getattr(new, name))})"


def _shown(name: str, value: Any) -> str:
    return "none" if value is None or value == "" else str(value)
