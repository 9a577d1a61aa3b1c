"""The data directory's lock: one daemon per data directory, and where to reach it.

The daemon holds an exclusive `flock` on `dagd.lock` for its whole life and writes its
pid and address into the file; the CLI reads it to find the daemon's HTTP API.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from dagd.errors import AlreadyRunning, DaemonUnavailable


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    port: int
    data_dir: Path | None = None  # where the daemon's CLI token file is


class DataDirLock:
    def __init__(self, path: Path, *, patience: float = 0.0) -> None:
        self.path = path
        self.patience = patience  # what `with DataDirLock(...)` waits (see acquire)
        self._file: IO[bytes] | None = None

    def acquire(self, *, patience: float = 0.0) -> None:
        """Take the lock or raise AlreadyRunning; touches nothing else.

        `patience`: seconds to keep trying while the holder is not a daemon (a CLI
        command writing with no daemon, or probing for one, holds it for a moment).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+b")
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # flock offers no wake-up for a blocking try with a deadline: look again
                # every 20 ms, only while a short-lived CLI command may be the holder.
                if read_holder(self.path) is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
            f.close()
            holder = read_holder(self.path)
            who = f"pid {holder.pid}, serving http://{holder.host}:{holder.port}" if holder else "?"
            raise AlreadyRunning(
                f"another dagd ({who}) is already using the data directory "
                f"{self.path.parent}; stop it first or use another --data-dir"
            ) from None
        # What a previous holder wrote is stale now (it died without releasing: kill -9,
        # a crash): nobody must take it for the address of a daemon that runs.
        f.seek(0)
        f.truncate()
        f.flush()
        self._file = f

    def publish(self, host: str, port: int) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(orjson.dumps({"pid": os.getpid(), "host": host, "port": port}))
        self._file.flush()

    def unpublish(self) -> None:
        """Say no more where this daemon serves, still holding the lock (an exit that
        leaves the release to the kernel)."""
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self.unpublish()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> DataDirLock:
        self.acquire(patience=self.patience)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def read_holder(path: Path) -> Holder | None:
    try:
        data = orjson.loads(path.read_bytes())
        return Holder(pid=int(data["pid"]), host=str(data["host"]), port=int(data["port"]),
                      data_dir=path.parent)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def daemon_running(path: Path, *, patience: float = 30.0) -> Holder | None:
    """The daemon holding the lock, if one does (probed without taking the lock for long).

    A holder that has not said where it serves is a CLI command writing with no daemon,
    or a daemon still starting: wait, up to `patience` seconds, until it publishes its
    address (a daemon: return it) or lets go (no daemon: None). Never a guessed address.
    """
    if not path.exists():
        return None
    deadline = time.monotonic() + patience
    with open(path, "a+b") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_holder(path)
                if holder is not None:
                    return holder
                if time.monotonic() >= deadline:
                    raise DaemonUnavailable(
                        f"the data directory {path.parent} has been held for {patience:g}s "
                        "by a process that does not say where it serves; try again"
                    ) from None
                time.sleep(0.02)  # flock has no wake-up with a deadline: look again
                continue
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return None
