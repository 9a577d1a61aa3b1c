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
