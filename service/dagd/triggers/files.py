"""File drops: the `FileDrop` trigger and the watcher that turns complete files into events.

A file counts once it is complete: its size and modification time have not changed for
`stable_for` seconds (so a half-written file never counts, and a write-then-rename
counts once, under its final name). Each file version (path, size, mtime, sha256) is one
event, deduplicated in the ledger, so it starts one run, across restarts; files dropped
while the daemon was down are found by a rescan at start. Only regular files count:
symlinks, FIFOs and devices are never followed or opened. The user's files are never
deleted; `on_success` / `on_failure` may move them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from dagd.errors import DagDefinitionError
from dagd.events import Delivery

if TYPE_CHECKING:
    from dagd.events import Events

log = logging.getLogger(__name__)


def _number(value: Any, name: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise DagDefinitionError(f"{name} must be a number >= {minimum:g}, got {value!r}",
                                 field=name)
    return float(value)


def _move_spec(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("move:") or not value[5:].strip():
        raise DagDefinitionError(f"{name} must look like 'move:processed/', got {value!r}",
                                 field=name)
    target = value[5:].strip()
    if os.path.isabs(target) or ".." in Path(target).parts:
        raise DagDefinitionError(
            f"{name}: the target must be a folder inside the watched folder, got {target!r}",
            field=name,
        )
    return target


@dataclass(frozen=True)
class FileDrop:
    """Start a run for each complete file matching `pattern` in `folder`.

    batch=True: one run for the files that arrived until `quiet_period` seconds passed
    with no new file, or, with `marker="_SUCCESS"`, until the marker file appears.
    on_success / on_failure: "move:SUBFOLDER/" moves the file(s) when the run ends.
    """

    folder: str
    pattern: str = "*"
    recursive: bool = False
    stable_for: float = 1.0
    batch: bool = False
    quiet_period: float = 5.0
    marker: str | None = None
    on_success: str | None = None
    on_failure: str | None = None
    _moves: tuple[str | None, str | None] = field(default=(None, None), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.folder, str | os.PathLike) or not str(self.folder):
            raise DagDefinitionError(f"FileDrop folder must be a path, got {self.folder!r}",
                                     field="folder")
        object.__setattr__(self, "folder", str(self.folder))
        if not isinstance(self.pattern, str) or not self.pattern:
            raise DagDefinitionError(f"pattern must be a glob like '*.csv', got "
                                     f"{self.pattern!r}", field="pattern")
        object.__setattr__(self, "stable_for", _number(self.stable_for, "stable_for"))
        object.__setattr__(self, "quiet_period", _number(self.quiet_period, "quiet_period"))
        if self.marker is not None and (not isinstance(self.marker, str) or "/" in self.marker):
            raise DagDefinitionError(f"marker must be a file name, got {self.marker!r}",
                                     field="marker")
        moves = (_move_spec(self.on_success, "on_success"),
                 _move_spec(self.on_failure, "on_failure"))
        object.__setattr__(self, "_moves", moves)

    @property
    def kind(self) -> str:
        return "file"

    @property
    def source(self) -> str:
        return f"file:{self.folder}"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "file", "folder": self.folder, "pattern": self.pattern,
            "recursive": self.recursive, "stable_for": self.stable_for, "batch": self.batch,
            "quiet_period": self.quiet_period, "marker": self.marker,
            "on_success": self.on_success, "on_failure": self.on_failure,
        }

    def move_target(self, success: bool) -> str | None:
        return self._moves[0] if success else self._moves[1]

    def matches(self, root: Path, path: Path) -> bool:
        """Is `path` (under `root`) a file this trigger is about? Move targets are not."""
        try:
            rel = path.relative_to(root)
        except ValueError:
            return False
        if len(rel.parts) > 1 and not self.recursive:
            return False
        for target in self._moves:
            if target and rel.parts[0] == Path(target).parts[0]:
                return False
        name = rel.name
        if name.startswith(".") or name == self.marker:
            return False
        return fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True)
class FileVersion:
    path: str
    size: int
    mtime_ns: int
    sha256: str

    @property
    def key(self) -> str:
        return f"{self.path}|{self.size}|{self.mtime_ns}|{self.sha256}"

    def info(self, root: Path) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": os.path.basename(self.path),
            "relative_path": os.path.relpath(self.path, root),
            "size": self.size,
            "mtime": self.mtime_ns / 1e9,
            "sha256": self.sha256,
        }


def _utf8(path: str) -> bool:
    """False for a name with bytes that are not UTF-8 (decoded as lone surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def regular_stat(path: str) -> os.stat_result | None:
    """lstat of a regular file, or None (missing, symlink, FIFO, device, directory)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def hash_file(path: str, size: int, mtime_ns: int) -> FileVersion | None:
    """sha256 of a regular file, opened without following links or blocking on FIFOs.
    None if the file is gone, is not a regular file, or changed while being read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_mtime_ns != mtime_ns:
            return None
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        st = os.fstat(fd)
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            return None
    finally:
        os.close(fd)
    return FileVersion(path, size, mtime_ns, digest.hexdigest())


@dataclass
class _Candidate:
    size: int
    mtime_ns: int
    since: float


class FileWatcher:
    """Watches one FileDrop's folder and delivers its complete files to the intake."""

    def __init__(
        self, drop: FileDrop, dag_ids: list[str], events: Events,
        *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drop = drop
        self.dag_ids = dag_ids
        self.events = events
        self.clock = clock
        self.root = Path(drop.folder).resolve()
        self._candidates: dict[str, _Candidate] = {}
        self._done: set[tuple[str, int, int]] = set()
        self._batch: list[FileVersion] = []
        self._last_complete = 0.0
        self._marker_seen = False
        self._skipped: set[str] = set()
        self._wake = anyio.Event()

    async def run(self) -> None:
        """Find what is there already, then settle what the hub reports (see `feed`)."""
        await anyio.Path(self.root).mkdir(parents=True, exist_ok=True)
        await self.rescan()
        await self._settle()

    def feed(self, changes: set[tuple[Any, str]]) -> None:
        """Changes seen by the shared watcher (one for all folders) under this folder."""
        now = self.clock()
        # The kind of change is not trusted: one batch (a set, in no order) may hold a
        # path's deletion and its re-creation. What is on disk now decides: `_see` stats
        # the path and forgets it if it is gone.
        for path in sorted({path for _, path in changes}):
            self._see(path, now)

    # -- seeing changes ---------------------------------------------------------------
    def _listing(self) -> list[tuple[str, float]]:
        """Each entry in the folder now, with the seconds since it last changed. Blocking."""
        pattern = "**/*" if self.drop.recursive else "*"
        wall = time.time()
        found = []
        for path in self.root.glob(pattern):
            st = regular_stat(str(path))
            found.append((str(path), wall - st.st_mtime_ns / 1e9 if st is not None else 0.0))
        return found

    async def rescan(self) -> None:
        """Every matching file present now is a candidate. One not modified for the whole
        window is stable already; a younger one (its writer may be pausing) waits for the
        rest of the window, as if the watcher had seen its last write."""
        listing = await anyio.to_thread.run_sync(self._listing)
        now = self.clock()
        for path, age in listing:
            self._see(path, now - min(max(age, 0.0), self.drop.stable_for))

    def _see(self, path: str, now: float) -> None:
        if not _utf8(path):
            # It could not be stored, logged as JSON or passed on as a conf: skip it, once.
            if path not in self._skipped:
                self._skipped.add(path)
                log.warning("ignoring %r in %s: its name is not valid UTF-8",
                            os.path.basename(path), self.root)
            return
        p = Path(path)
        if self.drop.marker and p.name == self.drop.marker and p.parent == self.root:
            if regular_stat(path) is not None:
                self._marker_seen = True
                self._wake.set()
            return
        if not self.drop.matches(self.root, p):
            return
        st = regular_stat(path)
        if st is None:
            self._candidates.pop(path, None)
            return
        if (path, st.st_size, st.st_mtime_ns) in self._done:
            return
        # The window runs from the last write (its mtime), not from when the watcher saw
        # it: what the watcher's batching already waited counts (never more than the
        # window, and never from an mtime in the future).
        age = time.time() - st.st_mtime_ns / 1e9
        since = min(now, self.clock() - min(max(age, 0.0), self.drop.stable_for))
        self._candidates[path] = _Candidate(st.st_size, st.st_mtime_ns, since)
        self._wake.set()

    # -- deciding a file is complete --------------------------------------------------
    async def _settle(self) -> None:
        while True:
            deadline = self._next_deadline()
            with anyio.move_on_after(None if deadline is None else
                                     max(deadline - self.clock(), 0.0)):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self._check_candidates()
            await self._maybe_flush_batch()

    def _next_deadline(self) -> float | None:
        times = [c.since + self.drop.stable_for for c in self._candidates.values()]
        if self.drop.batch and self._batch and not self.drop.marker:
            times.append(self._last_complete + self.drop.quiet_period)
        if self._marker_seen:
            times.append(self.clock())
        return min(times) if times else None

    async def _check_candidates(self) -> None:
        now = self.clock()
        for path, cand in list(self._candidates.items()):
            if cand.since + self.drop.stable_for > now:
                continue
            st = regular_stat(path)
            if st is None:
                del self._candidates[path]
            elif (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                self._candidates[path] = _Candidate(st.st_size, st.st_mtime_ns, now)
            else:
                del self._candidates[path]
                version = await anyio.to_thread.run_sync(hash_file, path, cand.size,
                                                         cand.mtime_ns)
                if version is None:
                    continue
                self._done.add((path, cand.size, cand.mtime_ns))
                self._last_complete = self.clock()
                if self.drop.batch:
                    self._batch.append(version)
                else:
                    await self._deliver_one(version)

    async def _deliver_one(self, version: FileVersion) -> None:
        info = {**version.info(self.root), "folder": str(self.root)}
        delivery = Delivery(kind="file", source=self.drop.source, payload=info,
                            dedup_key=version.key, digest=version.sha256)
        outcomes = await self.events.deliver(delivery, self.dag_ids, info)
        for o in outcomes:
            log.info("file %s: %s%s", version.path, o.outcome,
                     f" (run {o.run_id})" if o.run_id else "",
                     extra={"dag_id": o.dag_id, "run_id": o.run_id, "event_id": o.event_id})

    async def _maybe_flush_batch(self) -> None:
        if not self.drop.batch or not self._batch:
            self._marker_seen = False
            return
        if self.drop.marker:
            if not self._marker_seen or self._candidates:
                return
        elif self.clock() < self._last_complete + self.drop.quiet_period or self._candidates:
            return
        self._marker_seen = False
        files, self._batch = sorted(self._batch, key=lambda v: v.path), []
        await self._deliver_batch(files)

    async def _deliver_batch(self, files: list[FileVersion]) -> None:
        # A file an earlier batch took (before a restart) does not count again, for each
        # DAG on its own: DAGs that saw different files get different batches.
        groups: dict[tuple[FileVersion, ...], list[str]] = {}
        for dag_id in self.dag_ids:
            fresh = tuple([v for v in files if not await self.events.seen(
                kind="file", source=self.drop.source, dag_id=dag_id, dedup_key=v.key)])
            if fresh:
                groups.setdefault(fresh, []).append(dag_id)
        for fresh, dag_ids in groups.items():
            await self._deliver_group(list(fresh), dag_ids)

    async def _deliver_group(self, fresh: list[FileVersion], dag_ids: list[str]) -> None:
        key = hashlib.sha256("\n".join(v.key for v in fresh).encode()).hexdigest()
        conf = {
            "folder": str(self.root),
            "files": [v.info(self.root) for v in fresh],
            "count": len(fresh),
        }
        members = [Delivery(kind="file", source=self.drop.source, payload=v.info(self.root),
                            dedup_key=v.key, digest=v.sha256) for v in fresh]
        delivery = Delivery(kind="file", source=self.drop.source,
                            payload={"batch": len(fresh), "folder": str(self.root)},
                            dedup_key=f"batch|{key}", digest=key)
        outcomes = await self.events.deliver(delivery, dag_ids, conf, members=members)
        for o in outcomes:
            log.info("file batch of %d in %s: %s%s", len(fresh), self.root, o.outcome,
                     f" (run {o.run_id})" if o.run_id else "",
                     extra={"dag_id": o.dag_id, "run_id": o.run_id})


def move_files(conf: dict[str, Any], drop: FileDrop, success: bool) -> list[str]:
    """After a run ends: move its file(s) into the on_success / on_failure folder."""
    target = drop.move_target(success)
    if target is None:
        return []
    root = Path(conf.get("folder") or drop.folder)
    files = conf.get("files") or [conf]
    moved = []
    for info in files:
        path = info.get("path")
        if not path:
            continue
        st = regular_stat(path)
        if st is None or st.st_size != info.get("size"):
            log.warning("not moving %s: it is gone or changed since the run started", path)
            continue
        rel = Path(info.get("relative_path") or Path(path).name)
        dest = root / target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        moved.append(str(dest))
    return moved


def move_run_files(conf: dict[str, Any], triggers: Iterable[Any], success: bool) -> list[str]:
    """After a file-drop run ends: move its files as the FileDrop they came from asks.

    The run's conf names the folder its files came from (resolved, as the watcher saw
    it); each FileDrop of the DAG on that folder with a move for this outcome applies.
    Blocking: run it in a thread.
    """
    moved: list[str] = []
    folder = conf.get("folder")
    for trigger in triggers:
        if (isinstance(trigger, FileDrop) and trigger.move_target(success) is not None
                and str(Path(trigger.folder).resolve()) == folder):
            moved.extend(move_files(conf, trigger, success))
    return moved
