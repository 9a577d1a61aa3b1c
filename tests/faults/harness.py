"""What the fault scenarios share: a dagd installation in a temporary folder, `dagd run`
as a real subprocess in its own session, plain HTTP to it (and raw bytes over a socket),
its database read-only, and the reaper that kills every process a scenario started.

Waits are on conditions with deadlines (`wait_until`); the only sleeps are a sender's
pacing and the "random moment" a fault is injected at.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

T = TypeVar("T")

STEP = 0.05  # seconds between two looks at a condition
START_TIMEOUT = 30.0  # from exec to a healthy API, on a busy 2-core machine
SECRET = "faults-secret"  # the webhooks' bearer secret, from the daemon's environment
AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}

_script = Path(sys.executable).with_name("dagd")
DAGD: list[str] = [str(_script)] if _script.exists() else [sys.executable, "-m", "dagd.cli"]


class Timeout(Exception):
    """A condition did not hold before its deadline."""


def wait_until(predicate: Callable[[], T], *, timeout: float, what: str,
               step: float = STEP) -> T:
    """The first truthy value of `predicate()`; Timeout after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


@dataclass
class Result:
    """A scenario's figures (name -> value, in the order measured) and its violations."""

    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    skipped: str | None = None
    logs: list[Path] = field(default_factory=list)  # daemon logs, kept on a violation

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.violations.append(message)
        return ok


# -- processes ----------------------------------------------------------------------------
def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")


def processes_under(root: Path) -> list[int]:
    """Live processes whose working directory is `root` or below it: everything a daemon
    started there and its tasks started (they inherit the directory), whatever session
    or parent they have now."""
    prefix = str(root)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if (cwd == prefix or cwd.startswith(prefix + "/")) and alive(int(name)):
            found.append(int(name))
    return found


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot): with the pid, names one process even
    after the kernel reuses the number (pid_max may be as low as 32768)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


