"""The data directory's lock: a daemon waits out a CLI command's moment with the lock,
and refuses at once when another daemon holds it."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from dagd.errors import AlreadyRunning
from dagd.lock import DataDirLock


def test_a_starting_daemon_waits_for_a_cli_command_holding_the_lock(tmp_path: Path) -> None:
    cli = DataDirLock(tmp_path / "dagd.lock")
    cli.acquire()  # an offline `dagd trigger`: holds it, publishes nothing
    releaser = threading.Timer(0.2, cli.release)
    releaser.start()
    daemon = DataDirLock(tmp_path / "dagd.lock")
    try:
        daemon.acquire(patience=5.0)  # returns once the CLI lets go
        daemon.publish("127.0.0.1", 8080)
    finally:
        releaser.join()
        daemon.release()


def test_another_daemon_is_refused_at_once_naming_it(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path / "dagd.lock")
    first.acquire()
    first.publish("127.0.0.1", 8123)
    try:
        started = time.monotonic()
        with pytest.raises(AlreadyRunning, match=re.escape("serving http://127.0.0.1:8123")):
            DataDirLock(tmp_path / "dagd.lock").acquire(patience=5.0)
        assert time.monotonic() - started < 4.0  # not the 5 s of patience: a daemon holds it
    finally:
        first.release()


def test_without_patience_a_held_lock_is_refused(tmp_path: Path) -> None:
    cli = DataDirLock(tmp_path / "dagd.lock")
    cli.acquire()
    try:
        with pytest.raises(AlreadyRunning, match="data directory"):
            DataDirLock(tmp_path / "dagd.lock").acquire()
    finally:
        cli.release()


def test_a_probe_waits_for_a_silent_holder_instead_of_guessing_an_address(
    tmp_path: Path,
) -> None:
    """A CLI command holding the lock (no address) is waited out: no daemon, None; a
    daemon that publishes while the probe waits is found at its real address."""
    from dagd.lock import daemon_running

    path = tmp_path / "dagd.lock"
    cli = DataDirLock(path)
    cli.acquire()
    releaser = threading.Timer(0.2, cli.release)
    releaser.start()
    try:
        assert daemon_running(path, patience=5.0) is None
    finally:
        releaser.join()
    starting = DataDirLock(path)
    starting.acquire()
    publisher = threading.Timer(0.2, starting.publish, args=("127.0.0.1", 8765))
    publisher.start()
    try:
        holder = daemon_running(path, patience=5.0)
        assert holder is not None and (holder.host, holder.port) == ("127.0.0.1", 8765)
    finally:
        publisher.join()
        starting.release()


def test_concurrent_offline_commands_queue_on_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "dagd.lock"
    done: list[int] = []

    def command(n: int) -> None:
        with DataDirLock(path, patience=10.0):
            time.sleep(0.02)  # holding it for a moment, as an offline write does
            done.append(n)

    threads = [threading.Thread(target=command, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(done) == list(range(6))


def test_what_a_dead_holder_left_in_the_file_is_never_taken_for_a_daemon(
    tmp_path: Path,
) -> None:
    """After a kill -9 the file still names the dead daemon; whoever takes the lock next
    empties it, so a probe meanwhile waits instead of calling a dead address."""
    from dagd.lock import daemon_running, read_holder

    path = tmp_path / "dagd.lock"
    path.write_bytes(b'{"pid": 999999, "host": "127.0.0.1", "port": 8793}')
    cli = DataDirLock(path)
    cli.acquire()
    try:
        assert read_holder(path) is None
        releaser = threading.Timer(0.2, cli.release)
        releaser.start()
        assert daemon_running(path, patience=5.0) is None
    finally:
        releaser.join()
