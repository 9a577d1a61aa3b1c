"""Authentication with a real `dagd run`: the CLI's token file, the printed login link,
`dagd users`, `dagd tokens` and `dagd login-url` as real commands, and a log that
carries no secret."""

from __future__ import annotations

import http.client
import re
import stat
import subprocess
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from acceptance.harness import CLI_TIMEOUT, CliResult, Daemon, Dagd, table_rows

pytestmark = pytest.mark.slow

DAGS = """
from dagd import DAG, task

with DAG("greet"):
    @task
    async def hello():
        return "hi"

    hello()
"""

PASSWORD = "tr0ub4dor&3 for ada"
LINK = re.compile(r"log in at (http://127\.0\.0\.1:\d+/login\?token=[\w-]+)")


def cli_with_stdin(dagd: Dagd, stdin: str, *args: str) -> CliResult:
    done = subprocess.run(dagd.argv(*args), input=stdin.encode(), capture_output=True,
                          timeout=CLI_TIMEOUT, cwd=dagd.root, env=dagd.env(), check=False)
    return CliResult(done.returncode, done.stdout.decode(errors="replace"),
                     done.stderr.decode(errors="replace"))


def fetch(daemon: Daemon, method: str, path: str, *, body: str | None = None,
          headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One request, no redirect followed; the answer read."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def session_cookie(resp: http.client.HTTPResponse) -> str:
    header = resp.getheader("Set-Cookie") or ""
    match = re.match(r"dagd_session=([^;]+)", header)
    assert match, header
    return match[1]


def test_the_cli_and_the_login_link_with_auth_on(
    dagd: Dagd, write_dag: Callable[[str, str], Path]
) -> None:
    write_dag("greet.py", DAGS)
    daemon = dagd.start()
    token_file = dagd.data_dir / "cli-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert fetch(daemon, "GET", "/api/v1/dags").status == 401  # no token: refused

    done = dagd.cli("trigger", "greet")
    assert done.code == 0, done
    done = dagd.cli("dags", "pause", "greet")
    assert done.code == 0, done
    assert dagd.query("SELECT is_paused FROM dag WHERE dag_id = 'greet'") == [(1,)]

    # The link printed at start (no user yet) logs in once.
    link = dagd.wait(lambda: LINK.search(daemon.log()), timeout=10, what="the login link")
    url = urllib.parse.urlsplit(link[1])
    assert url.port == daemon.port
    first = fetch(daemon, "GET", f"{url.path}?{url.query}")
    assert first.status == 303 and first.getheader("Location") == "/"
    cookie = session_cookie(first)
    assert fetch(daemon, "GET", "/api/v1/dags",
                 headers={"Cookie": f"dagd_session={cookie}"}).status == 200
    assert fetch(daemon, "GET", f"{url.path}?{url.query}").status == 401

    # `dagd login-url` asks the daemon for another, with the CLI token.
    done = dagd.cli("login-url")
    assert done.code == 0, done
    made = urllib.parse.urlsplit(done.stdout.strip())
    assert made.path == "/login" and made.query.startswith("token=")
    assert fetch(daemon, "GET", f"{made.path}?{made.query}").status == 303
    assert fetch(daemon, "GET", f"{made.path}?{made.query}").status == 401

    # A stale token file (another daemon's, say) is refused with a hint.
    token_file.write_text("dagd_not-the-token\n")
    done = dagd.cli("dags", "unpause", "greet")
    assert done.code == 1 and "cli-token" in done.stderr, done


def test_users_and_tokens_from_the_cli_with_no_secret_in_the_log(
    dagd: Dagd, write_dag: Callable[[str, str], Path]
) -> None:
    write_dag("greet.py", DAGS)
    done = cli_with_stdin(dagd, PASSWORD + "\n", "users", "add", "ada", "--role", "operator")
    assert done.code == 0, done
    users_file = dagd.data_dir / "users.json"
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert PASSWORD not in users_file.read_text()
    bad = [
        (("users", "add", "ada"), "already exists"),
        (("users", "add", "bad name!"), "not allowed"),
        (("users", "add", "bob", "--role", "admin"), "unknown role 'admin'"),
        (("tokens", "create", "ci", "--role", "root"), "unknown role 'root'"),
        (("users", "remove", "nobody"), "no user named 'nobody'"),
        (("tokens", "revoke", "nothing"), "no token named 'nothing'"),
    ]
    for args, message in bad:
        done = cli_with_stdin(dagd, "pw\n", *args)
        assert done.code == 1 and message in done.stderr, (args, done)

    made = dagd.cli("tokens", "create", "ci", "--role", "operator")
    assert made.code == 0, made
    token = made.stdout.strip()
    assert token.startswith("dagd_") and "shown once" in made.stderr
    assert dagd.cli("tokens", "create", "dash").code == 0

    daemon = dagd.start()
    assert not LINK.search(daemon.log())  # a user exists: no link printed
    listed = dagd.cli("users", "list")
    assert table_rows(listed.stdout) == [["ada", "operator"]]
    tokens = dagd.cli("tokens", "list")
    assert [row[:2] for row in table_rows(tokens.stdout)] == [["ci", "operator"],
                                                               ["dash", "viewer"]]
    for shown in (listed.output, tokens.output):
        assert "scrypt" not in shown and token not in shown
        assert not re.search(r"[0-9a-f]{64}", shown)

    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert fetch(daemon, "POST", "/api/v1/dags/greet/runs", body='{"conf": {}}',
                 headers=bearer).status == 201
    login = fetch(daemon, "POST", "/login", body=urllib.parse.urlencode(
        {"username": "ada", "password": PASSWORD, "next": "/"}),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert login.status == 303
    cookie = session_cookie(login)
    wrong = fetch(daemon, "POST", "/login", body="username=ada&password=wr0ng-guess-pw",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong.status == 401

    assert dagd.cli("tokens", "revoke", "ci").code == 0
    assert fetch(daemon, "GET", "/api/v1/dags", headers=bearer).status == 401
    assert dagd.cli("users", "remove", "ada").code == 0
    assert fetch(daemon, "GET", "/api/v1/dags",
                 headers={"Cookie": f"dagd_session={cookie}"}).status == 401

    log = daemon.log()
    assert "ada (operator) logged in" in log and "login refused for 'ada'" in log
    cli_token = (dagd.data_dir / "cli-token").read_text().strip()
    for secret in (PASSWORD, "wr0ng-guess-pw", token, cli_token, cookie, cookie.split(".")[0]):
        assert secret not in log, f"a secret in the daemon's log: {secret[:6]}..."
    assert "scrypt$" not in log
