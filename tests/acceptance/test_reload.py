"""SIGHUP: the daemon reads its connections again from the config file (and the DAGs),
so an operator can point a connection elsewhere without a restart; a broken config file
keeps the connections it had."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from acceptance.harness import Daemon, Dagd, wait_until

pytestmark = pytest.mark.slow

PING_DAG = """
    from dagd import DAG, HttpTask

    with DAG("ping"):
        HttpTask(task_id="ping", conn="api", url="ping")
"""


class Recorder(ThreadingHTTPServer):
    hits: list[str]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = b'{"pong": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    started = []
    for _ in range(2):
        server = Recorder(("127.0.0.1", 0), Handler)
        server.hits = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    try:
        yield started[0], started[1]
    finally:
        for server in started:
            server.shutdown()
            server.server_close()


def config(dagd: Dagd, base_url: str) -> None:
    dagd.write_config()
    with dagd.config.open("a") as f:
        f.write(f'\n[connections.api]\nbase_url = "{base_url}"\n')


def run_ping(daemon: Daemon) -> str:
    status, body = daemon.request("POST", "/api/v1/dags/ping/runs", {})
    assert status == 201, body
    run_id = body["run_id"]

    def final() -> str:
        _, run = daemon.request("GET", f"/api/v1/runs/{run_id}")
        return run["state"] if run["state"] in ("success", "failed") else ""

    return wait_until(final, timeout=20, what=f"run {run_id} to end")


def test_sighup_reloads_the_connections_and_a_broken_file_keeps_them(
    dagd: Dagd, write_dag: Callable[[str, str], Path], servers: tuple[Recorder, Recorder]
) -> None:
    first, second = servers
    write_dag("ping.py", PING_DAG)
    config(dagd, f"http://127.0.0.1:{first.server_address[1]}/")
    daemon = dagd.start()
    assert run_ping(daemon) == "success"
    assert (first.hits, second.hits) == (["/ping"], [])

    config(dagd, f"http://127.0.0.1:{second.server_address[1]}/")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "connections: api" in daemon.log(), timeout=20, what="the reload")
    assert run_ping(daemon) == "success"
    assert (first.hits, second.hits) == (["/ping"], ["/ping"])

    dagd.config.write_text("[connections.api]\nbase_url = 42\n")  # broken: not a URL
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "the configuration is refused, the running one stays" in daemon.log(),
               timeout=20,
               what="the refused reload")
    assert run_ping(daemon) == "success"
    assert second.hits == ["/ping", "/ping"]  # still the connection that worked
