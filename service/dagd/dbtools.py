"""Database maintenance: what `dagd db check|backup|restore|vacuum` do (cli_db.py prints).

- `check`: `PRAGMA integrity_check`, each table's rows and bytes (the `dbstat` virtual
  table when SQLite has it, else rows alone) and the logs folder's size. Read-only, with
  a daemon running or not.
- `backup`: SQLite's online backup API from a read-only connection, in one step, so the
  copy is the database as one read transaction saw it: every commit made before it
  began. In WAL mode a reader blocks no writer, so the daemon goes on writing meanwhile.
  The copy is made in a temporary file beside the target (mode 0600: it holds every
  run's conf), switched to a rollback journal (one self-contained file), checked with
  `integrity_check`, and only then renamed into place; a failure leaves nothing behind.
  `with_logs`: the logs folder is then copied, the same way, to `FILE.logs/`.
- `restore`: only with no daemon running, holding the data directory's lock. The file
  must be an SQLite database that passes `integrity_check`, with dagd's tables and a
  schema version this dagd can migrate. The current database is kept as
  `dagd.db.before-restore-<time>` (with its -wal), never deleted; no stale -wal or -shm
  is left beside the restored one. The logs of runs it does not have (made after the
  backup) move to `logs.before-restore-<time>/`, since their run ids are handed out again.
- `vacuum`: refused while a daemon runs (VACUUM holds the write lock while it rewrites
  the whole file, which would stall the daemon for as long), else run under the lock.

Everything here blocks: the CLI runs it in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dagd.config import Settings
from dagd.errors import AlreadyRunning, Conflict, DagdError, InvalidInput, NotFound
from dagd.lock import DataDirLock, daemon_running
from dagd.store.sql import migrations

SQLITE_HEADER = b"SQLite format 3\x00"
# Tables every dagd database has had since its first migration.
DAGD_TABLES = frozenset({"dag", "run", "task_instance", "attempt", "event"})
MAX_PROBLEMS = 20  # integrity_check messages kept: the first ones say enough


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    bytes: int | None  # None: this SQLite has no dbstat


@dataclass(frozen=True)
class FolderSize:
    files: int
    bytes: int


@dataclass(frozen=True)
class DbReport:
    path: Path
    file_bytes: int
    wal_bytes: int
    schema_version: int
    problems: list[str]  # empty: integrity_check said ok
    tables: list[TableSize]
    logs: FolderSize

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    runs: int
    schema_version: int
    seconds: float
    logs: Path | None = None
    log_files: int = 0


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    schema_version: int
    runs: int
    kept: Path | None  # where the database it replaced is now
    # Logs of runs the restored database does not have, and where they went.
    logs_moved: tuple[int, Path | None] = (0, None)


def schema_version() -> int:
    """The schema version this dagd writes: its last migration's number."""
    return len(migrations())


def readonly_uri(path: Path) -> str:
    return f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"


@contextlib.contextmanager
def connect_ro(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(readonly_uri(path), uri=True, timeout=10)
    try:
        yield db
    finally:
        db.close()


def integrity(db: sqlite3.Connection) -> list[str]:
    """integrity_check's complaints; empty when it says ok (a file that is no database
    at all is one complaint)."""
    try:
        rows = db.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})").fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def folder_size(folder: Path) -> FolderSize:
    files = total = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):  # a log pruned meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
                files += 1
    return FolderSize(files, total)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_sizes(db: sqlite3.Connection) -> list[TableSize]:
    """Rows of each table, and its bytes with its indexes when dbstat is compiled in."""
    names = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    sizes: dict[str, int] | None = {}
    try:
        for table, size in db.execute(
                "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat AS s "
                "JOIN sqlite_master AS m ON m.name = s.name GROUP BY m.tbl_name"):
            sizes[table] = int(size)  # type: ignore[index]
    except sqlite3.OperationalError:  # "no such table: dbstat": not compiled in
        sizes = None
    return [TableSize(name, db.execute(f"SELECT COUNT(*) FROM {_quoted(name)}").fetchone()[0],
                      None if sizes is None else sizes.get(name, 0))
            for name in names]


