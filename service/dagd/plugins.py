"""Plugins: modules that add task kinds, triggers and notifiers.

A plugin is a Python module in the plugins folder (`[core] plugins_folder`, `plugins/`
by default), or a package that declares an entry point in the group `dagd.plugins`.
It either defines `register(registry)` and calls `registry.add(cls)` for what it
offers, or simply defines subclasses of `dagd.BaseTask` or `dagd.notify.Notifier`
(found automatically). DAG files then import them by name:

    from dagd.plugins import SlackNotifier

A plugin that fails to import is reported (file, line, traceback, in `dagd dags
errors` and the daemon's log) and dagd runs without it. Worker processes find the
folder through `$DAGD_PLUGINS_FOLDER`, which the daemon sets.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from dagd.authoring.loader import ImportFailure, module_name

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dagd.plugins"
ENV = "DAGD_PLUGINS_FOLDER"


class PluginRegistry:
    def __init__(self) -> None:
        self.classes: dict[str, type] = {}
        self.origin: dict[str, str] = {}

    def add(self, cls: type, *, name: str | None = None, origin: str = "") -> None:
        """Offer `cls` to DAG files as `from dagd.plugins import <name>`."""
        key = name or cls.__name__
        if key in self.classes and self.classes[key] is not cls:
            raise ValueError(f"plugin name {key!r} is taken (by {self.origin.get(key)})")
        self.classes[key] = cls
        self.origin[key] = origin


registry = PluginRegistry()
errors: list[ImportFailure] = []
_loaded: set[str] = set()
_lock = threading.RLock()


def _offers(module: Any) -> list[type]:
    from dagd.authoring.tasks import BaseTask
    from dagd.notify.base import Notifier
    from dagd.triggers.base import Trigger

    found = []
    for value in vars(module).values():
        if (inspect.isclass(value) and value.__module__ == module.__name__
                and issubclass(value, BaseTask | Notifier | Trigger)):
            found.append(value)
    return found


def _register(module: Any, origin: str) -> None:
    hook = getattr(module, "register", None)
    if callable(hook):
        class _Scoped:
            def add(self, cls: type, *, name: str | None = None) -> None:
                registry.add(cls, name=name, origin=origin)

        hook(_Scoped())
    else:
        for cls in _offers(module):
            registry.add(cls, origin=origin)


def _failure(origin: str, exc: BaseException) -> ImportFailure:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == origin:
            line = frame.lineno
    if isinstance(exc, SyntaxError) and exc.filename == origin:
        line = exc.lineno
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ImportFailure(file=origin, line=line,
                         message=f"plugin failed to load: {type(exc).__name__}: {exc}",
                         traceback=tb)


def load_folder(folder: Path | None) -> list[ImportFailure]:
    """Import each plugin module of `folder` once; return the failures (also kept)."""
    failures: list[ImportFailure] = []
    if folder is None or not folder.is_dir():
        return failures
    with _lock:
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith(("_", ".")):
                continue
            origin = str(path.resolve())
            if origin in _loaded:
                continue
            _loaded.add(origin)
            name = "dagd_plugin_" + module_name(path.resolve())
            try:
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot import {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
                _register(module, origin)
            except Exception as exc:  # a broken plugin must not stop dagd
                sys.modules.pop(name, None)
                failures.append(_failure(origin, exc))
        errors.extend(failures)
    for failure in failures:
        log.error("plugin %s: %s", failure.file, failure.message)
    return failures


def load_entry_points() -> list[ImportFailure]:
    failures: list[ImportFailure] = []
    with _lock:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            origin = f"entry point {ep.name} ({ep.value})"
            if origin in _loaded:
                continue
            _loaded.add(origin)
            try:
                target = ep.load()
                if inspect.ismodule(target):
                    _register(target, origin)
                elif callable(target):
                    target(registry)
            except Exception as exc:
                failures.append(_failure(origin, exc))
        errors.extend(failures)
    return failures


def load(folder: Path | None) -> list[ImportFailure]:
    """Load the plugins folder and the installed entry points; publish the folder for
    worker processes. Idempotent."""
    if folder is not None:
        os.environ[ENV] = str(folder.resolve())
    return load_folder(folder) + load_entry_points()


def __getattr__(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in registry.classes:
        env = os.environ.get(ENV)
        load(Path(env) if env else None)
    try:
        return registry.classes[name]
    except KeyError:
        known = ", ".join(sorted(registry.classes)) or "none"
        raise ImportError(f"no plugin offers {name!r} (loaded: {known})") from None
