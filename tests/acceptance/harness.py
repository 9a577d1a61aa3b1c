"""The acceptance harness: `dagd run` as a real subprocess, the CLI as real subprocesses.

Every daemon a test starts is tracked and killed at teardown with its whole process
group (and any worker the database says it ran), whether the test passed or not.
Waiting is always on a condition with a deadline: `wait_until` polls with a short step.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

STEP = 0.05  # seconds between two looks at a condition
START_TIMEOUT = 20.0  # from exec to a healthy API, on a busy 2-core machine
CLI_TIMEOUT = 30.0

_script = Path(sys.executable).with_name("dagd")
DAGD: list[str] = [str(_script)] if _script.exists() else [sys.executable, "-m", "dagd.cli"]


def wait_until(
    predicate: Callable[[], T], *, timeout: float, what: str, step: float = STEP
) -> T:
    """Return the first truthy value of `predicate()`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        if line.startswith("State:"):
            return line.split()[1] in ("Z", "X")
    return False


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in `text`, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class LineReader:
    """Collects a pipe's lines in a thread, so a test can wait for one with a deadline."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode(errors="replace"))

    def text(self) -> str:
        return "".join(self.lines)

    def join(self, timeout: float) -> str:
        """The whole output, once the pipe is closed."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the pipe is still open"
        return self.text()


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


@dataclass
class Daemon:
    """One `dagd run` subprocess, started in its own session."""

    proc: subprocess.Popen[bytes]
    stderr_path: Path
    stderr_file: IO[bytes]
    port: int = 0
    data_dir: Path | None = None  # where its CLI token file is

    def auth_headers(self) -> dict[str, str]:
        """What `dagd` commands send: the CLI token this daemon wrote at its start."""
        try:
            token = (self.data_dir / "cli-token").read_text().strip() if self.data_dir else ""
        except OSError:
            token = ""
        return {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url(path), data=data, method=method,
            headers={"Content-Type": "application/json", **self.auth_headers()},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"{}")

    def healthy(self) -> bool:
        try:
            status, body = self.request("GET", "/api/v1/health")
        except OSError:
            return False
        return status == 200 and body.get("status") == "ok"

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"dagd (pid {self.pid}) still running {timeout:g}s later; its log:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the daemon and its process group; reap it."""
        _kill_group(self.pid)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        else:
            _kill_group(self.pid)  # anything the daemon left in its group
        self.stderr_file.close()


