"""The Dask worker's side of `executor="dask"`: runs the attempts the daemon submits.

`run_attempt` is what the daemon's `DaskExecutor` submits; Dask calls it in one of the
worker's threads with a JSON-ready payload (the DAG file's text and its hash, the task
id, the context). It does not run the task in the Dask worker's own process: it hands
the attempt to a warm worker pool of dagd's own (`dagd.executors.pool`), started once
per Dask worker process in a thread with its own event loop. So an attempt on Dask has
what it has locally: the DAG module kept per source hash (a DAG file edited and
reloaded runs its new text), fds 1 and 2 and logging captured into that attempt's log
alone, `execution_timeout` enforced by killing the attempt's process with its whole
process tree (the Dask worker and its slot carry on), a crash named by its signal. The
pool's processes die with the Dask worker (PR_SET_PDEATHSIG), whatever kills it.

Before it starts, `run_attempt` tells the daemon which worker runs it (a `dagd` event on
the scheduler, which the daemon subscribes to); it returns the result, the XCom as
JSON text, and the log's text, which the daemon writes. `stop_attempts`, called on the
workers by `Client.run`, stops attempts the daemon no longer wants (a person marked the
task, the daemon restarted, Dask ran it again after a worker died).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import tempfile
import threading
from collections import deque
from typing import Any, cast

from dagd.authoring.context import Context
from dagd.executors.base import AttemptSpec
from dagd.executors.pool import PoolLimits, WorkerPool

TOPIC = "dagd"  # the scheduler's event topic: "attempt N started on worker W"
START_TIMEOUT = 120.0  # seconds for the pool's loop thread to start


class _Dag:
    """What the pool reads of a task's DAG: the text the daemon loaded."""

    def __init__(self, source: str | None) -> None:
        self.source = source


class _Task:
    """What the pool reads of a task: its DAG's text and whether it inherits the
    environment (here: the Dask worker's)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.dag = _Dag(payload.get("dag_source"))
        self.inherit_env = bool(payload.get("inherit_env"))


class _Runner:
    """A warm worker pool in a thread of its own, with its own event loop."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.loop = asyncio.new_event_loop()
        self.tasks: dict[str, asyncio.Task[Any]] = {}  # by key
        self.pool: WorkerPool | None = None
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True,
                                       name="dagd worker pool")
        self.thread.start()
        started.wait(START_TIMEOUT)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.pool = WorkerPool(PoolLimits(size=self.size, max_size=self.size * 2),
                               log_max_bytes=10 * 1024 * 1024, xcom_max_bytes=1024 * 1024)
        self.loop.call_soon(started.set)
        self.loop.run_forever()

    async def _execute(self, spec: AttemptSpec, payload: dict[str, Any]) -> dict[str, Any]:
        pool = self.pool
        assert pool is not None
        # The daemon's caps, as each attempt brings them (read as the attempt starts).
        pool.log_max_bytes = int(payload["log_max_bytes"])
        pool.xcom_max_bytes = int(payload["xcom_max_bytes"])
        key = str(payload["key"])
        if key in _STOPPED:  # stopped before it began here
            raise asyncio.CancelledError
        task = asyncio.current_task()
        assert task is not None
        self.tasks[key] = task
        try:
            result = await pool.execute(spec, memory_limit=payload.get("memory_limit"))
        finally:
            self.tasks.pop(key, None)
        return {"ok": result.ok, "xcom": result.xcom, "error": result.error,
                "error_names": result.error_names, "reason": result.reason,
                "retry_after": result.retry_after}

    def run(self, spec: AttemptSpec, payload: dict[str, Any]) -> dict[str, Any]:
        future = asyncio.run_coroutine_threadsafe(self._execute(spec, payload), self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            return {"ok": False, "error": "stopped: the daemon no longer wanted this attempt",
                    "error_names": [], "reason": "stopped"}

    def stop(self, keys: list[str]) -> int:
        """Cancel these attempts in the pool's loop (where they register as they
        start: in the loop, an attempt is either registered or yet to see _STOPPED)."""
        running = sum(1 for key in keys if key in self.tasks)
        self.loop.call_soon_threadsafe(self._cancel, keys)
        return running

    def _cancel(self, keys: list[str]) -> None:
        for key in keys:
            task = self.tasks.get(key)
            if task is not None:
                task.cancel()


_RUNNER: _Runner | None = None
_LOCK = threading.Lock()
# The keys of attempts a daemon stopped, the latest few thousand: one stopped before it
# began on this worker (Dask may start it a moment after the stop) never begins. Keys,
# not attempt ids: several daemons (databases) may share the cluster.
_STOPPED: set[str] = set()
_STOPPED_ORDER: deque[str] = deque()
STOPPED_KEPT = 10_000


def _runner(threads: int) -> _Runner:
    global _RUNNER
    with _LOCK:
        if _RUNNER is None:
            _RUNNER = _Runner(max(threads, 1))
        return _RUNNER


def _spec(payload: dict[str, Any], log_path: str) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=int(payload["attempt_id"]), ti_id=0, run_id=int(payload["run_id"]),
        dag_id=payload["dag_id"], task_id=payload["task_id"],
        try_number=int(payload["try_number"]), task=cast(Any, _Task(payload)),
        context=Context.from_json(payload["context"]), dag_file=payload["dag_file"],
        log_path=log_path, timeout=payload.get("timeout"),
        isolation=payload.get("isolation") or "process",
        map_index=int(payload.get("map_index", -1)),
    )


def run_attempt(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt on this Dask worker: the result, with its log's text and the
    worker's address."""
    from distributed import get_worker

    worker = get_worker()
    address = str(worker.address)
    worker.log_event(TOPIC, {"attempt": payload["attempt_id"], "key": payload["key"],
                             "worker": address, "pid": os.getpid()})
    # In the worker's own scratch space, which Dask clears of a dead worker's files.
    folder = tempfile.mkdtemp(prefix="dagd-attempt-", dir=worker.local_directory)
    log_path = os.path.join(folder, "attempt.log")
    try:
        result = _runner(int(worker.state.nthreads)).run(_spec(payload, log_path), payload)
        try:
            with open(log_path, "rb") as file:
                result["log"] = file.read().decode("utf-8", "replace")
        except FileNotFoundError:  # the attempt wrote nothing
            result["log"] = ""
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["worker"] = address
    return result


def stop_attempts(keys: list[str]) -> int:
    """Stop the attempts of these keys if this worker runs them (their processes are
    killed), and never start them here; how many it ran. Called on the workers by the
    daemon through `Client.run`."""
    with _LOCK:
        for key in keys:
            if key not in _STOPPED:
                _STOPPED.add(key)
                _STOPPED_ORDER.append(key)
        while len(_STOPPED_ORDER) > STOPPED_KEPT:
            _STOPPED.discard(_STOPPED_ORDER.popleft())
        runner = _RUNNER
    return runner.stop(list(keys)) if runner is not None else 0
