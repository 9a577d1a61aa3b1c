"""DaskExecutor: runs the attempts of `executor="dask"` tasks on a Dask cluster.

The daemon stays the one place where state lives: this module writes no rows. It holds
an asynchronous `distributed.Client` in the daemon's event loop (and, for
`address = "local"`, the `LocalCluster` it starts and stops), submits each attempt with
a key made of the attempt's id (`dagd-NS-attempt-ID`, NS naming this database, so that
two daemons sharing a cluster never meet), and turns what comes back into an
`AttemptResult`; the scheduler commits it and this module writes the attempt's log.
The worker side is `dagd.executors.dask_worker`: the task runs from the DAG file's text
in a warm dagd worker process on the Dask worker, which is killed at the timeout.

Faults, each said in the attempt's log or the daemon's:
- the scheduler cannot be reached (at the start or later): `problem` says why, and
  the scheduler holds this executor's tasks back as `queued` (local ones run on);
  attempts in flight when the connection went are sent again, with the same key,
  once it is back;
- a worker that dies mid-attempt: Dask would run the attempt again elsewhere by itself
  (`allowed-failures`) and dagd would then retry it too, multiplying the tries; so an
  attempt runs once: a second start is stopped at once and the attempt fails as
  crashed, naming the worker that died, and the task's own retries decide. A
  LocalCluster is started with `allowed-failures = 0`, which says the same to Dask;
- the daemon killed with attempts in flight: at the next start recovery fails them
  ("daemon restarted") like local ones, and `release` stops what still runs of them
  on the workers and releases their keys on the scheduler.

`distributed` is imported only when a cluster is configured (`pip install 'dagd[dask]'`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from dagd.config_dask import LOCAL, security_args
from dagd.errors import DagdError
from dagd.executors.base import AttemptResult, AttemptSpec
from dagd.executors.dask_worker import TOPIC, run_attempt, stop_attempts
from dagd.executors.logs import AttemptLog

if TYPE_CHECKING:
    from dagd.config import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds for one try to reach the scheduler
RETRY_MAX = 10.0  # seconds between tries to reach it, at most
# `distributed` tells no one when its client loses the scheduler (it reconnects, or
# closes, on its own): its status is looked at this often.
WATCH_EVERY = 0.5
EXTRA = "pip install 'dagd[dask]'"


class DaskMissing(DagdError):
    """`distributed` is not installed."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise DaskMissing(f"executor=\"dask\" needs Dask's distributed package: {EXTRA}"
                          ) from None
    return distributed


def namespace(settings: Settings) -> str:
    """A short name for this daemon's database, the same across restarts: its machine,
    path and file (a database made anew at the same path counts its attempts from 1
    again, and must not meet the keys of the one before)."""
    path = settings.db_path.resolve()
    where = f"{socket.gethostname()}:{path}"
    with contextlib.suppress(OSError):
        found = os.stat(path)
        where += f":{found.st_dev}:{found.st_ino}"
    return hashlib.blake2b(where.encode(), digest_size=6).hexdigest()


@dataclass(eq=False)
class _Flight:
    """One submission of an attempt to the cluster."""

    spec: AttemptSpec
    key: str
    future: Any
    client: Any
    done: asyncio.Future[tuple[str, Any]]
    workers: list[str] = field(default_factory=list)  # where it started, in order


