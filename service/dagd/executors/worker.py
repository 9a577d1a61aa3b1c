"""The worker process: runs one attempt of a sync Python task, isolated from the daemon.

Started as `python -P -m dagd.executors.worker` with its spec as JSON on stdin. It imports
the DAG file itself (its folder goes on sys.path after the installed modules, as in the
daemon; -P keeps the working directory off it, so a DAGs folder's `http.py` cannot stand
in for the standard module even when the daemon runs inside that folder), calls the
task, prints to stdout/stderr (a pipe to the daemon, which writes the attempt's capped
log), and writes its result as JSON to the path given. It dies with the daemon
(PR_SET_PDEATHSIG on Linux).

What the task starts ends with the attempt: the worker is a child subreaper (Linux), so
a process the task started that leaves the group (`setsid`, a double fork) is re-parented
to the worker, not to init, and once the task has returned or raised, the worker ends
every descendant still running (SIGTERM, then SIGKILL) and says so in the log before it
exits. A memory limit (`memory_limit=`) is set on the worker before the task is called;
a MemoryError under it fails the attempt with "memory limit of 512 MB exceeded".

Also how a failed attempt reads in its log (`format_failure`, used by the local executor
too): the cause on one line, then the traceback of the user's code without dagd's frames.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import sysconfig
import traceback
from functools import cache
from pathlib import Path
from typing import Any

import orjson

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE = 1.0  # seconds the task's leftover processes get between SIGTERM and SIGKILL


def _die_with_parent() -> None:
    """Die with the daemon, and adopt the orphans of the task's processes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the daemon died before prctl took effect
        os._exit(1)


def _end_leftovers() -> None:
    """The task has returned or raised: what it started and left running ends now."""
    from dagd.executors.proctree import end_descendants

    left = end_descendants(LEFTOVER_GRACE)
    if left:
        names = ", ".join(f"{pid} ({name})" for pid, name in left[:10])
        more = f" and {len(left) - 10} more" if len(left) > 10 else ""
        sys.stderr.write(f"[dagd] stopped {len(left)} process(es) the task left running: "
                         f"pid {names}{more}\n")
        sys.stderr.flush()


def _write_result(path: str, result: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(result))
    os.replace(tmp, path)


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


def _limit_memory(limit: int) -> None:
    """Cap the memory this process may take: on Linux its data (heap, anonymous maps:
    what a task allocates, not the libraries it maps), elsewhere its address space."""
    import resource

    kind = resource.RLIMIT_AS
    release = os.uname().release.split(".")
    if sys.platform.startswith("linux") and release[0].isdigit():
        # Since Linux 4.7 RLIMIT_DATA counts anonymous maps too (large allocations).
        minor = release[1] if len(release) > 1 and release[1].isdigit() else "0"
        if (int(release[0]), int(minor)) >= (4, 7):
            kind = resource.RLIMIT_DATA
    _soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    # The hard limit too: the task cannot raise it again.
    resource.setrlimit(kind, (limit, limit))


def _report(spec: dict[str, Any], exc: BaseException) -> None:
    from dagd.config import format_bytes
    from dagd.retry import exception_names

    error = f"{type(exc).__name__}: {exc}"
    text = format_failure(exc)
    limit = spec.get("memory_limit")
    if isinstance(exc, MemoryError) and limit:
        error = f"MemoryError: memory limit of {format_bytes(limit)} exceeded"
        text = error + text[text.index("\n"):]
    sys.stderr.write(text)
    sys.stderr.flush()
    _end_leftovers()
    _write_result(spec["result_path"],
                  {"ok": False, "error": error, "error_names": exception_names(type(exc))})


def main() -> int:
    _die_with_parent()
    spec = orjson.loads(sys.stdin.buffer.read())
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from dagd.authoring.context import Context, set_current_context
    from dagd.authoring.loader import find_dag
    from dagd.executors.base import encode_xcom

    try:
        dag = find_dag(Path(spec["dag_file"]), spec["dag_id"], spec.get("dag_source"))
        task = dag.get_task(spec["task_id"])
        ctx = Context.from_json(spec["context"])
        set_current_context(ctx)
        if spec.get("memory_limit"):
            _limit_memory(spec["memory_limit"])
        value = task.call_sync(ctx)
        xcom = encode_xcom(value, spec["xcom_max_bytes"])
    except BaseException as exc:  # the task's own failure, reported, not raised
        _report(spec, exc)
        return 1
    sys.stdout.flush()
    _end_leftovers()
    _write_result(spec["result_path"], {"ok": True, "xcom": xcom})
    return 0


if __name__ == "__main__":
    sys.exit(main())
