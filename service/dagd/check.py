"""The DAGs folder loaded without a daemon, the way the daemon loads it: for
`dagd dags check` and for `dagd dags list/errors/show` when no daemon runs.

Plugins first (DAG files import what they offer), then each DAG file on its own
(`dagd.authoring.loader`); a plugin that fails to load is reported beside the DAG files'
errors, as the daemon's `DagFolder.load` does. Blocking; nothing here opens the database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from dagd import plugins
from dagd.authoring.dag import DAG
from dagd.authoring.loader import DagBag, ImportFailure, load_file, load_folder
from dagd.config import Settings
from dagd.errors import NotFound


def load_dags(settings: Settings) -> DagBag:
    """The DAGs folder, with the same DAGs and import errors the daemon would record."""
    plugins.load(settings.plugins_folder)
    bag = load_folder(settings.dags_folder)
    bag.errors.extend(plugins.errors)
    return bag


def _add(bag: DagBag, key: str, dags: list[DAG]) -> None:
    """The DAGs of one file into the bag; an id already there is an error, in the
    loader's words."""
    ids: list[str] = []
    for d in dags:
        if d.dag_id in bag.dags:
            other = bag.dags[d.dag_id].fileloc
            bag.errors.append(ImportFailure(
                key, d.lineno, f"DAG id {d.dag_id!r} is already defined in {other}", ""))
            continue
        bag.dags[d.dag_id] = d
        ids.append(d.dag_id)
    bag.files[key] = ids


def load_paths(settings: Settings, paths: Sequence[Path]) -> DagBag:
    """Only these folders (each as the daemon loads its folder) and files (loaded
    whatever their name), with the plugins; a DAG id defined twice among them is an
    error, as within a folder."""
    plugins.load(settings.plugins_folder)
    bag = DagBag(folder=settings.dags_folder)
    folders = sorted({p.resolve() for p in paths if p.is_dir()})
    taken: list[Path] = []
    for folder in folders:
        if any(folder.is_relative_to(outer) for outer in taken):
            continue  # inside a folder already loaded
        taken.append(folder)
        part = load_folder(folder)
        bag.errors.extend(part.errors)
        for key, ids in part.files.items():
            _add(bag, key, [part.dags[i] for i in ids])
    for path in paths:
        if path.is_dir():
            continue
        key = str(path.resolve())
        if key in bag.files or any(e.file == key for e in bag.errors):
            continue  # named twice, or in a folder named too
        if not (path.is_file() and path.suffix == ".py"):
            why = "not a .py file" if path.exists() else "no such file or folder"
            bag.errors.append(ImportFailure(key, None, why, ""))
            continue
        dags, failure = load_file(path)
        if failure is not None:
            bag.errors.append(failure)
        else:
            _add(bag, key, dags)
    bag.errors.extend(plugins.errors)
    return bag


def find(bag: DagBag, dag_id: str) -> DAG:
    """One DAG of the bag, or a refusal that says where it was looked for."""
    if dag_id not in bag.dags:
        hint = (f" ({len(bag.errors)} file(s) failed to import; see `dagd dags errors`)"
                if bag.errors else "")
        raise NotFound(f"no such DAG in {bag.folder}{hint}", dag_id=dag_id)
    return bag.dags[dag_id]


def shown(file: str) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    try:
        return str(Path(file).relative_to(Path.cwd().resolve()))
    except ValueError:
        return file


def own_words(failure: ImportFailure) -> str:
    """The error's message without the location it may start with (a `DagdError` names
    its file and line): the line printed for it already starts there."""
    for where in (f"{failure.file}:{failure.line}", failure.file):
        for sep in (", ", ": "):
            if failure.message.startswith(where + sep):
                return failure.message[len(where + sep):]
    return failure.message


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def report(bag: DagBag, console: Console, *, took: float) -> int:
    """`file:line: ok: DAG 'id', N tasks` per DAG, `file:line: error: ...` per import
    error and `file: warning: ...` per warning, like a compiler; then a summary. 1 if
    anything failed (a warning alone does not), else 0."""

    def say(text: str) -> None:  # one line each, whatever the terminal's width
        console.print(text, highlight=False, soft_wrap=True)

    for dag_id in sorted(bag.dags):
        d = bag.dags[dag_id]
        file = shown(d.fileloc or "?")
        where = f"{file}:{d.lineno}" if d.lineno else file
        say(f"{escape(where)}: [green]ok[/]: DAG {escape(repr(dag_id))}, "
            f"{_plural(len(d.tasks), 'task')}")
    errors = [e for e in bag.errors if not is_warning(e)]
    warnings = [e for e in bag.errors if is_warning(e)]
    for e in errors + warnings:
        where = f"{shown(e.file)}:{e.line}" if e.line else shown(e.file)
        words = own_words(e)
        kind = "[red]error[/]"
        if is_warning(e):
            words, kind = words.removeprefix("warning: "), "[yellow]warning[/]"
        first, *rest = words.splitlines() or [""]
        say(f"{escape(where)}: {kind}: {escape(first)}")
        for more in rest:
            say(f"    {escape(more)}")
    summary = _plural(len(errors), "error") if errors else "no errors"
    if warnings:
        summary += f", {_plural(len(warnings), 'warning')}"
    say(f"{_plural(len(bag.dags), 'DAG')}, {summary} ({took:.2f}s)")
    return 1 if errors else 0


def is_warning(failure: ImportFailure) -> bool:
    """A helper module that an installed one shadows: worth saying, not a failure."""
    return failure.message.startswith("warning: ")


def check(settings: Settings, paths: Sequence[Path], console: Console) -> int:
    """`dagd dags check [PATH...]`: never touches the data directory or a daemon."""
    start = time.perf_counter()
    bag = load_paths(settings, paths) if paths else load_dags(settings)
    return report(bag, console, took=time.perf_counter() - start)