@dataclass
class Dagd:
    """One test's dagd installation: a DAGs folder, a data dir, a config file."""

    root: Path
    dags_folder: Path
    data_dir: Path
    config: Path
    daemons: list[Daemon] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # -- configuration --------------------------------------------------------------
    def write_config(self, *, grace: float = 2.0) -> None:
        self.config.write_text(
            f"[core]\nshutdown_grace_period = {grace}\nlog_level = \"INFO\"\n\n"
            "[database]\nsynchronous = \"normal\"\n"
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGD_")}
        env["COLUMNS"] = "200"  # rich tables must not wrap
        return env

    def argv(
        self, *args: str, data_dir: Path | None = None, config: Path | None = None
    ) -> list[str]:
        return [
            *DAGD,
            "--config", str(config or self.config),
            "--dags-folder", str(self.dags_folder),
            "--data-dir", str(data_dir or self.data_dir),
            *args,
        ]

    # -- the CLI ----------------------------------------------------------------------
    def cli(
        self,
        *args: str,
        timeout: float = CLI_TIMEOUT,
        data_dir: Path | None = None,
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> CliResult:
        done = subprocess.run(
            self.argv(*args, data_dir=data_dir, config=config),
            capture_output=True,
            timeout=timeout,
            cwd=self.root,
            env=env or self.env(),
            check=False,
        )
        return CliResult(
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )

    def popen_cli(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a CLI command without waiting; it is killed at teardown if still running."""
        proc = subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.root,
            env=self.env(),
            start_new_session=True,
        )
        self.others.append(proc)
        return proc

    # -- the daemon -------------------------------------------------------------------
    def spawn(self, *, data_dir: Path | None = None,
              env: dict[str, str] | None = None) -> Daemon:
        """Start `dagd run` on port 0 without waiting for it; `env`: extra variables."""
        n = len(self.daemons) + 1
        stderr_path = self.root / f"daemon-{n}.stderr"
        stderr_file = open(stderr_path, "wb")  # closed by Daemon.close
        proc = subprocess.Popen(
            self.argv("run", "--host", "127.0.0.1", "--port", "0", data_dir=data_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            cwd=self.root,
            env={**self.env(), **(env or {})},
            start_new_session=True,
        )
        daemon = Daemon(proc, stderr_path, stderr_file, data_dir=data_dir or self.data_dir)
        self.daemons.append(daemon)
        return daemon

    def start(self) -> Daemon:
        """Start `dagd run` and return once its API answers on the port it published."""
        daemon = self.spawn()
        lock = self.data_dir / "dagd.lock"

        def alive() -> None:
            if daemon.proc.poll() is not None:
                raise AssertionError(
                    f"dagd exited with {daemon.proc.returncode} while starting:\n{daemon.log()}"
                )

        def published() -> int:
            alive()
            try:
                holder = json.loads(lock.read_bytes())
            except (OSError, ValueError):
                return 0
            return int(holder["port"]) if holder.get("pid") == daemon.pid else 0

        def healthy() -> bool:
            alive()
            return daemon.healthy()

        daemon.port = wait_until(published, timeout=START_TIMEOUT, what="dagd.lock")
        try:
            wait_until(healthy, timeout=START_TIMEOUT, what="GET /api/v1/health")
        except AssertionError as exc:
            try:
                answer: object = daemon.request("GET", "/api/v1/health")
            except OSError as error:
                answer = error
            raise AssertionError(f"{exc}; last answer {answer}\n{daemon.log()}") from None
        return daemon

    def wait(self, predicate: Callable[[], T], *, timeout: float, what: str) -> T:
        """wait_until, failing at once (with the logs) if a live daemon died meanwhile."""
        live = [d for d in self.daemons if d.proc.poll() is None]

        def check() -> T:
            for d in live:
                if d.proc.poll() is not None:
                    raise AssertionError(f"dagd died ({d.proc.returncode}):\n{d.log()}")
            return predicate()

        try:
            return wait_until(check, timeout=timeout, what=what)
        except AssertionError as exc:
            logs = "\n".join(f"--- daemon {d.pid}\n{d.log()[-4000:]}" for d in self.daemons)
            raise AssertionError(f"{exc}\n{logs}") from None

    # -- the database, read-only ------------------------------------------------------
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        db = self.data_dir / "dagd.db"
        if not db.exists():
            return []
        with contextlib.closing(
            sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        ) as conn:
            try:
                return list(conn.execute(sql, params).fetchall())
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # schema not created yet
                    return []
                raise

    def run_states(self) -> dict[int, str]:
        return dict(self.query("SELECT id, state FROM run ORDER BY id"))

    def attempts(self, dag_id: str, task_id: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT r.id, a.try_number, a.state, a.pid, a.error, a.log_path "
            "FROM attempt a JOIN task_instance t ON t.id = a.ti_id "
            "JOIN run r ON r.id = t.run_id "
            "WHERE r.dag_id = ? AND t.task_id = ? ORDER BY r.id, a.try_number",
            (dag_id, task_id),
        )
        keys = ("run_id", "try_number", "state", "pid", "error", "log_path")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def ti_state(self, run_id: int, task_id: str) -> str | None:
        rows = self.query(
            "SELECT state FROM task_instance WHERE run_id = ? AND task_id = ?", (run_id, task_id)
        )
        return rows[0][0] if rows else None

    def wait_runs(self, expected: dict[int, str], *, timeout: float) -> None:
        def done() -> bool:
            states = self.run_states()
            return all(states.get(run_id) == state for run_id, state in expected.items())

        try:
            self.wait(done, timeout=timeout, what=f"runs {expected}")
        except AssertionError as exc:
            raise AssertionError(f"run states {self.run_states()}\n{exc}") from None

    # -- teardown ---------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.others:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for daemon in self.daemons:
            daemon.close()
        # Workers live in their own sessions; they die with the daemon (PDEATHSIG), but
        # make sure none outlives the test.
        with contextlib.suppress(sqlite3.Error):
            for (pid,) in self.query("SELECT pid FROM attempt WHERE pid IS NOT NULL"):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"dagd.executors.worker" in cmdline:
                    _kill_group(pid)

