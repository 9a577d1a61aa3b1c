"""The `airflow` import hook: while dagd imports a DAG file (the loader, a worker) or runs
an Airflow-style task, `import airflow...` is served from `dagd.compat.airflow`.

`airflow_imports()` puts a finder first on `sys.meta_path` for the time of the block,
and only when no real Airflow is importable (an installed one always wins). Each served
module is built from the map in `dagd.compat.airflow.names`; a name outside the subset,
and any module the map does not know, is served too, but using a name of it raises
`AirflowNameUnsupported` (a `DagDefinitionError`, and an `ImportError` as Airflow's
missing providers are) naming the DAG file's line, the Airflow name and what dagd offers
instead. The served modules leave `sys.modules` when the block ends (they are kept here,
so the next block gets the same objects): nothing outside DAG loading sees `airflow`.
Nothing is ever installed as a package.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagd.compat.airflow.names import MODULES, instead, is_package
from dagd.errors import DagDefinitionError

IMPL = "dagd.compat.airflow"
_DAGD_DIR = str(Path(__file__).resolve().parents[1])


class AirflowNameUnsupported(DagDefinitionError, ImportError):
    """A DAG file uses an Airflow name that dagd does not serve."""

    code = "airflow_unsupported"


def caller_location() -> tuple[str | None, int | None]:
    """File and line of the first frame outside dagd and the import machinery."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith((_DAGD_DIR, "<frozen")):
            return name, frame.f_lineno
        frame = frame.f_back
    return None, None


def unsupported(name: str) -> AirflowNameUnsupported:
    file, line = caller_location()
    return AirflowNameUnsupported(
        f"the Airflow name {name} is not supported by dagd; instead: {instead(name)}",
        file=file, line=line)


def _resolve(target: str) -> Any:
    where, _, attr = target.partition(":")
    if where == "module":
        return importlib.import_module(attr)
    return getattr(importlib.import_module(f"{IMPL}.{where}"), attr)


def _module_getattr(module_name: str) -> Any:
    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if f"{module_name}.{name}" in MODULES or is_package(f"{module_name}.{name}"):
            return importlib.import_module(f"{module_name}.{name}")
        raise unsupported(f"{module_name}.{name}")

    return __getattr__


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        name = module.__name__
        names = MODULES.get(name, {})
        exported = {key: _resolve(target) for key, target in names.items()
                    if not target.startswith("unsupported:")}
        module.__dict__.update(exported)
        module.__dict__["__all__"] = sorted(k for k in exported if not k.startswith("_"))
        module.__dict__["__getattr__"] = _module_getattr(name)
        module.__dict__["__doc__"] = f"{name}, served by dagd ({IMPL})"
        # A DAG file may ask where `airflow` lives (os.path.dirname(airflow.__file__)).
        module.__dict__["__file__"] = importlib.import_module(IMPL).__file__
        _built[name] = module


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "airflow" and not fullname.startswith("airflow."):
            return None
        # Every served module is a package: a module the map does not know may be the
        # parent of one the DAG file imports next (its names then refuse themselves).
        spec = importlib.util.spec_from_loader(fullname, _LOADER, is_package=True)
        if spec is not None:
            spec.submodule_search_locations = []
        return spec


_LOADER = _Loader()
_FINDER = _Finder()
_built: dict[str, types.ModuleType] = {}
_lock = threading.RLock()
_depth = 0


_looked: tuple[tuple[str, ...], bool] | None = None  # (sys.path, found there) last time


def real_airflow() -> bool:
    """True if an Airflow other than dagd's is importable (then the hook stays off).
    Looked for on sys.path once per value of sys.path: each attempt asks."""
    global _looked
    module = sys.modules.get("airflow")
    if module is not None and module is not _built.get("airflow"):
        return True
    path = tuple(sys.path)
    if _looked is None or _looked[0] != path:
        importlib.machinery.PathFinder.invalidate_caches()
        _looked = (path, importlib.machinery.PathFinder.find_spec("airflow", sys.path)
                   is not None)
    return _looked[1]


@contextmanager
def airflow_imports() -> Iterator[bool]:
    """Serve `airflow` for the block (re-entrant); yields whether the hook is on."""
    global _depth
    with _lock:
        if _depth == 0 and real_airflow():
            on = False
        else:
            on = True
            if _depth == 0:
                sys.modules.update(_built)
                sys.meta_path.insert(0, _FINDER)
            _depth += 1
    try:
        yield on
    finally:
        if on:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    _uninstall()


def _uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name, module in _built.items():
        if sys.modules.get(name) is module:
            del sys.modules[name]
