"""The worker process: runs one attempt of a sync Python task, isolated from the daemon.

Started as `python -P -m dagd.executors.worker` with its spec as JSON on stdin. It imports
the DAG file itself (its folder goes on sys.path after the installed modules, as in the
daemon; -P keeps the working directory off it, so a DAGs folder's `http.py` cannot stand
in for the standard module even when the daemon runs inside that folder), calls the
task, prints to stdout/stderr (a pipe to the daemon, which writes the attempt's capped
log), and writes its result as JSON to the path given. It dies with the daemon
(PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import orjson


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the daemon died before prctl took effect
        os._exit(1)


def _write_result(path: str, result: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(result))
    os.replace(tmp, path)


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
    from dagd.retry import exception_names

    try:
        dag = find_dag(Path(spec["dag_file"]), spec["dag_id"], spec.get("dag_source"))
        task = dag.get_task(spec["task_id"])
        ctx = Context.from_json(spec["context"])
        set_current_context(ctx)
        value = task.call_sync(ctx)
        xcom = encode_xcom(value, spec["xcom_max_bytes"])
    except BaseException as exc:  # the task's own failure, reported, not raised
        traceback.print_exc()
        sys.stderr.flush()
        _write_result(
            spec["result_path"],
            {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "error_names": exception_names(type(exc)),
            },
        )
        return 1
    sys.stdout.flush()
    _write_result(spec["result_path"], {"ok": True, "xcom": xcom})
    return 0


if __name__ == "__main__":
    sys.exit(main())