def check(settings: Settings) -> DbReport:
    """`dagd db check`: read-only; a problem is in the report, not raised."""
    path = settings.db_path
    if not path.is_file():
        raise NotFound(f"no database at {path}: `dagd run` creates it")
    with connect_ro(path) as db:
        problems = integrity(db)
        version, tables = 0, []
        if not problems:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = table_sizes(db)
    return DbReport(path=path, file_bytes=_size(path), wal_bytes=_size(_wal(path)),
                    schema_version=version, problems=problems, tables=tables,
                    logs=folder_size(settings.logs_dir))


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _remove(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()


def _sidecars(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_db(source: Path, target: Path) -> tuple[int, int]:
    """Source (read-only, one backup step) -> a new file `target`, mode 0600, in
    rollback-journal mode, checked; (schema version, runs). Raises on any problem."""
    # Made here with O_EXCL and 0600: SQLite then opens the existing empty file as it is.
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with connect_ro(source) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)  # pages=-1: the whole database in one step, one read transaction
        dst.execute("PRAGMA journal_mode = DELETE")
        problems = integrity(dst)
        if problems:
            raise DagdError(f"the copy fails integrity_check: {'; '.join(problems[:3])}",
                            file=str(source))
        version = dst.execute("PRAGMA user_version").fetchone()[0]
        runs = dst.execute("SELECT COUNT(*) FROM run").fetchone()[0]
    _fsync(target)
    return int(version), int(runs)


def _refuse_existing(path: Path, force: bool, *, folder: bool = False) -> None:
    if not folder and path.is_dir():
        raise InvalidInput("is a folder: give the backup file's path", file=str(path))
    if path.exists() and not force:
        raise Conflict("exists: choose another name, or pass --force to replace it",
                       file=str(path))


def backup(settings: Settings, target: Path, *, with_logs: bool = False,
           force: bool = False) -> BackupResult:
    """`dagd db backup FILE [--with-logs] [--force]`: see the module's docstring."""
    source = settings.db_path
    if not source.is_file():
        raise NotFound(f"no database at {source}: nothing to back up")
    target = target.absolute()
    if target.exists() and target.resolve() == source.resolve():
        raise InvalidInput("the backup cannot replace the database itself", file=str(target))
    _refuse_daemons_place(settings, target)
    logs_target = target.with_name(target.name + ".logs")
    _refuse_existing(target, force)
    if with_logs:
        _refuse_existing(logs_target, force, folder=True)
    if not target.parent.is_dir():
        raise NotFound(f"no folder {target.parent} to write the backup in", file=str(target))
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    logs_tmp = target.with_name(f".{logs_target.name}.tmp-{os.getpid()}")
    start = time.perf_counter()
    try:
        version, runs = _copy_db(source, tmp)
        files = _copy_logs(settings.logs_dir, logs_tmp) if with_logs else 0
        os.replace(tmp, target)
        if with_logs:
            _swap_folder(logs_tmp, logs_target)
        _fsync(target.parent)
    except sqlite3.Error as exc:
        raise DagdError(f"backup failed, nothing written: {exc}", file=str(target)) from None
    except OSError as exc:
        raise DagdError(f"backup failed, nothing written: {exc.strerror or exc}",
                        file=str(exc.filename or target)) from None
    finally:
        _remove(*_sidecars(tmp), logs_tmp)
    return BackupResult(path=target, bytes=_size(target), runs=runs, schema_version=version,
                        seconds=time.perf_counter() - start,
                        logs=logs_target if with_logs else None, log_files=files)


def _refuse_daemons_place(settings: Settings, target: Path) -> None:
    """The top of the data directory (the database's -wal and -shm, the lock, the CLI
    token) and its logs folder are the daemon's: a backup there (with --force, over the
    -wal or the lock) would corrupt the database or let a second daemon start on it. A
    folder of its own inside the data directory is fine."""
    where = target.parent.resolve()
    data, logs = settings.data_dir.resolve(), settings.logs_dir.resolve()
    if where == data or where == logs or logs in where.parents:
        raise InvalidInput("is in the data directory, whose files are the daemon's: write "
                           "the backup elsewhere (or in a folder of its own there)",
                           file=str(target))


def _copy_logs(logs: Path, tmp: Path) -> int:
    """The logs folder into the new folder `tmp` (0700); the number of files copied. A
    log still being written is copied as far as it was written."""
    tmp.mkdir(mode=0o700)
    if not logs.is_dir():
        return 0
    shutil.copytree(logs, tmp, symlinks=True, dirs_exist_ok=True)
    os.chmod(tmp, 0o700)
    return folder_size(tmp).files


def _swap_folder(new: Path, target: Path) -> None:
    """`new` to `target`'s name; an old `target` (--force) removed only once it has."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    _remove(old)


def inspect(path: Path) -> tuple[int, int]:
    """(schema version, runs) of a file that may be restored; else InvalidInput saying
    why, having changed nothing."""
    if not path.is_file():
        raise InvalidInput("no such file" if not path.exists() else "not a regular file",
                           file=str(path))
    with open(path, "rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise InvalidInput("not an SQLite database (a backup made by `dagd db backup` "
                               "is one)", file=str(path))
    with connect_ro(path) as db:
        problems = integrity(db)
        if problems:
            raise InvalidInput(f"fails integrity_check: {'; '.join(problems[:3])}",
                               file=str(path))
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                           "'table'")}
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if not DAGD_TABLES <= tables or version < 1:
            raise InvalidInput("not a dagd database (no dagd tables or no schema version)",
                               file=str(path))
        if version > schema_version():
            raise InvalidInput(f"its schema version {version} is newer than this dagd's "
                               f"({schema_version()}): upgrade dagd first", file=str(path))
        runs = int(db.execute("SELECT COUNT(*) FROM run").fetchone()[0])
    return version, runs


def _refuse_running(settings: Settings, doing: str) -> None:
    holder = daemon_running(settings.lock_path, patience=5.0)
    if holder is not None:
        raise AlreadyRunning(
            f"dagd (pid {holder.pid}, serving http://{holder.host}:{holder.port}) is running "
            f"on {settings.data_dir}: stop it first (`systemctl stop dagd`), then {doing}; "
            "nothing changed")


def _kept_name(db: Path, now: Callable[[], float]) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now()))
    kept = db.with_name(f"{db.name}.before-restore-{stamp}")
    n = 1
    while kept.exists():  # two restores in one second
        n += 1
        kept = db.with_name(f"{db.name}.before-restore-{stamp}-{n}")
    return kept


def restore(settings: Settings, source: Path, *,
            now: Callable[[], float] = time.time) -> RestoreResult:
    """`dagd db restore FILE`: see the module's docstring."""
    source = source.absolute()
    db = settings.db_path
    if source.exists() and db.exists() and source.resolve() == db.resolve():
        raise InvalidInput("that is the database itself", file=str(source))
    inspect(source)
    _refuse_running(settings, "restore")
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = db.with_name(f".{db.name}.restore-{os.getpid()}")
    try:
        with DataDirLock(settings.lock_path):
            version, runs = _copy_db(source, tmp)
            kept = _put_in_place(tmp, db, now)
            moved = _set_aside_logs(settings, now)
    except AlreadyRunning as exc:  # a daemon started between the look and the lock
        raise AlreadyRunning(f"{exc.message}; nothing changed") from None
    except sqlite3.Error as exc:
        raise DagdError(f"restore failed, the database is unchanged: {exc}",
                        file=str(source)) from None
    except OSError as exc:
        raise DagdError(f"restore failed: {exc.strerror or exc}",
                        file=str(exc.filename or db)) from None
    finally:
        _remove(*_sidecars(tmp))
    return RestoreResult(path=db, schema_version=version, runs=runs, kept=kept,
                         logs_moved=moved)


def _put_in_place(new: Path, db: Path, now: Callable[[], float]) -> Path | None:
    """The checked copy `new` becomes `db`; the old database (and its -wal, which may
    hold its last commits) moves aside. The -wal goes first: a stale -wal beside the new
    file would be read as the new file's."""
    wal, shm = _wal(db), db.with_name(db.name + "-shm")
    had_db = db.exists()
    if _size(wal) == 0:  # left by a read-only connection: holds nothing
        _remove(wal)
    kept = _kept_name(db, now) if had_db or wal.exists() else None
    if kept is not None and wal.exists():
        os.replace(wal, kept.with_name(kept.name + "-wal"))
    _remove(shm, db.with_name(db.name + "-journal"))
    if kept is not None and had_db:
        try:
            os.link(db, kept)  # the old file keeps its name until the new one takes it
        except OSError:  # a file system without hard links
            os.replace(db, kept)
    os.replace(new, db)
    _fsync(db.parent)
    return kept if had_db else None


def _set_aside_logs(settings: Settings, now: Callable[[], float]) -> tuple[int, Path | None]:
    """Move the logs of runs the restored database does not know (made after the
    backup) to `logs.before-restore-<time>/`: the restored database hands their ids out
    again, and a new run's attempt would append to the old run's log file."""
    logs = settings.logs_dir
    if not logs.is_dir():
        return 0, None
    aside = _kept_name(logs, now)
    moved = 0
    with connect_ro(settings.db_path) as db:
        for dag_dir in sorted(p for p in logs.iterdir() if p.is_dir()):
            for run_dir in sorted(dag_dir.glob("run_*")):
                run_id = run_dir.name.removeprefix("run_")
                known = run_id.isdigit() and db.execute(
                    "SELECT 1 FROM run WHERE id = ? AND dag_id = ?",
                    (int(run_id), dag_dir.name)).fetchone()
                if not known:
                    (aside / dag_dir.name).mkdir(parents=True, exist_ok=True, mode=0o700)
                    os.replace(run_dir, aside / dag_dir.name / run_dir.name)
                    moved += 1
    return moved, aside if moved else None


def vacuum(settings: Settings) -> tuple[int, int]:
    """`dagd db vacuum`: (bytes before, bytes after), database and -wal together."""
    db = settings.db_path
    if not db.is_file():
        raise NotFound(f"no database at {db}: nothing to vacuum")
    _refuse_running(settings, "vacuum")

    def size() -> int:
        return _size(db) + _size(_wal(db))

    with DataDirLock(settings.lock_path):
        before = size()
        conn = sqlite3.connect(db, isolation_level=None, timeout=10)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise DagdError(f"VACUUM failed, the database is unchanged: {exc} ("
                            f"{shutil.disk_usage(db.parent).free:,} bytes free; VACUUM "
                            "needs about the database's size again)", file=str(db)) from None
        finally:
            conn.close()
        return before, size()
