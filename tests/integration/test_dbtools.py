"""`dagd db check|backup|restore|vacuum` on real SQLite files (no daemon; the same
commands beside a running `dagd run` are in tests/acceptance/test_db.py)."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from dagd import dbtools
from dagd.config import Settings
from dagd.errors import Conflict, DagdError, InvalidInput


@pytest.fixture
def data(settings: Settings, template_db: Path) -> Settings:
    """A data directory with a real database (20 runs) and two logs."""
    settings.data_dir.mkdir()
    shutil.copy(template_db, settings.db_path)
    with closing(sqlite3.connect(settings.db_path)) as db:
        db.executemany("INSERT INTO run (id, dag_id, state, run_type, conf, created_at) "
                       "VALUES (?, 'etl', 'success', 'manual', ?, 0)",
                       [(i, '{"k": "' + "v" * 200 + '"}') for i in range(1, 21)])
        db.commit()
    for run in (1, 2):
        log = settings.logs_dir / "etl" / f"run_{run}" / "load" / "attempt_1.log"
        log.parent.mkdir(parents=True)
        log.write_text(f"run {run} said hello\n")
    return settings


def runs_in(path: Path) -> int:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM run").fetchone()[0])


def test_check_reports_integrity_tables_and_logs(data: Settings) -> None:
    report = dbtools.check(data)
    assert report.ok
    assert report.schema_version == dbtools.schema_version()
    sizes = {t.name: t for t in report.tables}
    assert sizes["run"].rows == 20
    assert sizes["run"].bytes is not None and sizes["run"].bytes >= 4096  # dbstat here
    assert (report.logs.files, report.logs.bytes) == (2, 2 * len("run 1 said hello\n"))


def test_check_reports_a_corrupted_database(data: Settings) -> None:
    with open(data.db_path, "r+b") as f:
        f.seek(4096 * 2)
        f.write(b"\x5a" * 4096 * 4)
    report = dbtools.check(data)
    assert not report.ok
    assert report.problems and report.tables == []


def test_backup_is_a_checked_private_copy(data: Settings, tmp_path: Path) -> None:
    target = tmp_path / "backups" / "dagd-1.db"
    target.parent.mkdir()
    done = dbtools.backup(data, target)
    assert (done.runs, done.schema_version) == (20, dbtools.schema_version())
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert runs_in(target) == 20
    with closing(sqlite3.connect(target)) as db:  # one self-contained file
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sorted(p.name for p in target.parent.iterdir()) == ["dagd-1.db"]


def test_backup_refuses_to_overwrite_without_force(data: Settings, tmp_path: Path) -> None:
    target = tmp_path / "dagd-1.db"
    target.write_text("an older backup")
    with pytest.raises(Conflict, match="--force"):
        dbtools.backup(data, target)
    assert target.read_text() == "an older backup"
    dbtools.backup(data, target, force=True)
    assert runs_in(target) == 20


def test_backup_with_logs_copies_the_logs_folder(data: Settings, tmp_path: Path) -> None:
    target = tmp_path / "dagd-1.db"
    done = dbtools.backup(data, target, with_logs=True)
    copied = target.with_name("dagd-1.db.logs") / "etl" / "run_2" / "load" / "attempt_1.log"
    assert (done.logs, done.log_files) == (target.with_name("dagd-1.db.logs"), 2)
    assert copied.read_text() == "run 2 said hello\n"
    assert stat.S_IMODE(done.logs.stat().st_mode) == 0o700
    target.unlink()
    with pytest.raises(Conflict):  # the logs folder is refused like the file
        dbtools.backup(data, target, with_logs=True)
    assert not target.exists()


@pytest.mark.parametrize("name", ["dagd.db-wal", "dagd.db-shm", "dagd.lock", "cli-token",
                                  "backup.db", "logs/backup.db"])
def test_backup_refuses_the_daemons_own_files_and_folders(data: Settings, name: str) -> None:
    """--force over the -wal or the lock would corrupt the database or let a second
    daemon take it; the data directory's top and its logs are the daemon's."""
    target = data.data_dir / name
    if name != "backup.db" and not name.startswith("logs/"):
        target.write_bytes(b"the daemon's")
    with pytest.raises(InvalidInput, match="data directory"):
        dbtools.backup(data, target, force=True, with_logs=True)
    assert not target.exists() or target.read_bytes() == b"the daemon's"
    link = data.data_dir.parent / "elsewhere"
    link.symlink_to(data.data_dir)  # the same folder by another name
    with pytest.raises(InvalidInput, match="data directory"):
        dbtools.backup(data, link / name, force=True)
    inside = data.data_dir / "backups"
    inside.mkdir()
    assert runs_in(dbtools.backup(data, inside / "dagd-1.db").path) == 20

def test_a_failed_backup_leaves_nothing(data: Settings, tmp_path: Path) -> None:
    with open(data.db_path, "r+b") as f:  # garbage over the pages after the first two
        size = f.seek(0, 2)
        for offset in range(4096 * 2, size, 4096):
            f.seek(offset)
            f.write(b"\xa5" * 4096)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DagdError, match="nothing written"):
        dbtools.backup(data, out / "dagd.db", with_logs=True)
    assert list(out.iterdir()) == []


def test_restore_keeps_the_old_database_and_leaves_no_stale_wal(data: Settings,
                                                                tmp_path: Path) -> None:
    backup = tmp_path / "dagd-1.db"
    dbtools.backup(data, backup)
    # Later: one more run, left in the -wal by a writer that died without a checkpoint
    # (a daemon killed with -9).
    script = ("import os, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
              "db.execute('PRAGMA journal_mode = WAL'); "
              "db.execute('PRAGMA wal_autocheckpoint = 0'); "
              "db.execute(\"INSERT INTO run (id, dag_id, state, run_type, conf, created_at) "
              "VALUES (21, 'etl', 'failed', 'manual', '{}', 0)\"); db.commit(); os._exit(0)")
    subprocess.run([sys.executable, "-c", script, str(data.db_path)], check=True)
    wal = data.db_path.with_name("dagd.db-wal")
    assert wal.stat().st_size > 0 and data.db_path.with_name("dagd.db-shm").exists()
    kept_wal = wal.read_bytes()
    done = dbtools.restore(data, backup, now=lambda: 1_800_000_000.0)
    assert done.runs == 20
    assert done.kept is not None and done.kept.name.startswith("dagd.db.before-restore-2027")
    names = sorted(p.name for p in data.data_dir.iterdir())
    assert names == ["dagd.db", done.kept.name, f"{done.kept.name}-wal", "dagd.lock", "logs"]
    assert done.logs_moved == (0, None)  # the logs of runs 1 and 2 stay
    assert runs_in(data.db_path) == 20
    assert done.kept.with_name(done.kept.name + "-wal").read_bytes() == kept_wal
    assert runs_in(done.kept) == 21  # the kept database with its -wal: nothing lost


def test_restore_sets_aside_the_logs_of_runs_it_does_not_have(data: Settings,
                                                              tmp_path: Path) -> None:
    backup = tmp_path / "dagd-1.db"
    dbtools.backup(data, backup)
    later = data.logs_dir / "etl" / "run_21" / "load" / "attempt_1.log"
    later.parent.mkdir(parents=True)
    later.write_text("run 21, made after the backup\n")
    done = dbtools.restore(data, backup, now=lambda: 1_800_000_000.0)
    moved, aside = done.logs_moved
    assert moved == 1 and aside is not None
    assert not later.exists()  # a new run 21 starts a log of its own
    assert (aside / "etl" / "run_21" / "load" / "attempt_1.log").read_text() == (
        "run 21, made after the backup\n")
    assert (data.logs_dir / "etl" / "run_1" / "load" / "attempt_1.log").exists()


def test_restore_of_a_file_that_is_no_database_is_refused(data: Settings,
                                                          tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in data.data_dir.iterdir() if p.is_file()}
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 100)
    with pytest.raises(InvalidInput, match="not an SQLite database"):
        dbtools.restore(data, junk)
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(InvalidInput, match="not a dagd database"):
        dbtools.restore(data, other)
    with pytest.raises(InvalidInput, match="no such file"):
        dbtools.restore(data, tmp_path / "missing.db")
    assert {p.name: p.read_bytes() for p in data.data_dir.iterdir() if p.is_file()} == before


def test_restore_of_a_newer_schema_is_refused(data: Settings, tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    dbtools.backup(data, newer)
    with closing(sqlite3.connect(newer)) as db:
        db.execute(f"PRAGMA user_version = {dbtools.schema_version() + 1}")
    with pytest.raises(InvalidInput, match="upgrade dagd first"):
        dbtools.restore(data, newer)
    assert runs_in(data.db_path) == 20


def test_restore_into_an_empty_data_directory(data: Settings,
                                              tmp_path: Path) -> None:
    backup = tmp_path / "dagd-1.db"
    dbtools.backup(data, backup)
    fresh = Settings(data_dir=tmp_path / "fresh")
    done = dbtools.restore(fresh, backup)
    assert (done.kept, runs_in(fresh.db_path)) == (None, 20)
    assert stat.S_IMODE(fresh.db_path.stat().st_mode) == 0o600


def test_vacuum_gives_back_the_space_of_deleted_rows(data: Settings) -> None:
    with closing(sqlite3.connect(data.db_path)) as db:
        db.executemany("INSERT INTO event (kind, source, outcome, payload, created_at) "
                       "VALUES ('webhook', 'hook', 'accepted', ?, 0)",
                       [("z" * 1000,) for _ in range(2000)])
        db.commit()
        db.execute("DELETE FROM event")
        db.commit()
    before, after = dbtools.vacuum(data)
    assert after < before / 4
    assert dbtools.check(data).ok
    assert runs_in(data.db_path) == 20