class DaskExecutor:
    def __init__(self, settings: Settings, *, on_worker: Callable[[int, str], None],
                 on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.address = settings.dask_address
        self.ns = namespace(settings)
        self.on_worker = on_worker  # told where each attempt runs (the engine records it)
        self.on_change = on_change  # told when the cluster is reached or lost
        self.client: Any = None
        self.cluster: Any = None
        # Why attempts cannot be sent now; None while connected.
        self.problem: str | None = f"connecting to the Dask scheduler at {self.address}"
        self._ready = asyncio.Event()
        self._flights: dict[str, _Flight] = {}
        self._stale: set[int] = set()  # attempts of a dead daemon, to stop and release
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None

    def key(self, attempt_id: int) -> str:
        return f"dagd-{self.ns}-attempt-{attempt_id}"

    # -- the connection ------------------------------------------------------------------
    def start(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name="dask client")

    async def _supervise(self) -> None:
        delay = 0.5
        while True:
            try:
                client = await self._connect()
            except DaskMissing as exc:
                self._lost(str(exc))
                log.error("%s", exc)
                return
            except Exception as exc:  # OSError, TimeoutError, a TLS error: try again
                self._lost(f"the Dask scheduler at {self.address} cannot be reached "
                           f"({type(exc).__name__}: {exc})")
                await anyio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = 0.5
            self.client = client
            self._reached()
            await self._watch(client)
            self._lost(f"the connection to the Dask scheduler at {self.address} was lost")
            self.client = None
            with anyio.move_on_after(5.0, shield=True):
                await client.close()

    async def _connect(self) -> Any:
        distributed = _distributed()
        address = self.address
        if address == LOCAL:
            if self.cluster is None:
                self.cluster = await self._local_cluster(distributed)
            address = self.cluster.scheduler_address
        args = security_args(self.settings)
        security = distributed.Security(**args) if args else None
        return await distributed.Client(address, asynchronous=True, timeout=CONNECT_TIMEOUT,
                                        security=security, set_as_default=False,
                                        name=f"dagd-{self.ns}")

    async def _local_cluster(self, distributed: Any) -> Any:
        import dask

        s = self.settings
        workers = s.dask_n_workers or max(2, os.cpu_count() or 2)
        # A worker that dies fails its attempt at once; dagd's retries decide the rest.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            return await distributed.LocalCluster(
                n_workers=workers, threads_per_worker=s.dask_threads_per_worker,
                memory_limit=s.dask_memory_limit or "auto", processes=True,
                dashboard_address=None, asynchronous=True)

    async def _watch(self, client: Any) -> None:
        """Until the client closes: a client reconnecting to its scheduler holds this
        executor's tasks back until it is connected again."""
        status = "running"
        while True:
            await anyio.sleep(WATCH_EVERY)
            now = client.status
            if now == status:
                continue
            status = now
            if now == "running":
                self._reached()
            elif now in ("connecting", "newly-created"):
                self._lost(f"the connection to the Dask scheduler at {self.address} was "
                           "lost; reconnecting")
            else:
                return

    def _reached(self) -> None:
        client = self.client
        client.subscribe_topic(TOPIC, self._on_event)
        log.info("Dask scheduler reached at %s: tasks with executor=\"dask\" run there",
                 client.scheduler.address)
        self.problem = None
        self._ready.set()
        if self._stale:
            self._spawn(self._release_stale())
        self.on_change()

    def _lost(self, why: str) -> None:
        if self.problem != why:
            log.warning("%s: tasks with executor=\"dask\" wait queued until it can be "
                        "reached; local tasks run on", why)
        self.problem = why
        self._ready.clear()
        self.on_change()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({self._supervisor})
        with anyio.CancelScope(shield=True), anyio.move_on_after(10.0):
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5.0)
            if self.client is not None:
                await self.client.close()
            if self.cluster is not None:
                await self.cluster.close()
        self.client = self.cluster = None

    # -- what a dead daemon left ---------------------------------------------------------
    def release(self, attempt_ids: list[int]) -> None:
        """Attempts a dead daemon left on the cluster: stop them on the workers and
        release their keys, once connected."""
        self._stale.update(attempt_ids)
        if self.problem is None:
            self._spawn(self._release_stale())

    async def _release_stale(self) -> None:
        ids, self._stale = sorted(self._stale), set()
        client = self.client
        if not ids or client is None:
            return
        distributed = _distributed()
        try:
            stopped = await client.run(stop_attempts, [self.key(i) for i in ids],
                                       on_error="ignore")
            futures = [distributed.Future(self.key(i), client) for i in ids]
            await client.cancel(futures, force=True, reason="dagd restarted")
        except Exception as exc:
            log.warning("could not release the Dask keys a previous daemon left: %s", exc)
            return
        running = sum(n for n in (stopped or {}).values() if isinstance(n, int))
        log.info("released %d attempt key(s) a previous daemon left on the Dask cluster "
                 "(%d still running there, now stopped)", len(ids), running)

    # -- an attempt ----------------------------------------------------------------------
    def _payload(self, spec: AttemptSpec) -> dict[str, Any]:
        task = spec.task
        return {
            "key": self.key(spec.attempt_id), "attempt_id": spec.attempt_id,
            "run_id": spec.run_id, "dag_id": spec.dag_id, "task_id": spec.task_id,
            "try_number": spec.try_number, "map_index": spec.map_index,
            "dag_file": spec.dag_file, "dag_source": task.dag.source,
            "context": spec.context.to_json(), "timeout": spec.timeout,
            "isolation": "fresh" if spec.isolation == "fresh" else "process",
            "inherit_env": bool(task.inherit_env),
            "memory_limit": getattr(task, "memory_limit", None),
            "log_max_bytes": self.settings.log_max_bytes,
            "xcom_max_bytes": self.settings.xcom_max_bytes,
        }

    def _submit(self, spec: AttemptSpec, payload: dict[str, Any]) -> _Flight:
        key = payload["key"]
        future = self.client.submit(run_attempt, payload, key=key, pure=False,
                                    resources=spec.task.resources or None)
        flight = _Flight(spec, key, future, self.client,
                         asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        self._spawn(self._outcome(flight))
        return flight

    async def _outcome(self, flight: _Flight) -> None:
        distributed = _distributed()
        try:
            outcome: tuple[str, Any] = ("done", await flight.future)
        except distributed.client.FutureCancelledError as exc:
            # Its client lost the scheduler (and maybe gave up on it and closed): sent
            # again once connected. dagd's own stops never come back here.
            lost = (exc.reason == "scheduler-connection-lost"
                    or flight.client.status != "running")
            outcome = ("lost" if lost else "cancelled", exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # KilledWorker, a comm error, ...
            outcome = ("error", exc)
        if not flight.done.done():
            flight.done.set_result(outcome)

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A worker starts an attempt (the `dagd` topic)."""
        msg = event[1] if isinstance(event, tuple | list) and len(event) == 2 else None
        if not isinstance(msg, dict):
            return
        flight = self._flights.get(str(msg.get("key")))
        worker = str(msg.get("worker"))
        if flight is None:
            return
        flight.workers.append(worker)
        if len(flight.workers) == 1:
            self.on_worker(flight.spec.attempt_id, worker)
            return
        if not flight.done.done():  # Dask ran it again: its first worker died
            flight.done.set_result(("rerun", None))
        self._spawn(self._stop(flight, [worker]))

    async def _stop(self, flight: _Flight, workers: list[str]) -> None:
        """Stop a flight on the cluster: its key released, its process killed."""
        self._flights.pop(flight.key, None)
        client = self.client
        if client is None:
            return
        with anyio.move_on_after(10.0):
            try:
                await client.cancel([flight.future], force=True, reason="stopped by dagd")
                # Not started yet: every worker is told, so that it never starts there
                # (the scheduler may have sent it to one a moment ago).
                await client.run(stop_attempts, [flight.key], workers=workers or None,
                                 on_error="ignore")
            except Exception as exc:
                log.warning("%s: could not stop it on the Dask cluster: %s", flight.spec.ref,
                            exc, extra=flight.spec.log_extra)

    async def execute(self, spec: AttemptSpec) -> AttemptResult:
        attempt_log = AttemptLog(spec.log_path, self.settings.log_max_bytes)
        try:
            payload = self._payload(spec)
            while True:
                await self._ready.wait()
                flight = self._submit(spec, payload)
                try:
                    kind, value = await flight.done
                except BaseException:  # stopped (marked, timed out run, daemon stop)
                    self._spawn(self._stop(flight, flight.workers))
                    raise
                if kind != "lost":
                    self._flights.pop(flight.key, None)
                    return self._result(spec, kind, value, flight, attempt_log)
                self._flights.pop(flight.key, None)
                attempt_log.write(f"[dagd] {spec.ref}: the connection to the Dask scheduler "
                                  f"was lost; sent again once it is back\n")
        finally:
            attempt_log.close()

    def _result(self, spec: AttemptSpec, kind: str, value: Any, flight: _Flight,
                attempt_log: AttemptLog) -> AttemptResult:
        first = flight.workers[0] if flight.workers else "?"
        if kind == "done" and isinstance(value, dict):
            worker = str(value.get("worker") or first)
            if not flight.workers:
                self.on_worker(spec.attempt_id, worker)
            attempt_log.write(f"[dagd] {spec.ref} ran on the Dask worker {worker}\n")
            attempt_log.write(value.get("log") or "")
            return AttemptResult(
                spec=spec, ok=bool(value.get("ok")), xcom=value.get("xcom"),
                error=value.get("error"), error_names=list(value.get("error_names") or []),
                reason=str(value.get("reason") or ""), retry_after=value.get("retry_after"))
        if kind == "rerun":
            error = (f"crashed: the Dask worker {first} running this attempt died; Dask "
                     f"started it again on {flight.workers[-1]}, where dagd stopped it (an "
                     "attempt runs once: the task's retries decide what follows)")
        elif kind == "error" and type(value).__name__ == "KilledWorker":
            error = f"crashed: the Dask worker {first} running this attempt died ({value})"
        elif kind == "error":
            error = f"the Dask cluster could not run it: {type(value).__name__}: {value}"
        else:
            error = f"cancelled on the Dask cluster: {value}"
        attempt_log.write(f"[dagd] {spec.ref}: {error}\n")
        return AttemptResult.failure(spec, error=error,
                                     reason="crashed" if "crashed" in error else "dask")
