"""The daemon's lifecycle: one task group, signals, ordered start and shutdown.

Start: lock the data directory, open the store (migrations), load the DAGs, recover
what a previous daemon left, start the web server, then say ready.
SIGTERM/SIGINT stop gracefully (a second one forces); SIGHUP reloads the DAGs.
Shutdown (the drain): triggers, then the grace period for running attempts with the
web server still up (new work answered 503 + Retry-After: dagd.web.drain), cancel the
rest (recorded as interrupted, retried at the next start), close the web server, the
callbacks and the outbox in what is left, close the store, release the lock: within
the grace period + 2 s (AFTER_GRACE and the engine's STOP_KILL/STOP_ABANDON).

A thread task still running then (abandoned at its timeout or at the stop: a thread
cannot be killed) must neither keep the process alive past the grace period nor run
on without the lock: the daemon names it and exits at once (`os._exit`), the lock held
until the process is gone. A fatal signal (a segfault in a thread task's C code) leaves
a crash report in the data directory, for the next start's recovery to read.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import anyio
from aiohttp import web
from anyio.abc import TaskStatus
from watchfiles import awatch

import dagd
from dagd import plugins, systemd
from dagd.authoring.loader import DagBag, load_folder
from dagd.config import Settings
from dagd.errors import ConfigError, DagdError
from dagd.executors.logs import LOG_SECRETS, configured_secrets, install_capture, mask_text
from dagd.executors.watchdog import LoopWatchdog
from dagd.kinds.connections import set_connections
from dagd.lock import DataDirLock
from dagd.notify import email
from dagd.notify.outbox import Outbox
from dagd.reload import reload_config
from dagd.scheduler.callbacks import Callbacks
from dagd.scheduler.loop import Engine
from dagd.scheduler.pruner import Pruner
from dagd.scheduler.recovery import crash_report_path
from dagd.store import Store
from dagd.supervise import Supervisor
from dagd.triggers.service import TriggerService
from dagd.web import auth
from dagd.web.app import create_app

log = logging.getLogger(__name__)

# At a stop, past the grace period: seconds for the rest (attempts stopped and recorded,
# the web server closed, callbacks and the outbox), so that the exit comes within the
# grace period plus two seconds. WEB_CLOSE: what an open request gets at the server's
# close (aiohttp waits up to twice that, by default 60 s each).
AFTER_GRACE = 1.5
WEB_CLOSE = 0.25


async def sync_dags(store: Store, bag: DagBag, known: set[str],
                    secrets: list[str] | None = None) -> None:
    """The loaded DAGs and the import errors, in the store; a secret a DAG file's error
    shows (its message, its traceback) is masked before it is written."""
    hide = secrets or []
    await store.sync_dags(
        [d.describe() for d in bag.dags.values()],
        [
            {"file": e.file, "line": e.line, "message": mask_text(e.message, hide),
             "traceback": mask_text(e.traceback, hide) if e.traceback else e.traceback}
            for e in bag.errors
        ],
        known_ids=known,
    )
    for error in bag.errors:
        where = f"{error.file}:{error.line}" if error.line else error.file
        log.error("import error in %s: %s", where, error.message)


def _keep_private(data_dir: Path) -> None:
    """The data directory (the database, every attempt's log, the users file) is its
    owner's alone: 0700, when this user owns it."""
    try:
        st = data_dir.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            data_dir.chmod(0o700)
            log.info("%s made private to its owner (mode 0700)", data_dir)
    except OSError as exc:  # a read-only mount, another owner: say so, carry on
        log.warning("cannot make %s private to its owner: %s", data_dir, exc)


def set_connections_of(settings: Settings) -> None:
    set_connections(settings.connections)
    log.info("connections: %s", ", ".join(sorted(settings.connections)) or "none")


def keep_last_good(old: DagBag | None, new: DagBag) -> DagBag:
    """A file that fails to import keeps the DAGs it defined in its last good version."""
    if old is None:
        return new
    for error in new.errors:
        for dag_id in old.files.get(error.file, []):
            if dag_id in old.dags and dag_id not in new.dags:
                new.dags[dag_id] = old.dags[dag_id]
                new.files.setdefault(error.file, []).append(dag_id)
                log.warning("%s: keeping the last good version of DAG %s", error.file, dag_id)
    return new


def _py_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Each .py file below `folder`, by path: (modified time in ns, size)."""
    found: dict[str, tuple[int, int]] = {}
    for path in folder.rglob("*.py"):
        with contextlib.suppress(OSError):  # gone meanwhile
            info = path.stat()
            found[str(path)] = (info.st_mtime_ns, info.st_size)
    return found


class DagFolder:
    """The DAGs folder as the daemon sees it: loaded, merged with the last good versions,
    recorded in the store, handed to the engine and the triggers. Reloaded on change."""

    def __init__(self, settings: Settings, store: Store, engine: Engine,
                 triggers: TriggerService | None = None) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.triggers = triggers
        self.bag: DagBag | None = None
        self.on_load: list[Callable[[], None]] = []  # told once new DAGs are handed over
        self._lock = anyio.Lock()
        self.stop_watching = anyio.Event()
        # The DAG files as the last load found them (see `watch`).
        self._seen: dict[str, tuple[int, int]] = {}

    def configure(self, settings: Settings) -> None:
        """Reloaded settings: the secrets to mask (SMTP, connections) at the next load."""
        self.settings = settings

    async def load(self) -> DagBag:
        async with self._lock:
            # Plugins first: DAG files import what they offer. A broken one is reported
            # beside the DAG files' import errors.
            await anyio.to_thread.run_sync(plugins.load, self.settings.plugins_folder)
            seen = await anyio.to_thread.run_sync(_py_files, self.settings.dags_folder)
            new = await anyio.to_thread.run_sync(load_folder, self.settings.dags_folder)
            new.errors.extend(plugins.errors)
            bag = keep_last_good(self.bag, new)
            known = {d.dag_id for d in await self.store.list_dags()}
            secrets = configured_secrets(self.settings, bag.dags.values())
            LOG_SECRETS.secrets = secrets  # the daemon's own log masks them too
            await sync_dags(self.store, bag, known, secrets)
            paused = {d.dag_id for d in await self.store.list_dags() if d.is_paused}
            self.engine.set_dags(bag.dags, paused)
            if self.triggers is not None:
                self.triggers.update()
            for listener in self.on_load:
                listener()
            self.bag = bag
            self._seen = seen
            log.info("loaded %d DAG(s) from %s, %d import error(s)", len(bag.dags),
                     self.settings.dags_folder, len(bag.errors))
            return bag

    async def watch(self) -> None:
        """Reload when a .py file in the folder is added, changed or deleted."""
        folder = self.settings.dags_folder
        await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        # Our own stop event: the watcher's thread sees it within `step` ms at shutdown.
        # yield_on_timeout: the first yield, at the latest after rust_timeout, says the
        # watch is armed; a file written between the last load and then made no event,
        # so the folder is compared with what that load found. Later empty yields cost
        # a wake-up a second.
        armed = False
        async for changes in awatch(folder, debounce=100, step=100, rust_timeout=1000,
                                    yield_on_timeout=True, stop_event=self.stop_watching,
                                    watch_filter=lambda _change, path: path.endswith(".py")):
            if not changes:
                if armed:
                    continue
                armed = True
                if await anyio.to_thread.run_sync(_py_files, folder) == self._seen:
                    continue
                log.info("DAG files changed while the watcher was starting: reloading")
            else:
                armed = True
                log.info("DAG files changed (%s): reloading",
                         ", ".join(sorted(Path(p).name for _, p in changes)))
            try:
                await self.load()
            except Exception:
                log.exception("reloading the DAGs failed; keeping the loaded ones")


class Daemon:
    def __init__(self, settings: Settings, *, exit_holding_lock: bool = False) -> None:
        self.settings = settings
        # Keys changed on disk that only a restart applies: field -> the value there.
        self.pending: dict[str, object] = {}
        # `dagd run`: after a stop, end the process still holding the lock, so that no
        # other daemon can take the data directory while this one still exists.
        self.exit_holding_lock = exit_holding_lock
        self.port = settings.port
        self._stop = anyio.Event()
        self._force = False
        self._engine: Engine | None = None
        # What takes reloaded settings (SIGHUP), each told the new running ones.
        self._configurables: list[Callable[[Settings], None]] = [
            set_connections_of, email.configure]

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, on_ready: Callable[[Daemon], None] | None = None) -> None:
        settings = self.settings
        lock = DataDirLock(settings.lock_path)
        # A CLI command may hold the lock for a moment (an offline trigger, a probe).
        await anyio.to_thread.run_sync(lambda: lock.acquire(patience=5.0))
        try:
            await self._run(lock, on_ready)
        except BaseException as exc:
            if self._engine is not None and self._engine.executor.threads:
                # The exit below skips the traceback the caller would print: log it.
                log.critical("dagd stopped on an error: %s", exc, exc_info=exc)
            self._exit_if_threads_remain(1)
            raise
        else:
            self._exit_if_threads_remain(0)
            if self.exit_holding_lock:
                lock.unpublish()
                _exit_now(0)
        finally:
            lock.release()

    def _exit_if_threads_remain(self, code: int) -> None:
        """Exit now, still holding the lock, if thread tasks still run (abandoned at
        their timeout or at the stop): Python cannot stop them, and they must neither
        hold the exit up nor run on once another daemon may have the data directory."""
        running = list(self._engine.executor.threads.values()) if self._engine else []
        # Async tasks that ignored their cancellation at the stop: the same way out.
        ignoring = self._engine.abandoned_attempts if self._engine else []
        if not running and not ignoring:
            return
        if running:
            log.warning("exiting with %d thread task(s) still running, abandoned (a thread "
                        "cannot be stopped; it ends with the process): %s", len(running),
                        ", ".join(spec.ref for spec in running))
        if ignoring:
            log.warning("exiting with %d task(s) that ignored their cancellation, "
                        "abandoned: %s", len(ignoring), ", ".join(ignoring))
        _exit_now(code)

    async def _run(self, lock: DataDirLock, on_ready: Callable[[Daemon], None] | None) -> None:
        settings = self.settings
        _keep_private(settings.data_dir)
        store = await Store.open(settings.db_path, synchronous=settings.synchronous,
                                 sized_wal=True)
        reader: Store | None = None
        callbacks_reader: Store | None = None
        runner: web.AppRunner | None = None
        watchdog: LoopWatchdog | None = None
        crash_report: IO[str] | None = None
        try:
            log.info("dagd %s, Python %s, SQLite %s, database %s", dagd.__version__,
                     sys.version.split()[0], await store.sqlite_version(), settings.db_path)
            install_capture()
            set_connections(settings.connections)  # for tasks that name a connection
            engine = self._engine = Engine(store, settings)
            engine.executor.start()  # the worker pool warms up while the DAGs load
            executor = engine.executor
            watchdog = LoopWatchdog(lambda: [spec.ref for spec in list(executor.in_loop.values())])
            executor.on_loop_attempt = watchdog.attempt_started
            watchdog.start()
            email.configure(settings)
            outbox = Outbox(store, lambda: engine.dags)
            engine.notification_listeners.append(outbox.wake)
            supervisor = Supervisor()
            triggers = TriggerService(engine.intake, engine.changes, supervisor=supervisor)
            folder = DagFolder(settings, store, engine, triggers)
            systemd.status("loading DAGs")
            await folder.load()
            await engine.boot(on_found=lambda n: systemd.status(f"recovering {n} attempts"))
            crash_report = self._report_crashes()
            reader = await Store.open(settings.db_path, readonly=True)
            # Subscribed now, before the engine serves: a recovered run may end at once.
            callbacks_reader = await Store.open(settings.db_path, readonly=True)
            callbacks = Callbacks(callbacks_reader, engine.changes, lambda: engine.dags,
                                  timeout=settings.callback_timeout)
            folder.on_load.append(callbacks.update)
            self._configurables += [engine.configure, outbox.configure, folder.configure,
                                    callbacks.configure]
            app = create_app(engine, reader, supervisor=supervisor)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=WEB_CLOSE)
            await runner.setup()
            site = web.TCPSite(runner, settings.host, settings.port)
            try:
                await site.start()
            except OSError as exc:  # port taken, address not ours: a refusal, not a crash
                raise ConfigError(f"cannot serve the API: {exc.strerror or exc}",
                                  field="server.port") from None
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                self.port = server.sockets[0].getsockname()[1]
            lock.publish(settings.host, self.port)
            self._announce_auth(app)
            async def scheduler(*, task_status: TaskStatus[None]) -> None:
                try:
                    await engine.serve(task_status=task_status)
                finally:
                    # The scheduler ended (a failure, or the stop): the file watchers'
                    # threads must return now, not at their next timeout.
                    folder.stop_watching.set()
                    triggers.stop_watching()

            async with anyio.create_task_group() as tg:
                await tg.start(scheduler, name="scheduler")
                tg.start_soon(self._signals, folder, engine, name="signals")
                outbox_scope = anyio.CancelScope()
                keep = supervisor.keep
                tg.start_soon(_scoped, outbox_scope, lambda: keep("outbox", outbox.run),
                              name="outbox")
                callbacks_scope = anyio.CancelScope()
                tg.start_soon(_scoped, callbacks_scope,
                              lambda: keep("callbacks", callbacks.run), name="callbacks")
                # [retention]: pruned in short transactions; stopped with the triggers.
                pruner = Pruner(store, settings, holds=engine.holds, changes=engine.changes)
                self._configurables.append(pruner.configure)
                retention_scope = anyio.CancelScope()
                tg.start_soon(_scoped, retention_scope, lambda: keep("retention", pruner.run),
                              name="retention")
                # Triggers stop first at shutdown: no new event once stopping has begun.
                trigger_scopes = (anyio.CancelScope(), anyio.CancelScope())
                tg.start_soon(_scoped, trigger_scopes[0], triggers.run, name="triggers")
                tg.start_soon(_scoped, trigger_scopes[1],
                              lambda: keep("DAG folder watcher", folder.watch),
                              name="DAG folder watcher")
                await triggers.armed.wait()  # READY=1 only once the triggers are armed
                systemd.ready(self._serving())
                tg.start_soon(systemd.keep_watchdog, name="systemd watchdog")
                folder.on_load.append(lambda: systemd.status(self._serving()))  # DAG count
                log.info("dagd ready: http://%s:%d", settings.host, self.port)
                if on_ready is not None:
                    on_ready(self)
                await self._stop.wait()
                systemd.stopping(f"draining: {engine.runs.running_total} attempts running")
                folder.stop_watching.set()
                triggers.stop_watching()
                for scope in (*trigger_scopes, retention_scope):
                    scope.cancel()
                # The settings now running: SIGHUP may have changed the grace period
                # and the callbacks' timeout since the start.
                running = self.settings
                grace = 0.0 if self._force else running.shutdown_grace_period
                exit_by = anyio.current_time() + grace + AFTER_GRACE
                log.info("stopping: up to %gs for running tasks; new work (webhooks, "
                         "manual runs) is answered 503 with Retry-After", grace)
                # The web server stays up while the attempts finish: what would start
                # work gets 503 + Retry-After (dagd.web.drain), a sender retries.
                await engine.stop(grace)
                await runner.cleanup()  # its shutdown_timeout bounds open requests
                runner = None
                # The callbacks of the runs' last changes, the outbox: what time is left.
                await callbacks.drain(min(running.callback_timeout,
                                          _time_left(exit_by, self._force)))
                callbacks_scope.cancel()
                outbox_scope.cancel()
                await outbox.flush(_time_left(exit_by, self._force))
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if runner is not None:
                    await runner.cleanup()
                if reader is not None:
                    await reader.close()
                if callbacks_reader is not None:
                    await callbacks_reader.close()
                if self._engine is not None:  # stopped before it served (a port taken)
                    await self._engine.executor.aclose()
                await store.close()
            if watchdog is not None:
                watchdog.stop()
            if crash_report is not None:
                faulthandler.disable()
                crash_report.close()
                crash_report_path(settings.data_dir).unlink(missing_ok=True)
            log.info("dagd stopped")

    def _serving(self) -> str:
        """systemd's STATUS= line while the daemon serves."""
        dags = len(self._engine.dags) if self._engine is not None else 0
        return f"serving on http://{self.settings.host}:{self.port} ({dags} DAGs)"

    def _announce_auth(self, app: web.Application) -> None:
        """With auth off on a reachable address, a warning; with no user yet, the
        one-time login link (the one secret the log carries, on purpose, used once)."""
        settings = self.settings
        if not settings.auth_enabled:
            if settings.host not in ("127.0.0.1", "::1", "localhost"):
                log.warning("authentication is off ([auth] enabled = false) and the API "
                            "listens on %s: anyone who reaches port %d may do anything",
                            settings.host or "every address", self.port)
            return
        url = auth.first_login_url(app, settings.host, self.port)
        if url is not None:
            log.info("no user yet: log in at %s (once; `dagd users add` makes users)", url)

    def _report_crashes(self) -> IO[str] | None:
        """A fatal signal (a segfault in a thread task's C code) writes the tracebacks of
        every thread into the data directory, for the next start to report. Not when
        faulthandler is already on (PYTHONFAULTHANDLER, a test runner): theirs stays."""
        if faulthandler.is_enabled():
            return None
        report = open(crash_report_path(self.settings.data_dir), "w")
        faulthandler.enable(report, all_threads=True)
        return report

    async def _signals(self, folder: DagFolder, engine: Engine) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    systemd.reloading()
                    log.info("SIGHUP: reloading the connections and the DAGs")
                    await self._reload_config()
                    try:
                        await folder.load()
                    except DagdError as exc:  # a full disk, say: keep what is loaded
                        log.error("SIGHUP: reloading the DAGs failed: %s; keeping the "
                                  "loaded ones", exc)
                    systemd.ready(self._serving())
                elif not self._stop.is_set():
                    log.info("%s: graceful stop (send again to force)",
                             signal.Signals(signum).name)
                    self._stop.set()
                else:
                    log.warning("%s again: forcing stop", signal.Signals(signum).name)
                    self._force = True
                    engine.interrupt()


    async def _reload_config(self) -> None:
        """The configuration again (file and environment); a bad edit keeps the running
        one. Keys only a restart changes are named in the log (dagd.reload)."""
        outcome = await reload_config(self.settings, self._configure)
        if outcome is not None:
            self.settings = outcome.running
            self.pending = outcome.pending

    def _configure(self, settings: Settings) -> None:
        for configure in self._configurables:
            configure(settings)


def _time_left(until: float, forced: bool) -> float:
    """Seconds left of the stop's budget (none once a second signal forced it)."""
    return 0.0 if forced else max(until - anyio.current_time(), 0.0)


async def _scoped(scope: anyio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()


def _exit_now(code: int) -> None:
    """End the process at once, its log flushed; the kernel releases the lock with it."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
