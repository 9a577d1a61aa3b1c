"""The trigger service: runs the timers, file watchers and plugin triggers of the DAGs.

Each trigger only delivers events, through the events port (`dagd.events.Events`); run
ends come back through the changes port (a file-drop run's files are moved when it
ends). The service follows the DAGs as they are reloaded: a file watcher whose trigger
is unchanged keeps running; timers restart with the new set. Timers sleep until the
next fire time (recomputed at least every `CLOCK_CHECK` seconds, so a change of the
wall clock is noticed); the last fire time each timer acted on is read back from the
ledger, so a restart or a clock set back never fires one twice. A trigger that fails
is started again by the supervisor, backing off while it keeps failing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from dagd.changes import RUN, Change, Changes, Dropped
from dagd.events import Delivery, Events
from dagd.supervise import Supervisor
from dagd.triggers.base import Trigger
from dagd.triggers.files import FileDrop, FileWatcher, move_run_files
from dagd.triggers.timers import Timer, fire_conf, past_end, resume_from, timers_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dagd.authoring.dag import DAG

log = logging.getLogger(__name__)

CLOCK_CHECK = 30.0  # seconds: the longest a timer sleeps before looking at the clock again
MAX_FIRES_PER_PASS = 1000


@dataclass(frozen=True)
class TimerSpec:
    dag_id: str
    trigger: Timer
    catchup: bool
    end_date: datetime | None = None  # no run of a logical date after it

    def next_fire(self, after: datetime) -> datetime | None:
        """The next fire time after `after`, None when it would be past the end date."""
        fire = self.trigger.next_fire(after)
        return None if past_end(self.trigger, fire, self.end_date) else fire


def timer_specs(dags: Mapping[str, DAG]) -> list[TimerSpec]:
    return [TimerSpec(d.dag_id, t, bool(getattr(d, "catchup", False)),
                      getattr(d, "end_date", None))
            for d in dags.values() for t in timers_of(d.triggers)]


def file_drops(dags: Mapping[str, DAG]) -> dict[FileDrop, list[str]]:
    found: dict[FileDrop, list[str]] = {}
    for d in dags.values():
        for t in d.triggers:
            if isinstance(t, FileDrop):
                found.setdefault(t, []).append(d.dag_id)
    return found


def custom_triggers(dags: Mapping[str, DAG]) -> list[tuple[Trigger, list[str]]]:
    """Plugin triggers, each with the DAGs that list it (the same object in several)."""
    found: dict[int, tuple[Trigger, list[str]]] = {}
    for d in dags.values():
        for t in d.triggers:
            if isinstance(t, Trigger):
                found.setdefault(id(t), (t, []))[1].append(d.dag_id)
    return list(found.values())


class TriggerService:
    def __init__(
        self, events: Events, changes: Changes, *,
        clock: Callable[[], datetime] | None = None, supervisor: Supervisor | None = None,
    ) -> None:
        self.events = events
        self.changes = changes
        self.clock = clock or (lambda: datetime.now(UTC))
        self.supervisor = supervisor or Supervisor()
        self._changed = anyio.Event()
        self._watchers: dict[tuple[FileDrop, tuple[str, ...]],
                             tuple[anyio.CancelScope, FileWatcher]] = {}
        self._hub_folders: frozenset[Path] = frozenset()
        self._hub_scope: anyio.CancelScope | None = None
        self._hub_stop = anyio.Event()
        # Subscribed now, before the engine serves: a recovered run may end at once.
        self._ends = changes.subscribe([RUN])
        # Set once the first DAGs' triggers are in place (the file watcher armed): the
        # daemon says READY=1 after it, so a file dropped from then on is seen.
        self.armed = anyio.Event()

    def update(self) -> None:
        """The DAGs changed: follow them."""
        self._changed.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            self._ends.close()

    async def _run(self, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.supervisor.keep, "file moves", self._moves, name="file moves")
            task_status.started()
            while True:
                self._changed = anyio.Event()
                await self._sync_watchers(tg)
                scheduled = anyio.CancelScope()
                tg.start_soon(self._until_changed, scheduled, name="timers and plugin triggers")
                self.armed.set()
                await self._changed.wait()
                scheduled.cancel()

    async def _until_changed(self, scope: anyio.CancelScope) -> None:
        """Timers and plugin triggers, for the DAGs loaded now (restarted on reload)."""
        keep = self.supervisor.keep
        dags = self.events.dags()
        with scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(keep, "timers", lambda: self._timers(timer_specs(dags)))
                for trigger, dag_ids in custom_triggers(dags):
                    tg.start_soon(keep, f"trigger {trigger.source}",
                                  lambda t=trigger, ids=dag_ids: self._custom(t, ids))

    async def _custom(self, trigger: Trigger, dag_ids: list[str]) -> None:
        async def emit(payload: dict[str, Any] | None = None, *,
                       dedup_key: str | None = None) -> list[Any]:
            conf = dict(payload or {})
            delivery = Delivery(kind=trigger.kind, source=trigger.source, payload=conf,
                                dedup_key=dedup_key)
            return await self.events.deliver(delivery, dag_ids, conf)

        await trigger.watch(emit)

    # -- file drops -----------------------------------------------------------------------
    async def _sync_watchers(self, tg: Any) -> None:
        """One FileWatcher per FileDrop (kept across reloads while unchanged), all fed by
        one shared file-system watcher over their folders: one thread for them all."""
        wanted = {(drop, tuple(ids)) for drop, ids in file_drops(self.events.dags()).items()}
        for key in list(self._watchers):
            if key not in wanted:
                scope, _ = self._watchers.pop(key)
                scope.cancel()
        new = [key for key in wanted if key not in self._watchers]
        for key in new:
            self._watchers[key] = (anyio.CancelScope(),
                                   FileWatcher(key[0], list(key[1]), self.events))
        folders = frozenset(w.root for _, w in self._watchers.values())
        if folders != self._hub_folders:
            if self._hub_scope is not None:
                self._hub_stop.set()
                self._hub_scope.cancel()
            self._hub_stop = anyio.Event()
            self._hub_folders = folders
            self._hub_scope = anyio.CancelScope()
            if folders:
                armed = anyio.Event()
                tg.start_soon(self._hub, folders, self._hub_scope, self._hub_stop, armed,
                              name="file watcher")
                await armed.wait()
                for key, (_, watcher) in self._watchers.items():
                    if key not in new:  # the old hub is gone: look for what it missed
                        await watcher.rescan()
        for key in new:
            scope, watcher = self._watchers[key]
            tg.start_soon(self._watch, watcher, scope, name=f"file drop {key[0].folder}")

    def stop_watching(self) -> None:
        """Before cancelling: let the file watcher's thread return at once."""
        self._hub_stop.set()

    async def _hub(self, folders: frozenset[Path], scope: anyio.CancelScope,
                   stop: anyio.Event, armed: anyio.Event) -> None:
        from watchfiles import awatch

        with scope:
            missed = False
            while True:
                for folder in folders:
                    await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
                try:
                    # yield_on_timeout: the first (empty) yield says the watch is armed;
                    # later ones cost one wake-up a second. `stop` ends it at once.
                    async for changes in awatch(*folders, recursive=True, debounce=20, step=25,
                                                watch_filter=None, yield_on_timeout=True,
                                                rust_timeout=1000, stop_event=stop,
                                                ignore_permission_denied=True):
                        armed.set()
                        if missed:  # armed again: now look for what the failed pass lost
                            missed = False
                            for _, watcher in list(self._watchers.values()):
                                await watcher.rescan()
                        if changes:
                            self._dispatch(changes)
                    return  # stopped
                except Exception as exc:
                    # watchfiles drops a batch it cannot decode (a name that is not UTF-8):
                    # watch again, then rescan for what that batch held.
                    log.warning("watching %s: %s; watching again, then rescanning",
                                sorted(map(str, folders)), exc)
                    missed = True
                    armed.set()  # never leave the service waiting on a watcher that failed
                    await anyio.sleep(0.05)

    def _dispatch(self, changes: set[tuple[Any, str]]) -> None:
        for _, watcher in list(self._watchers.values()):
            prefix = f"{watcher.root}{os.sep}"
            mine = {(c, p) for c, p in changes if p.startswith(prefix)}
            if mine:
                watcher.feed(mine)

    async def _watch(self, watcher: FileWatcher, scope: anyio.CancelScope) -> None:
        with scope:
            await self.supervisor.keep(f"file drop {watcher.drop.folder}", watcher.run)

    async def _moves(self) -> None:
        """Move a file-drop run's files when it ends, if its trigger asks for it."""
        while True:
            try:
                await self._follow_run_ends()
            except Dropped:
                log.error("the file mover fell behind; runs that ended meanwhile keep "
                          "their files where they are")
                self._ends = self.changes.subscribe([RUN])

    async def _follow_run_ends(self) -> None:
        while True:
            for change in await self._ends.next():
                if change.detail is None or change.detail.get("run_type") != "file":
                    continue
                try:
                    await self._move_for(change)
                except Exception:
                    log.exception("moving the files of run %d failed", change.id)

    async def _move_for(self, change: Change) -> None:
        assert change.detail is not None and change.dag_id is not None
        dag = self.events.dags().get(change.dag_id)
        conf = change.detail.get("conf") or {}
        if dag is None or not isinstance(conf, dict):
            return
        moved = await anyio.to_thread.run_sync(
            move_run_files, conf, dag.triggers, change.state == "success")
        for path in moved:
            log.info("%s[run %d] %s: moved to %s", change.dag_id, change.id, change.state, path,
                     extra={"dag_id": change.dag_id, "run_id": change.id})

    # -- timers ---------------------------------------------------------------------------
    async def _timers(self, specs: list[TimerSpec]) -> None:
        if not specs:
            await anyio.sleep_forever()
        last: dict[TimerSpec, datetime] = {}
        started = self.clock()
        for spec in specs:
            stored = await self.events.last_key(
                kind=spec.trigger.kind, source=spec.trigger.source, dag_id=spec.dag_id
            )
            last[spec] = resume_from(
                spec.trigger, datetime.fromisoformat(stored) if stored else None, started,
                catchup=spec.catchup, limit=MAX_FIRES_PER_PASS,
            )
        while True:
            now = self.clock()
            for spec in specs:
                await self._fire_due(spec, last, now)
            nexts = [f for spec in specs if (f := spec.next_fire(max(last[spec], now)))]
            if not nexts:  # every timer is past its DAG's end date
                await anyio.sleep_forever()
            wait = (min(nexts) - self.clock()).total_seconds()
            await anyio.sleep(min(max(wait, 0.0), CLOCK_CHECK))

    async def _fire_due(self, spec: TimerSpec, last: dict[TimerSpec, datetime],
                        now: datetime) -> None:
        timer = spec.trigger
        for fire in timer.due(last[spec], now, MAX_FIRES_PER_PASS):
            if past_end(timer, fire, spec.end_date):
                last[spec] = fire
                continue
            conf = {**fire_conf(timer, fire), "fired_at": fire.isoformat()}
            delivery = Delivery(kind=timer.kind, source=timer.source, payload=conf,
                                dedup_key=fire.astimezone(UTC).isoformat(),
                                logical_date=timer.data_interval(fire)[0])
            late = (time.time() - fire.timestamp()) * 1000
            outcomes = await self.events.deliver(delivery, [spec.dag_id], conf)
            for o in outcomes:
                log.info("%s: %s fired for %s (%.1f ms late): %s%s", spec.dag_id,
                         timer.source, conf["logical_date"], late, o.outcome,
                         f" (run {o.run_id})" if o.run_id else "",
                         extra={"dag_id": spec.dag_id, "run_id": o.run_id})
            last[spec] = fire
