"""HttpTask against a real aiohttp server on 127.0.0.1: JSON to XCom, request bodies,
status checks, Retry-After, the response size cap, response_check, connections from the
config with secrets from the environment, timeouts and the template sandbox."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from dagd.config import Settings, load_settings
from dagd.errors import ConfigError
from dagd.kinds.http import parse_retry_after
from integration.harness import StartEngine, read_text

pytestmark = pytest.mark.anyio

WriteDag = Callable[[str, str], Path]


@dataclass
class Server:
    """What the test server saw; `base` is its http://127.0.0.1:PORT."""

    base: str = ""
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    flaky_hits: list[float] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)


def make_app(server: Server) -> web.Application:
    async def items(request: web.Request) -> web.Response:
        return web.json_response({"items": [1, 2, 3], "q": request.query.get("q")},
                                 headers={"ETag": '"v1"', "X-Private": "not kept"})

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        server.received.append((request.method, request.path, body))
        return web.json_response({"received": body}, status=201)

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope " * 1000)

    async def flaky(request: web.Request) -> web.Response:
        server.flaky_hits.append(anyio.current_time())
        if len(server.flaky_hits) == 1:
            return web.Response(status=503, text="busy", headers={"Retry-After": "1"})
        return web.json_response({"ok": True})

    async def big(request: web.Request) -> web.StreamResponse:
        # Chunked, no Content-Length: the cap must hold while reading.
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"x" * 1000)
        await response.write_eof()
        return response

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain words\n")

    async def auth(request: web.Request) -> web.Response:
        server.authorization.append(request.headers.get("Authorization"))
        return web.json_response({"tenant": request.headers.get("X-Tenant")})

    async def slow(request: web.Request) -> web.Response:
        await server.release.wait()  # until the test ends
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_get("/items", items)
    app.router.add_post("/echo", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/big", big)
    app.router.add_get("/text", text)
    app.router.add_get("/api/v1/auth", auth)
    app.router.add_get("/slow", slow)
    return app


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    runner = web.AppRunner(make_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.base = f"http://{host}:{port}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


GETS = """
from dagd import DAG, HttpTask

with DAG("gets") as gets:
    HttpTask(task_id="items", url="{{ conf.base }}/items", params={"q": "{{ conf.q }}"})
    HttpTask(task_id="text", url="{{ conf.base }}/text")
"""


async def test_get_json_goes_to_xcom(
    write_dag: WriteDag, start_engine: StartEngine, server: Server
) -> None:
    write_dag("gets.py", GETS)
    async with start_engine() as h:
        run_id, state = await h.run("gets", conf={"base": server.base, "q": "a b"})
        items = await h.xcom(run_id, "items")
        text = await h.xcom(run_id, "text")
        [attempt] = await h.attempts(run_id, "items")
    assert state == "success"
    assert items == {
        "status": 200,
        "headers": {"content-type": "application/json; charset=utf-8", "etag": '"v1"'},
        "body": {"items": [1, 2, 3], "q": "a b"},
    }
    assert text["body"] == "plain words\n"
    assert text["headers"]["content-type"] == "text/plain; charset=utf-8"
    log = await read_text(attempt.log_path)
    assert f"[dagd] GET {server.base}/items -> 200" in log
    assert "q=" not in log  # a query may carry a key: not logged


POSTS = """
from dagd import DAG, HttpTask

with DAG("posts") as posts:
    HttpTask(
        task_id="send",
        method="post",
        url="{{ conf.base }}/echo",
        json={"day": "{{ ds }}", "rows": [1, 2], "who": "{{ conf.who }}"},
        expected_status=201,
    )
"""


async def test_post_sends_a_rendered_json_body(
    write_dag: WriteDag, start_engine: StartEngine, server: Server
) -> None:
    write_dag("posts.py", POSTS)
    async with start_engine() as h:
        run_id = await h.engine.trigger("posts", conf={"base": server.base, "who": "ana"},
                                        logical_date=datetime(2024, 1, 2, tzinfo=UTC))
        state = await h.wait(run_id)
        value = await h.xcom(run_id, "send")
    assert state == "success"
    sent = {"day": "2024-01-02", "rows": [1, 2], "who": "ana"}
    assert server.received == [("POST", "/echo", sent)]
    assert value["status"] == 201
    assert value["body"] == {"received": sent}


STATUSES = """
from dagd import DAG, HttpTask

with DAG("statuses") as statuses:
    HttpTask(task_id="unexpected", url="{{ conf.base }}/status/404")
    HttpTask(task_id="expected", url="{{ conf.base }}/status/404", expected_status=[404, 410])
"""


async def test_an_unexpected_status_fails_the_attempt(
    write_dag: WriteDag, start_engine: StartEngine, server: Server
) -> None:
    write_dag("statuses.py", STATUSES)
    async with start_engine() as h:
        run_id, state = await h.run("statuses", conf={"base": server.base})
        [attempt] = await h.attempts(run_id, "unexpected")
        states = await h.states(run_id)
        expected = await h.xcom(run_id, "expected")
    assert state == "failed"
    assert states == {"unexpected": "failed", "expected": "success"}
    assert attempt.error is not None
    assert attempt.error.startswith(
        f"HttpStatusError: GET {server.base}/status/404 returned HTTP 404 Not Found: nope nope")
    assert len(attempt.error) < 1200  # an excerpt of the body, not all of it
    assert expected["status"] == 404


FLAKY = """
from dagd import DAG, HttpTask

with DAG("flaky_http") as flaky_http:
    HttpTask(task_id="call", url="{{ conf.base }}/flaky", retries=1, retry_delay=0)
"""


async def test_a_503_with_retry_after_is_retried_no_sooner_than_asked(
    write_dag: WriteDag, start_engine: StartEngine, server: Server
) -> None:
    write_dag("flaky_http.py", FLAKY)
    async with start_engine() as h:
        run_id, state = await h.run("flaky_http", conf={"base": server.base})
        first, second = await h.attempts(run_id, "call")
        value = await h.xcom(run_id, "call")
    assert state == "success"
    assert first.error == (f"HttpStatusError: GET {server.base}/flaky returned HTTP 503 "
                           "Service Unavailable (Retry-After: 1s): busy")
    assert value["body"] == {"ok": True}
    assert len(server.flaky_hits) == 2
    # retry_delay=0, but the server asked for 1 s.
    assert first.ended_at is not None
    assert second.started_at >= first.ended_at + 1.0
    assert server.flaky_hits[1] - server.flaky_hits[0] >= 1.0


CHECKS = """
from dagd import DAG, HttpTask

with DAG("checks") as checks:
    HttpTask(task_id="too_big", url="{{ conf.base }}/big", max_response_bytes=4000)
    HttpTask(task_id="fits", url="{{ conf.base }}/big", max_response_bytes=5000)
    HttpTask(
        task_id="no_items",
        url="{{ conf.base }}/items",
        response_check=lambda response: response["body"]["items"] == [],
    )
    HttpTask(
        task_id="has_items",
        url="{{ conf.base }}/items",
        response_check=lambda response: len(response["body"]["items"]) == 3,
    )
"""


async def test_the_size_cap_and_response_check_fail_the_attempt(
    write_dag: WriteDag, start_engine: StartEngine, server: Server
) -> None:
    write_dag("checks.py", CHECKS)
    async with start_engine() as h:
        run_id, state = await h.run("checks", conf={"base": server.base})
        states = await h.states(run_id)
        errors = {t: (await h.attempts(run_id, t))[0].error for t in ("too_big", "no_items")}
        fits = await h.xcom(run_id, "fits")
    assert state == "failed"
    assert states == {"too_big": "failed", "fits": "success", "no_items": "failed",
                      "has_items": "success"}
    assert errors["too_big"] == (
        "HttpResponseTooLarge: response body is over max_response_bytes=4000 "
        "(stopped reading at 5000 bytes)")
    assert errors["no_items"] == (
        "HttpResponseCheckFailed: response_check <lambda> returned False for HTTP 200")
    assert fits["body"] == "x" * 5000


CONNECTED = """
from dagd import DAG, HttpTask

with DAG("connected") as connected:
    HttpTask(task_id="relative", conn="api", url="auth", headers={"X-Tenant": "{{ conf.t }}"})
    HttpTask(task_id="elsewhere", conn="api", url="{{ conf.other }}/api/v1/auth")
    HttpTask(task_id="unknown", conn="nope", url="/auth")
"""


async def test_a_connection_gives_base_url_and_a_token_from_the_environment(
    write_dag: WriteDag, start_engine: StartEngine, server: Server, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGD_TEST_API_TOKEN", "s3cret")
    write_dag("connected.py", CONNECTED)
    connections = {"api": {"base_url": f"{server.base}/api/v1/", "token_env":
                           "DAGD_TEST_API_TOKEN"}}
    # Same port, another host name: another origin, so the token must not go there.
    other = server.base.replace("127.0.0.1", "localhost")
    async with start_engine(replace(settings, connections=connections)) as h:
        run_id, state = await h.run("connected", conf={"t": "acme", "other": other})
        value = await h.xcom(run_id, "relative")
        errors = {t: (await h.attempts(run_id, t))[0].error for t in ("elsewhere", "unknown")}
    assert state == "failed"
    assert value["body"] == {"tenant": "acme"}
    assert server.authorization == ["Bearer s3cret"]  # once: `elsewhere` was never sent
    assert errors["elsewhere"] == (
        f"ValueError: url '{other}/api/v1/auth' is outside connection 'api' "
        f"({server.base}/api/v1/): its headers and credentials go only there")
    assert errors["unknown"] is not None
    assert errors["unknown"].startswith(
        "ConnectionNotFound: DAG 'connected', task 'unknown', field 'conn': "
        "no connection named 'nope'")


async def test_a_missing_secret_fails_the_attempt_naming_the_variable(
    write_dag: WriteDag, start_engine: StartEngine, server: Server, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAGD_TEST_API_TOKEN", raising=False)
    write_dag("connected.py", CONNECTED)
    connections = {"api": {"base_url": server.base, "token_env": "DAGD_TEST_API_TOKEN"}}
    async with start_engine(replace(settings, connections=connections)) as h:
        run_id, _ = await h.run("connected", conf={"t": "acme", "other": server.base})
        [attempt] = await h.attempts(run_id, "relative")
    assert attempt.error is not None
    assert "environment variable DAGD_TEST_API_TOKEN (token_env) is not set" in attempt.error
    assert server.authorization == []


SLOW = """
from dagd import DAG, HttpTask

with DAG("slow") as slow:
    HttpTask(task_id="waits", url="{{ conf.base }}/slow", timeout=0.5)
"""


async def test_no_response_within_the_timeout_fails_the_attempt(
    write_dag: WriteDag, start_engine: StartEngine, server: Server
) -> None:
    write_dag("slow.py", SLOW)
    async with start_engine() as h:
        run_id, state = await h.run("slow", conf={"base": server.base})
        [attempt] = await h.attempts(run_id, "waits")
    assert state == "failed"
    assert attempt.error == (
        f"HttpTimeout: GET {server.base}/slow: no complete response within 0.5s")
    assert attempt.ended_at is not None
    assert 0.5 <= attempt.ended_at - attempt.started_at < 3.0


SANDBOXED = """
from dagd import DAG, HttpTask

with DAG("sandboxed_http") as sandboxed_http:
    HttpTask(task_id="escape", url="{{ conf.base }}/items",
             headers={"X-Leak": "{{ conf.__class__.__init__.__globals__ }}"})
"""


async def test_a_template_reaching_for_python_internals_is_refused(
    write_dag: WriteDag, start_engine: StartEngine, server: Server
) -> None:
    write_dag("sandboxed_http.py", SANDBOXED)
    async with start_engine() as h:
        run_id, state = await h.run("sandboxed_http", conf={"base": server.base})
        [attempt] = await h.attempts(run_id, "escape")
    assert state == "failed"
    assert attempt.error is not None
    assert attempt.error.startswith(
        "TemplateRenderError: DAG 'sandboxed_http', task 'escape', field 'headers.X-Leak': "
        "template refused by the sandbox")


def test_connections_are_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "dagd.toml"
    path.write_text(textwrap.dedent("""\
        [connections.api]
        base_url = "https://api.example.com/v1"
        token_env = "API_TOKEN"
        headers = { Accept = "application/json" }

        [connections.legacy]
        base_url = "http://legacy.internal"
        username = "etl"
        password_env = "LEGACY_PASSWORD"
    """))
    settings = load_settings(path, environ={})
    assert settings.connections == {
        "api": {"base_url": "https://api.example.com/v1", "token_env": "API_TOKEN",
                "headers": {"Accept": "application/json"}},
        "legacy": {"base_url": "http://legacy.internal", "username": "etl",
                   "password_env": "LEGACY_PASSWORD"},
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('token = "abc"', "unknown key connections.api.token; secrets never go in the config "
                          "file: use token_env"),
        ('base_uri = "http://x"', "unknown key connections.api.base_uri; use url, base_url"),
        ('base_url = "ftp://x"', "connections.api.base_url must be an http:// or https:// URL"),
        ('username = "etl"', "[connections.api] needs both username and password_env"),
    ],
    ids=["secret_in_file", "typo", "bad_url", "half_basic_auth"],
)
def test_a_bad_connection_is_refused_naming_the_key(
    table: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "dagd.toml"
    path.write_text(f"[connections.api]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert message in caught.value.message
    assert caught.value.file == str(path)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1", 1.0), (" 120 ", 120.0), ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),
     ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0), ("soon", None), ("-5", None), (None, None)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after(header, now) == seconds


LEAKS = """
from dagd import DAG, HttpTask, ShellTask

with DAG("leaks") as leaks:
    HttpTask(task_id="call", conn="api", url="auth")
    # Its XCom is its last line: a secret of the daemon's, if the task could see one.
    ShellTask(task_id="env", command="env | grep DAGD_TEST_ | tail -n 1")
"""


async def test_no_secret_reaches_the_database(
    write_dag: WriteDag, start_engine: StartEngine, server: Server, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection's token and the daemon's own secrets, after runs that used them:
    not in the database file (nor its WAL), whatever the tasks printed or returned."""
    monkeypatch.setenv("DAGD_TEST_API_TOKEN", "tok-7f3a9c2e")
    monkeypatch.setenv("DAGD_TEST_SMTP_PASSWORD", "smtp-91b4d0aa")
    write_dag("leaks.py", LEAKS)
    connections = {"api": {"base_url": f"{server.base}/api/v1/",
                           "token_env": "DAGD_TEST_API_TOKEN"}}
    with_secrets = replace(settings, connections=connections,
                           smtp_password_env="DAGD_TEST_SMTP_PASSWORD")
    async with start_engine(with_secrets) as h:
        _, state = await h.run("leaks")
        assert state == "success"
    stored = b"".join(p.read_bytes() for p in settings.data_dir.glob("dagd.db*"))
    assert b"tok-7f3a9c2e" not in stored
    assert b"smtp-91b4d0aa" not in stored


def test_a_password_in_an_http_url_is_refused_where_it_is_written() -> None:
    from dagd import DAG, HttpTask
    from dagd.errors import DagDefinitionError

    with DAG("x"), pytest.raises(DagDefinitionError, match="the url holds a password"):
        HttpTask(task_id="t", url="https://etl:hunter2@api.example.com/v1")
    with DAG("y"):
        HttpTask(task_id="user_only", url="https://etl@api.example.com/v1?at=12:00")
