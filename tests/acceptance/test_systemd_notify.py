"""`dagd run` under a notify socket, as systemd runs it (`Type=notify`, `WatchdogSec=`):
a real AF_UNIX datagram socket in a temp folder, NOTIFY_SOCKET and WATCHDOG_USEC set.

READY=1 comes after the STATUS lines for loading and recovering, with the API already
answering; WATCHDOG=1 comes from the event loop, so a task that blocks the loop stops
it (the kernel's receive times of the datagrams show none while the loop is blocked),
and it resumes after; SIGHUP gives RELOADING=1 with a MONOTONIC_USEC from the test's own
monotonic clock range, then READY=1; SIGTERM gives STOPPING=1."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from acceptance.harness import Daemon, Dagd

pytestmark = pytest.mark.slow

# Linux's SO_TIMESTAMPNS (35 on x86-64 and arm64; Python names it from 3.14 on): each
# datagram comes with the kernel's time of its arrival, a struct timespec.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
WATCHDOG_USEC = 400_000  # a heartbeat every 0.2 s
STARTUP = 30.0  # generous: a busy 2-core machine


@dataclass(frozen=True)
class Message:
    text: str
    sent_at: float  # the kernel's receive time (CLOCK_REALTIME, SO_TIMESTAMPNS)

    @property
    def fields(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.text.splitlines() if "=" in line)


class NotifySocket:
    """What systemd listens on: datagrams collected by a thread, each with its time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[Message] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.bind(str(path))
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(0.2)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                data, ancdata, _, _ = self._sock.recvmsg(4096, 1024)
            except TimeoutError:
                continue
            except OSError:
                return
            sent_at = time.time()
            for level, kind, raw in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    sent_at = sec + nsec / 1e9
            self.messages.append(Message(data.decode(), sent_at))

    def texts(self) -> list[str]:
        return [m.text for m in list(self.messages)]

    def index(self, predicate: Callable[[Message], bool], start: int = 0) -> int:
        """The index of the first message from `start` on that matches, or -1."""
        for i, m in enumerate(list(self.messages)[start:], start):
            if predicate(m):
                return i
        return -1

    def pings(self) -> list[float]:
        return [m.sent_at for m in list(self.messages) if m.text == "WATCHDOG=1"]

    def close(self) -> None:
        self._closing.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    # A short folder of its own: a socket's path must stay under 108 bytes.
    with tempfile.TemporaryDirectory(prefix="dagd-notify-") as folder:
        sock = NotifySocket(Path(folder) / "notify.sock")
        try:
            yield sock
        finally:
            sock.close()


def spawn(dagd: Dagd, notify: NotifySocket) -> Daemon:
    return dagd.spawn(env={"NOTIFY_SOCKET": str(notify.path),
                           "WATCHDOG_USEC": str(WATCHDOG_USEC)})


def is_ready(m: Message) -> bool:
    return m.fields.get("READY") == "1"


def wait_ready(dagd: Dagd, notify: NotifySocket, daemon: Daemon, start: int = 0) -> int:
    index = dagd.wait(lambda: notify.index(is_ready, start) + 1, timeout=STARTUP,
                      what="READY=1") - 1
    if not daemon.port:
        holder = json.loads((dagd.data_dir / "dagd.lock").read_bytes())
        daemon.port = int(holder["port"])
    return index


def trigger(daemon: Daemon, dag_id: str) -> int:
    status, body = daemon.request("POST", f"/api/v1/dags/{dag_id}/runs", {"conf": {}})
    assert status == 201, body
    return int(body["run_id"])


LONG_DAG = """
    from dagd import DAG, ShellTask

    with DAG("long"):
        ShellTask(task_id="nap", command="exec sleep 300")
"""


def test_ready_comes_after_loading_recovery_and_the_port_then_the_heartbeat(
    dagd: Dagd, write_dag: Callable[[str, str], Path], notify: NotifySocket
) -> None:
    write_dag("long.py", LONG_DAG)
    # A daemon killed with an attempt running: the next one has one to recover.
    first = dagd.start()
    trigger(first, "long")
    dagd.wait(lambda: [a for a in dagd.attempts("long", "nap") if a["state"] == "running"],
              timeout=STARTUP, what="the attempt to run")
    first.kill()

    daemon = spawn(dagd, notify)
    ready = wait_ready(dagd, notify, daemon)
    # At READY=1 the API answers at once: no retry, no wait.
    assert daemon.healthy(), daemon.log()
    texts = notify.texts()
    loading = texts.index("STATUS=loading DAGs")
    recovering = texts.index("STATUS=recovering 1 attempts")
    assert loading < recovering < ready, texts
    assert notify.messages[ready].fields["STATUS"] == (
        f"serving on http://127.0.0.1:{daemon.port} (1 DAGs)")
    assert "WATCHDOG=1" not in texts[:ready]  # systemd arms the watchdog at READY=1

    # The heartbeat: repeatedly, about every WATCHDOG_USEC / 2.
    dagd.wait(lambda: len(notify.pings()) >= 5, timeout=STARTUP, what="five WATCHDOG=1")
    pings = notify.pings()
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert min(gaps) > 0.1, gaps  # every 0.2 s, not in a burst


