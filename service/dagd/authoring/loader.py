"""The DAG-file loader: import each `.py` of the DAGs folder on its own.

A file that raises, or whose DAG fails validation, becomes an `ImportFailure`
(file, line, message, traceback); it never stops the other files. Blocking: the
daemon calls it from a worker thread.

A DAG file is imported under its own unique module name (`module_name`), never under
its file name, so a DAG file called `http.py` shadows nothing. Its folder is appended to
`sys.path`, after the standard library and site-packages, so that the helper modules
the DAG files import are found; a helper whose name an installed or standard module
already has can never be imported by that name, and is reported as an `ImportFailure`
that says so (the DAGs are not affected).

While a file is imported, `import airflow...` is served by `dagd.compat.hook` (unless a
real Airflow is importable): Airflow 2 and 3 DAG files load unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import sys
import threading
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from dagd.authoring import dag as dag_module
from dagd.authoring.dag import DAG
from dagd.compat.hook import airflow_imports
from dagd.errors import DagdError

_lock = threading.Lock()
_appended: set[Path] = set()  # the folders load_file put on sys.path


@dataclass(frozen=True)
class ImportFailure:
    file: str
    line: int | None
    message: str
    traceback: str
    # The exception itself, in this process only: a worker shows its frames.
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass
class DagBag:
    folder: Path
    dags: dict[str, DAG] = field(default_factory=dict)
    errors: list[ImportFailure] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)


def module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"dagd_dagfile_{stem}_{digest}"


def _failure(path: Path, exc: BaseException) -> ImportFailure:
    """Where in the user's file the error is: its own line, or the deepest frame in it."""
    if isinstance(exc, DagdError) and exc.file == str(path) and exc.line:
        line: int | None = exc.line
    elif isinstance(exc, SyntaxError) and exc.filename == str(path):
        line = exc.lineno
    else:
        line = None
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == str(path):
                line = frame.lineno
    if isinstance(exc, DagdError):
        if exc.file is None:
            exc.file, exc.line = str(path), line
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ImportFailure(file=str(path), line=line, message=message, traceback=tb,
                         exception=exc)


def load_file(path: Path, source: str | None = None) -> tuple[list[DAG], ImportFailure | None]:
    """Import one DAG file; return its DAGs, or the failure that stopped it.

    The file is read once and its text kept on each DAG (`dag.source`), so a worker
    process can run exactly the version the scheduler loaded, even after the file on
    disk was edited into something broken. `source` gives that text instead of the disk.
    """
    path = path.resolve()
    name = module_name(path)
    with _lock:
        folder = str(path.parent)
        if folder not in sys.path:
            # Last: helper modules beside the DAG files import, but never in place of
            # an installed or standard module (a DAG folder's `http.py` would break
            # aiohttp, and with it every task of the folder).
            sys.path.append(folder)
            _appended.add(path.parent)
        dag_module.start_collecting()
        try:
            text = path.read_text(encoding="utf-8") if source is None else source
            module = types.ModuleType(name)
            module.__file__ = str(path)
            sys.modules[name] = module
            # Compiled with the real path: tracebacks and __file__ read as usual.
            # `import airflow...` is served by dagd.compat while the file is imported.
            with airflow_imports():
                exec(compile(text, str(path), "exec"), module.__dict__)
            found = dag_module.stop_collecting()
            for value in vars(module).values():
                if isinstance(value, DAG) and value not in found:
                    found.append(value)
            for d in found:
                d.validate()
                d.source = text
        except KeyboardInterrupt:
            dag_module.stop_collecting()
            raise
        except BaseException as exc:  # a DAG file may raise anything, SystemExit included
            dag_module.stop_collecting()
            sys.modules.pop(name, None)
            return [], _failure(path, exc)
    return found, None


def load_folder(folder: Path) -> DagBag:
    """Import every `.py` file under `folder` (skipping names starting with '_' or '.')."""
    bag = DagBag(folder=folder)
    if not folder.is_dir():
        bag.errors.append(
            ImportFailure(str(folder), None, "DAGs folder does not exist", "")
        )
        return bag
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        if any(part.startswith(("_", ".")) for part in rel.parts):
            continue
        dags, failure = load_file(path)
        key = str(path.resolve())
        if failure is not None:
            bag.errors.append(failure)
            continue
        ids: list[str] = []
        for d in dags:
            if d.dag_id in bag.dags:
                other = bag.dags[d.dag_id].fileloc
                bag.errors.append(
                    ImportFailure(
                        key, d.lineno, f"DAG id {d.dag_id!r} is already defined in {other}", ""
                    )
                )
                continue
            bag.dags[d.dag_id] = d
            ids.append(d.dag_id)
        bag.files[key] = ids
    bag.errors.extend(shadowed_helpers(bag))
    return bag


def _installed(name: str, path: list[str]) -> str | None:
    """Where the installed or standard module `name` is, looked for on `path` (sys.path
    without the DAG folders); None if there is none."""
    module = sys.modules.get(name)
    where = getattr(module, "__file__", None) if module is not None else None
    if isinstance(where, str):
        file = Path(where).resolve()
        folder = file.parent.parent if file.name == "__init__.py" else file.parent
        if folder not in _appended:
            return where
    if name in sys.builtin_module_names:
        return "built in"
    if importlib.machinery.FrozenImporter.find_spec(name) is not None:
        return "frozen"
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    # A namespace package (no origin) does not win over a module later on the path.
    if spec is None or spec.origin in (None, "namespace"):
        return None
    return spec.origin


def shadowed_helpers(bag: DagBag) -> list[ImportFailure]:
    """Helper modules beside the DAG files that `import NAME` cannot reach, because an
    installed or standard module of that name comes first on `sys.path`."""
    loaded = [Path(f) for f in bag.files] + [Path(e.file) for e in bag.errors]
    folders = {f.parent for f in loaded if f.suffix == ".py"}
    path = [p for p in sys.path if Path(p or ".").resolve() not in _appended]
    found: list[ImportFailure] = []
    for folder in sorted(folders):
        for file in sorted(folder.iterdir()):
            is_package = file.is_dir() and (file / "__init__.py").is_file()
            name = file.name if is_package else file.stem
            if not (is_package or file.suffix == ".py") or not name.isidentifier():
                continue
            if bag.files.get(str(file)) or name == "__init__":
                continue  # a DAG file: imported under its own name, by dagd alone
            where = _installed(name, path)
            if where is None:
                continue
            what = "standard library" if name in sys.stdlib_module_names else "installed"
            found.append(ImportFailure(
                file=str(file), line=None, traceback="",
                message=f"warning: {file.name} has the name of the {what} module {name!r} "
                        f"({where}), which comes first: `import {name}` in a DAG file gets "
                        f"that module, not this file; rename it",
            ))
    return found


def find_dag(path: Path, dag_id: str, source: str | None = None) -> DAG:
    """Used by worker processes: import one file (or the text the daemon loaded from it)
    and return one of its DAGs."""
    dags, failure = load_file(path, source)
    if failure is not None:
        raise DagdError(f"cannot load DAG file: {failure.message}", file=failure.file,
                        line=failure.line) from failure.exception
    for d in dags:
        if d.dag_id == dag_id:
            return d
    raise DagdError(f"DAG {dag_id!r} not found", file=str(path))
