"""A real Dask cluster for the tests: `dask scheduler` and `dask worker` processes on
127.0.0.1, each in a session of its own, killed with their whole process group at the
end whatever happened (a worker's dagd pool dies with it: PR_SET_PDEATHSIG).

The test process never imports `distributed` itself (its warnings are errors here):
what the tests need to know of the cluster they ask a short `python -c` subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from acceptance.harness import wait_until

READY_TIMEOUT = 30.0  # seconds for the scheduler and its workers to be up, on 2 busy cores

_ASK = """
import json, sys
from distributed import Client
with Client(sys.argv[1], timeout=20) as c:
    c.wait_for_workers(int(sys.argv[2]), timeout=30)
    info = c.scheduler_info(n_workers=-1)
    print(json.dumps({w["name"]: addr for addr, w in info["workers"].items()}))
"""


def _dask() -> list[str]:
    script = Path(sys.executable).with_name("dask")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dask"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.root / f"{name}.log", "wb")  # the child holds it
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGD_")}
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                cwd=self.root, env=env, start_new_session=True)
        out.close()
        self.procs[name] = proc
        return proc

    def start_scheduler(self) -> None:
        self._spawn("scheduler", [*_dask(), "scheduler", "--host", "127.0.0.1",
                                  "--port", str(self.port), "--no-dashboard"])

    def start_worker(self, name: str, *, resources: str = "") -> None:
        argv = [*_dask(), "worker", self.address, "--name", name, "--nthreads", "1",
                "--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "60"]
        if resources:
            argv += ["--resources", resources]
        self._spawn(name, argv)

    def workers(self, count: int) -> dict[str, str]:
        """{name: address} once `count` workers are connected."""
        done = subprocess.run([sys.executable, "-c", _ASK, self.address, str(count)],
                              capture_output=True, timeout=READY_TIMEOUT + 30, check=False)
        assert done.returncode == 0, f"the cluster is not up:\n{done.stderr.decode()}\n" \
            f"{self.logs()}"
        found: dict[str, str] = json.loads(done.stdout)
        return found

    def kill(self, name: str) -> None:
        """SIGKILL a process and its whole group (a worker's nanny with it)."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, name: str) -> None:
        """SIGTERM a process (the scheduler's clean stop) and wait for it."""
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def exited(self, name: str, timeout: float) -> None:
        """Wait for a process to end by itself (a worker whose scheduler closed)."""
        proc = self.procs.pop(name)
        try:
            proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.root.glob("*.log")))

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def wait_port_free(port: int, timeout: float) -> None:
    def free() -> bool:
        with socket.socket() as sock:
            # As the scheduler binds it: connections left in TIME_WAIT do not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    wait_until(free, timeout=timeout, what=f"port {port} free")