HOG_DAG = """
    import json
    import time
    from pathlib import Path

    from dagd import DAG, task

    with DAG("hog"):
        @task
        async def hog():
            start = time.time()
            time.sleep(3)  # blocks the daemon's event loop: an async task runs in it
            end = time.time()
            Path({out!r}).write_text(json.dumps([start, end]))

        hog()
"""


def test_a_blocked_event_loop_stops_the_heartbeat_until_it_answers_again(
    dagd: Dagd, write_dag: Callable[[str, str], Path], notify: NotifySocket, tmp_path: Path
) -> None:
    out = tmp_path / "hog.json"
    write_dag("hog.py", HOG_DAG.format(out=str(out)))
    daemon = spawn(dagd, notify)
    wait_ready(dagd, notify, daemon)
    dagd.wait(lambda: len(notify.pings()) >= 2, timeout=STARTUP, what="the heartbeat")
    trigger(daemon, "hog")
    dagd.wait(out.exists, timeout=STARTUP, what="the loop-blocking task to end")
    start, end = json.loads(out.read_text())
    dagd.wait(lambda: len([t for t in notify.pings() if t > end]) >= 3, timeout=STARTUP,
              what="the heartbeat to resume")
    pings = notify.pings()
    during = [t - start for t in pings if start < t < end]
    assert during == [], f"WATCHDOG=1 sent while the loop was blocked: {during}"
    before = [t for t in pings if t < start]
    assert before, "no heartbeat before the block"
    gap = min(t for t in pings if t > end) - before[-1]
    print(f"loop blocked {end - start:.2f}s; heartbeat gap across it {gap:.2f}s")
    # The daemon's own loop watchdog names the culprit in the log, too.
    dagd.wait(lambda: "the event loop was blocked for" in daemon.log(), timeout=STARTUP,
              what="the loop watchdog's line")
    assert "hog.hog[run 1 #1]" in daemon.log()


def test_sighup_says_reloading_with_its_monotonic_time_then_ready_and_sigterm_stopping(
    dagd: Dagd, write_dag: Callable[[str, str], Path], notify: NotifySocket
) -> None:
    write_dag("long.py", LONG_DAG)
    daemon = spawn(dagd, notify)
    ready = wait_ready(dagd, notify, daemon)
    # A DAG file added while it serves: the status line follows.
    write_dag("hog.py", HOG_DAG.format(out="/dev/null"))
    dagd.wait(lambda: notify.index(lambda m: m.fields.get("STATUS", "").endswith(
        "(2 DAGs)"), ready) + 1, timeout=STARTUP, what="STATUS=serving ... (2 DAGs)")

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    daemon.signal(signal.SIGHUP)
    reloading = dagd.wait(
        lambda: notify.index(lambda m: m.fields.get("RELOADING") == "1", ready) + 1,
        timeout=STARTUP, what="RELOADING=1") - 1
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = notify.messages[reloading].fields
    assert before <= int(fields["MONOTONIC_USEC"]) <= after, (before, fields, after)
    assert notify.messages[reloading].text.startswith("RELOADING=1\nMONOTONIC_USEC=")
    again = wait_ready(dagd, notify, daemon, reloading)
    assert notify.messages[again].fields["STATUS"].startswith("serving on http://")

    trigger(daemon, "long")
    dagd.wait(lambda: [a for a in dagd.attempts("long", "nap") if a["state"] == "running"],
              timeout=STARTUP, what="the attempt to run")
    daemon.signal(signal.SIGTERM)
    stopping = dagd.wait(
        lambda: notify.index(lambda m: m.fields.get("STOPPING") == "1", again) + 1,
        timeout=STARTUP, what="STOPPING=1") - 1
    assert notify.messages[stopping].fields["STATUS"] == "draining: 1 attempts running"
    assert daemon.wait_exit(STARTUP) == 0
