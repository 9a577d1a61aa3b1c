"""Each `dagd doctor` check failing for its own cause, on real files, real databases,
real sockets and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest

from dagd.config import Settings
from dagd.dbtools import schema_version
from dagd.doctor import (
    FAIL,
    MB,
    OK,
    WARN,
    check_config,
    check_data_dir,
    check_database,
    check_filesystem,
    check_inotify,
    check_port,
    check_space,
)
from dagd.doctor_dags import check_dags, check_smtp, check_watched, watched_folders
from integration.smtp_server import free_port, smtp_server

NO_OVERRIDES = {"dags_folder": None, "data_dir": None, "host": None, "port": None}


def test_a_bad_config_key_fails_naming_file_and_key_and_the_rest_goes_on(
        tmp_path: Path) -> None:
    config = tmp_path / "dagd.toml"
    config.write_text('[core]\ndata_dir = "elsewhere"\nparalelism = 4\n')
    result, settings = check_config(config, NO_OVERRIDES, environ={})
    assert result.status == FAIL
    assert str(config) in result.detail
    assert "core.paralelism" in result.detail
    # The other checks still look where the daemon would have.
    assert settings.data_dir == Path("elsewhere")


def test_a_wrong_type_fails_too_and_the_command_line_still_wins(tmp_path: Path) -> None:
    config = tmp_path / "dagd.toml"
    config.write_text('[server]\nport = "eighty"\n')
    result, settings = check_config(config, {**NO_OVERRIDES, "data_dir": str(tmp_path)},
                                    environ={})
    assert result.status == FAIL
    assert "server.port" in result.detail
    assert settings.data_dir == tmp_path


@pytest.mark.parametrize("text", [
    '[core]\ndata_dir = "~no-such-user-here/data"\n',
    "[server]\nport = " + "9" * 5000 + "\n",
])
def test_a_config_load_settings_refuses_oddly_fails_without_a_traceback(
        tmp_path: Path, text: str) -> None:
    config = tmp_path / "dagd.toml"
    config.write_text(text)
    result, settings = check_config(config, {**NO_OVERRIDES, "dags_folder": "~nobody-x/d"},
                                    environ={"DAGD_DATA_DIR": "~no-such-user-here/x"})
    assert result.status == FAIL
    assert str(config) in result.detail
    assert settings.dags_folder == Path("~nobody-x/d")  # as written: no home to expand

def test_a_good_config_names_its_file(tmp_path: Path) -> None:
    config = tmp_path / "dagd.toml"
    config.write_text("[core]\nparallelism = 4\n")
    result, settings = check_config(config, NO_OVERRIDES, environ={})
    assert (result.status, result.detail) == (OK, f"{config} parsed")
    assert settings.parallelism == 4


def test_a_data_dir_that_cannot_be_created_fails(tmp_path: Path) -> None:
    # A path under a regular file cannot be made, even by root (who ignores modes).
    (tmp_path / "plain-file").write_text("")
    result = check_data_dir(tmp_path / "plain-file" / "data")
    assert result.status == FAIL
    assert "is a file" in result.detail
    assert check_data_dir(tmp_path / "plain-file").status == FAIL  # not a folder


def test_a_writable_data_dir_passes_and_keeps_nothing(tmp_path: Path) -> None:
    assert check_data_dir(tmp_path / "not-yet").status == OK
    assert check_data_dir(tmp_path).status == OK
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_little_free_space_fails(tmp_path: Path) -> None:
    def usage(total: int, free: int) -> Callable[[Path], SimpleNamespace]:
        return lambda _: SimpleNamespace(total=total, free=free, used=total - free)

    assert check_space(tmp_path, usage(10_000 * MB, 50 * MB)).status == FAIL
    assert check_space(tmp_path, usage(100_000 * MB, 800 * MB)).status == WARN
    assert check_space(tmp_path).status in (OK, WARN)  # this machine's real disk


def test_a_data_dir_on_nfs_fails(tmp_path: Path) -> None:
    where = tmp_path.resolve()
    table = (f"27 1 253:1 / / rw,relatime - ext4 /dev/vda1 rw\n"
             f"40 27 0:50 / {where} rw,relatime - nfs4 nas:/export rw,vers=4.2\n")
    result = check_filesystem(tmp_path / "data", table)
    assert result.status == FAIL
    assert "nfs4" in result.detail
    assert check_filesystem(tmp_path / "data").status in (OK, WARN)  # the real table


@pytest.fixture
def database(tmp_path: Path, template_db: Path) -> Path:
    """A real dagd database with rows in it."""
    path = tmp_path / "dagd.db"
    shutil.copy(template_db, path)
    with closing(sqlite3.connect(path)) as db:
        db.executemany("INSERT INTO event (kind, source, outcome, payload, created_at) "
                       "VALUES ('webhook', 'hook', 'accepted', ?, 0)",
                       [("x" * 300,) for _ in range(400)])
        db.commit()
    return path


def test_a_good_database_passes(database: Path) -> None:
    results = check_database(database, expected=schema_version())
    assert [(r.check, r.status) for r in results] == [
        ("database", OK), ("schema", OK), ("wal", OK)]


def test_a_corrupted_database_fails(database: Path) -> None:
    page = 4096
    with open(database, "r+b") as f:  # garbage over every page but the header's
        size = f.seek(0, 2)
        for offset in range(page * 2, size, page):
            f.seek(offset)
            f.write(bytes(range(256)) * (page // 256))
    results = check_database(database, expected=schema_version())
    assert [(r.check, r.status) for r in results] == [("database", FAIL)]
    assert "dagd db restore" in results[0].fix


def test_a_file_that_is_no_database_fails(tmp_path: Path) -> None:
    path = tmp_path / "dagd.db"
    path.write_bytes(b"not a database at all\n" * 300)
    [result] = check_database(path, expected=schema_version())
    assert result.status == FAIL


def test_schema_versions_newer_and_older(database: Path) -> None:
    with closing(sqlite3.connect(database)) as db:
        db.execute(f"PRAGMA user_version = {schema_version() + 1}")
    schema = check_database(database, expected=schema_version())[1]
    assert (schema.status, schema.fix) == (FAIL, "upgrade dagd")
    with closing(sqlite3.connect(database)) as db:
        db.execute(f"PRAGMA user_version = {schema_version() - 1}")
    assert check_database(database, expected=schema_version())[1].status == WARN


def test_a_large_wal_warns(database: Path) -> None:
    # A writer kept open keeps its -wal (a clean close would checkpoint and remove it).
    with closing(sqlite3.connect(database)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.execute("UPDATE event SET payload = ?", ("y" * 300,))
        db.commit()
        wal = check_database(database, expected=schema_version(), wal_warn=64 * 1024)[2]
    assert wal.status == WARN
    assert "-wal is" in wal.detail


def test_a_dag_with_an_import_error_fails(settings: Settings,
                                          write_dag: Callable[[str, str], Path]) -> None:
    write_dag("good.py", """
        from dagd import DAG, task
        with DAG("good"):
            @task
            def a(): pass
            a()
    """)
    write_dag("broken.py", "import no_such_module_here\n")
    result, bag = check_dags(settings)
    assert result.status == FAIL
    assert "1 DAG(s)" in result.detail
    assert "broken.py:1" in result.detail
    assert "no_such_module_here" in result.detail
    assert bag is not None and list(bag.dags) == ["good"]


def test_a_missing_watched_folder_fails(settings: Settings, tmp_path: Path,
                                        write_dag: Callable[[str, str], Path]) -> None:
    inbox = tmp_path / "inbox"
    write_dag("drops.py", f"""
        from dagd import DAG, FileDrop, task
        with DAG("drops", triggers=[FileDrop({str(inbox)!r}, pattern="*.csv")]):
            @task
            def a(): pass
            a()
    """)
    result, bag = check_dags(settings)
    assert result.status == OK, result
    assert bag is not None
    folders = watched_folders(bag.dags.values())
    assert folders == [("drops", inbox.resolve())]
    missing = check_watched(folders)
    assert missing.status == FAIL
    assert str(inbox) in missing.detail and "DAG drops" in missing.detail
    inbox.mkdir()
    assert check_watched(folders).status == OK


def test_more_folders_than_inotify_watches_fails(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / "tree" / f"d{i}").mkdir(parents=True)
    result = check_inotify([tmp_path / "tree"], limit_text="10\n")
    assert result.status == FAIL
    assert "13 watches needed" in result.detail
    assert "max_user_watches" in result.fix
    assert check_inotify([tmp_path / "tree"], limit_text="8192\n").status == OK


def test_the_port_held_by_another_socket_fails() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = check_port("127.0.0.1", port, None)
    assert result.status == FAIL
    assert "held by another program" in result.detail
    assert check_port("127.0.0.1", port, None).status == OK  # free once it is closed


@pytest.mark.anyio
async def test_an_smtp_server_not_listening_fails() -> None:
    settings = Settings(smtp_port=free_port())
    result = await check_smtp(settings, "[smtp] port set", wait=2.0)
    assert result.status == FAIL
    assert f"127.0.0.1:{settings.smtp_port}" in result.detail


@pytest.mark.anyio
async def test_a_listening_smtp_server_answers_and_no_secret_is_shown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("DOCTOR_SMTP_PASSWORD", "hunter2-secret")
    settings = Settings(smtp_port=port, smtp_username="ops",
                        smtp_password_env="DOCTOR_SMTP_PASSWORD")
    with smtp_server(port):
        result = await check_smtp(settings, "[smtp] port set", wait=5.0)
    assert result.status == OK, result
    assert "answered EHLO" in result.detail
    assert "hunter2" not in f"{result}"


@pytest.mark.anyio
async def test_smtp_is_not_checked_when_email_is_unused() -> None:
    result = await check_smtp(Settings(smtp_port=free_port()), None)
    assert (result.status, result.detail) == (
        OK, "not used: no [smtp] settings, no DAG sends email")