class Reaper:
    """Every process the suite starts, killed (SIGKILL, whole groups) at the end.

    A group is signalled only while its leader is not reaped (its number cannot have
    been given to anyone else); an adopted pid only if it is still the same process.
    """

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.adopted: set[tuple[int, int | None]] = set()
        self.roots: list[Path] = []

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def adopt(self, pid: int) -> None:
        """A process started by something we started (a task's child): kill it too."""
        self.adopted.add((pid, start_time(pid)))

    def watch(self, root: Path) -> None:
        """Anything whose working directory is under `root` is ours (see processes_under)."""
        self.roots.append(root)

    def kill_all(self) -> int:
        killed = 0
        for proc in self.procs:
            if proc.returncode is None:  # not reaped: its pid and group id are still ours
                killed += alive(proc.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        strays = {p for p, started in self.adopted if started and start_time(p) == started}
        strays |= {p for root in self.roots for p in processes_under(root)}
        for pid in strays:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
        return killed


# -- HTTP ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError:
            return {}


def request(port: int, method: str, path: str, *, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
    """One HTTP request to 127.0.0.1:port (no proxy, no redirect); OSError if no answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except http.client.HTTPException as exc:  # a malformed or missing answer
        raise OSError(f"bad answer: {exc!r}") from exc
    finally:
        conn.close()


def raw_request(port: int, data: bytes, *, timeout: float = 5.0) -> int | None:
    """Send `data` as it is; the status of the answer, None when the server closed the
    connection (or stayed silent `timeout` seconds) without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # refused early (a 413, a 400): read it anyway
            sock.sendall(data)
        buf = b""
        try:
            while b"\r\n" not in buf and len(buf) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
    parts = buf.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


# -- a daemon -----------------------------------------------------------------------------
@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    data_dir: Path | None = None  # where its CLI token file is

    def api_auth(self) -> dict[str, str]:
        """The CLI token this daemon wrote at its start, as `dagd` commands send it."""
        try:
            token = (self.data_dir / "cli-token").read_text().strip() if self.data_dir else ""
        except OSError:
            token = ""
        return {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """Running (not exited): looked up in /proc, so that the daemon is not reaped
        here and its group id stays ours until `stop` or the reaper signals it."""
        return self.proc.returncode is None and alive(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                **kwargs: Any) -> Reply:
        """One request; the API's with the CLI token (webhooks: their own auth)."""
        if path.startswith("/api/"):
            headers = {**(headers or {}), **self.api_auth()}
        return request(self.port, method, path, headers=headers, **kwargs)

    def post(self, path: str, obj: Any, *, headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> Reply:
        return self.request("POST", path, body=orjson.dumps(obj),
                            headers={**AUTH, **(headers or {})}, timeout=timeout)

    def health(self, timeout: float = 10.0) -> Reply | None:
        try:
            return self.request("GET", "/api/v1/health", timeout=timeout)
        except OSError:
            return None

    def kill9(self) -> None:
        """SIGKILL the daemon's process only (its workers die with it), and reap it."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for the exit; past `timeout`, SIGKILL its whole group. The
        group is signalled before the daemon is reaped, while its id is still ours."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.02)  # a zombie counts as gone: it is reaped below
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # the daemon if it is late, and its group
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def status(self, key: str) -> int:
        """A number from /proc/PID/status in kB (VmRSS, VmHWM); 0 once gone."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0


class Install:
    """One dagd installation: DAGs folder, data directory, config file, its daemons."""

    def __init__(self, root: Path, reaper: Reaper, *, data: Path | None = None) -> None:
        self.root = root
        self.reaper = reaper
        self.dags = root / "dags"
        self.data = data or root / "data"
        self.config = root / "dagd.toml"
        self.daemons: list[Daemon] = []
        self.dags.mkdir(parents=True, exist_ok=True)
        reaper.watch(root)
        self.write_config()

    @property
    def db_path(self) -> Path:
        return self.data / "dagd.db"

    def write_config(self, extra: str = "", *, grace: float = 2.0,
                     log_level: str = "INFO") -> None:
        """[core] with the grace period and log level; `extra`: more sections."""
        self.config.write_text(f'[core]\nshutdown_grace_period = {grace}\n'
                               f'log_level = "{log_level}"\n\n{extra}\n')

    def write_dag(self, name: str, source: str) -> Path:
        path = self.dags / name
        path.write_text(textwrap.dedent(source))
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGD_")}
        env["FAULTS_SECRET"] = SECRET
        env["COLUMNS"] = "200"
        return env

    def spawn(self, *, port: int = 0) -> Daemon:
        log_path = self.root / f"daemon-{len(self.daemons) + 1}.log"
        with open(log_path, "wb") as log:
            proc = self.reaper.popen(
                [*DAGD, "--config", str(self.config), "--dags-folder", str(self.dags),
                 "--data-dir", str(self.data), "run", "--host", "127.0.0.1",
                 "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                cwd=self.root, env=self.env(),
            )
        daemon = Daemon(proc, log_path, data_dir=self.data)
        self.daemons.append(daemon)
        return daemon

    def start(self, *, port: int = 0, timeout: float = START_TIMEOUT) -> Daemon:
        """`dagd run`, returned once its API answers /api/v1/health on the port it
        published in the lock file."""
        daemon = self.spawn(port=port)
        lock = self.data / "dagd.lock"

        def published() -> int:
            if not daemon.alive():
                code = daemon.proc.wait(timeout=10)
                raise RuntimeError(f"dagd exited with {code} while starting:\n"
                                   f"{daemon.log()[-3000:]}")
            try:
                holder = orjson.loads(lock.read_bytes())
            except (OSError, ValueError):
                return 0
            return int(holder.get("port", 0)) if holder.get("pid") == daemon.pid else 0

        daemon.port = wait_until(published, timeout=timeout, what="the lock file's port")
        wait_until(lambda: published() and daemon.health(timeout=5) is not None,
                   timeout=timeout, what="GET /api/v1/health")
        return daemon

    def close(self) -> None:
        for daemon in self.daemons:
            if daemon.alive():
                daemon.stop(timeout=15)

    # -- the database, read-only -------------------------------------------------------
    @contextlib.contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            yield conn
        finally:
            conn.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.db_path.exists():
            return []
        with self.db() as conn:
            try:
                return list(conn.execute(sql, params).fetchall())
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # the schema is not there yet
                    return []
                raise

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def integrity(self) -> str:
        with self.db() as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)

    def active_runs(self) -> int:
        return int(self.scalar(
            "SELECT count(*) FROM run WHERE state IN ('queued', 'running')") or 0)

    def run_states(self, dag_id: str | None = None) -> dict[str, int]:
        if dag_id is None:
            rows = self.query("SELECT state, count(*) FROM run GROUP BY state")
        else:
            rows = self.query("SELECT state, count(*) FROM run WHERE dag_id = ? "
                              "GROUP BY state", (dag_id,))
        return {state: n for state, n in rows}

    def run_state(self, run_id: int) -> str | None:
        state = self.scalar("SELECT state FROM run WHERE id = ?", (run_id,))
        return str(state) if state is not None else None

    def attempts(self, dag_id: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT r.id, t.task_id, a.try_number, a.state, a.pid, a.error, a.log_path, "
            "a.started_at, a.ended_at FROM attempt a JOIN task_instance t ON t.id = a.ti_id "
            "JOIN run r ON r.id = t.run_id WHERE r.dag_id = ? ORDER BY a.id", (dag_id,))
        keys = ("run_id", "task_id", "try_number", "state", "pid", "error", "log_path",
                "started_at", "ended_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def wait_final(self, run_ids: list[int], *, timeout: float) -> dict[int, str]:
        """Wait until each run has ended; their final states."""
        final = ("success", "failed")
        if not run_ids:
            return {}

        def done() -> dict[int, str]:  # empty (false) until every run has ended
            states = {r: self.run_state(r) or "" for r in run_ids}
            return states if all(s in final for s in states.values()) else {}

        return wait_until(done, timeout=timeout, what=f"runs {run_ids} to end", step=0.2)


def lock_free(path: Path) -> bool:
    """True when nobody holds the data directory's lock (probed, released at once)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Context:
    """What a scenario gets: the sizes to use, a seed, a folder, the reaper."""

    quick: bool
    seed: int
    tmp: Path
    reaper: Reaper
    installs: list[Install] = field(default_factory=list)

    def size(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def install(self, name: str, *, data: Path | None = None) -> Install:
        inst = Install(self.tmp / name, self.reaper, data=data)
        self.installs.append(inst)
        return inst
