"""How a failed attempt reads in its log: the cause on one line, then the traceback of
the user's code without dagd's frames (`format_failure`, for the workers and the local
executor alike). Plain: the worker imports it."""

from __future__ import annotations

import os
import sysconfig
import traceback
from functools import cache

_DAGD = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


@cache
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(os.path.abspath(d) + os.sep for d in dirs)


def _is_dagd(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_DAGD)


def _is_users(filename: str) -> bool:
    """A frame of the user's code: a DAG file, a helper, a plugin (not dagd, not the
    standard library or site-packages, not code without a file such as `<frozen ...>`)."""
    if filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    return not path.startswith(_DAGD) and not path.startswith(_library_dirs())


def _headline(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _links(te: traceback.TracebackException) -> list[traceback.TracebackException]:
    """Every exception of a chain as it is shown (causes, contexts not suppressed,
    exception groups), each once."""
    seen: list[traceback.TracebackException] = []
    todo = [te]
    while todo:
        link = todo.pop()
        if any(link is s for s in seen):
            continue
        seen.append(link)
        context = None if link.__suppress_context__ else link.__context__
        todo.extend(x for x in (link.__cause__, context) if x is not None)
        todo.extend(link.exceptions or ())
    return seen


def _keep_users_frames(link: traceback.TracebackException) -> bool:
    """Cut `link`'s stack to the user's frames: none before the first of them (dagd and
    the async machinery that called the task) and no dagd frame after it (the library
    frames under the user's own calls stay). True if a user frame is left."""
    frames = list(link.stack)
    first = next((i for i, f in enumerate(frames) if _is_users(f.filename)), len(frames))
    kept = [f for f in frames[first:] if not _is_dagd(f.filename)]
    link.stack = traceback.StackSummary.from_list(kept)
    return bool(kept)


def format_failure(exc: BaseException) -> str:
    """An attempt's failure as its log shows it: the cause on the first line, then the
    traceback of the user's code alone.

    dagd's own frames (this worker, the loader, the templates, the executor) say nothing
    to the person who wrote the DAG. With no user frame at all, an exception of dagd's
    own (a template error, a failed shell command) is its one line, which names the DAG,
    the task and the setting; anything else (a bug in dagd) keeps its whole traceback.
    """
    headline = _headline(exc)
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    if not any([_keep_users_frames(link) for link in _links(te)]):
        if type(exc).__module__.startswith("dagd."):
            return headline + "\n"
        full = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return headline + "\n" + "".join(full)
    if not te.stack:
        # The outer exception is dagd's report about the user's (a DAG file that failed
        # to import): the headline says it; the traceback starts at what it reports.
        shown = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
        te = shown if shown is not None else te
    return headline + "\n" + "".join(te.format())
