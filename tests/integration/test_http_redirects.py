"""HttpTask against two real aiohttp servers on 127.0.0.1 (two ports: two origins): a
connection's credentials never follow a redirect to another origin, values rendered into
a URL stay one path segment or one query value, and a header stays one line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dagd.config import Settings
from integration.harness import StartEngine, read_text

pytestmark = pytest.mark.anyio

WriteDag = Callable[[str, str], Path]
KEY_ENV = "DAGD_TEST_REDIRECT_API_KEY"
KEY = "k3y-for-the-api-only"


@dataclass
class Origin:
    """One server: what each request carried; `base` is its http://127.0.0.1:PORT."""

    base: str = ""
    other: str = ""  # the other server's base, for redirects there
    seen: list[dict[str, Any]] = field(default_factory=list)


def make_app(origin: Origin) -> web.Application:
    def record(request: web.Request) -> dict[str, Any]:
        entry = {"method": request.method, "path": request.rel_url.raw_path,
                 "query": dict(request.query), "key": request.headers.get("X-Api-Key"),
                 "auth": request.headers.get("Authorization"),
                 "trace": request.headers.get("X-Trace")}
        origin.seen.append(entry)
        return entry

    async def redirect(request: web.Request) -> web.Response:
        record(request)
        target = request.query["to"]
        location = origin.other + target if request.query.get("cross") else target
        raise web.HTTPFound(location)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(record(request))

    async def loop(request: web.Request) -> web.Response:
        record(request)
        raise web.HTTPFound("/loop")

    app = web.Application()
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/{tail:.*}", echo)
    return app


@pytest.fixture
async def origins() -> AsyncIterator[tuple[Origin, Origin]]:
    first, second = Origin(), Origin()
    runners = []
    for origin in (first, second):
        runner = web.AppRunner(make_app(origin), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        origin.base = f"http://{host}:{port}"
        runners.append(runner)
    first.other, second.other = second.base, first.base
    try:
        yield first, second
    finally:
        for runner in runners:
            await runner.cleanup()


REDIRECTS = """
from dagd import DAG, HttpTask

with DAG("redirects") as redirects:
    HttpTask(task_id="cross", conn="api", url="redirect?cross=1&to=/landing")
    HttpTask(task_id="cross_allowed", conn="api", url="redirect?cross=1&to=/landing",
             follow_cross_origin_redirects=True)
    HttpTask(task_id="same", conn="api", url="redirect?to=/final")
    HttpTask(task_id="own_auth", url="{{ conf.api }}/redirect?cross=1&to=/own",
             headers={"Authorization": "Bearer mine", "X-Trace": "t-1"},
             follow_cross_origin_redirects=True)
    HttpTask(task_id="loops", conn="api", url="loop")
"""


async def test_credentials_never_follow_a_redirect_to_another_origin(
    write_dag: WriteDag, start_engine: StartEngine, settings: Settings,
    origins: tuple[Origin, Origin], monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, elsewhere = origins
    monkeypatch.setenv(KEY_ENV, KEY)
    write_dag("redirects.py", REDIRECTS)
    connections = {"api": {"base_url": api.base, "headers_env": {"X-Api-Key": KEY_ENV}}}
    async with start_engine(replace(settings, connections=connections)) as h:
        run_id, state = await h.run("redirects", conf={"api": api.base})
        states = await h.states(run_id)
        errors = {t: (await h.attempts(run_id, t))[0].error for t in ("cross", "loops")}
        values = {t: await h.xcom(run_id, t) for t in ("cross_allowed", "same", "own_auth")}
        [allowed] = await h.attempts(run_id, "cross_allowed")
        log = await read_text(allowed.log_path)
    assert state == "failed"
    assert states == {"cross": "failed", "cross_allowed": "success", "same": "success",
                      "own_auth": "success", "loops": "failed"}
    # The key reached the API's origin on every hop there, and never the other one.
    assert {entry["key"] for entry in api.seen if entry["trace"] is None} == {KEY}
    assert KEY not in str(elsewhere.seen)
    assert "Bearer mine" not in str(elsewhere.seen)
    assert errors["cross"] == (
        f"HttpRedirectRefused: GET {api.base}/redirect redirected (302) to another origin, "
        f"{elsewhere.base}: not followed, so no credentials go there "
        "(follow_cross_origin_redirects=True follows it, without them)")
    # Opted in: followed, without the connection's headers or the task's Authorization.
    assert values["cross_allowed"]["body"] == {
        "method": "GET", "path": "/landing", "query": {}, "key": None, "auth": None,
        "trace": None}
    assert values["own_auth"]["body"]["auth"] is None
    assert values["own_auth"]["body"]["trace"] == "t-1"  # not a credential: kept
    assert f"[dagd] GET {api.base}/redirect -> 302, to {elsewhere.base}/landing\n" in log
    assert f"[dagd] GET {elsewhere.base}/landing -> 200" in log
    # A redirect within the origin keeps the key.
    assert values["same"]["body"]["path"] == "/final"
    assert values["same"]["body"]["key"] == KEY
    assert errors["loops"] == (f"HttpRedirectRefused: GET {api.base}/loop: more than 10 "
                               f"redirects (the last to {api.base}/loop)")


ENCODED = """
from dagd import DAG, HttpTask

with DAG("encoded") as encoded:
    HttpTask(task_id="absolute", url="{{ conf.base }}/items/{{ conf.id }}?q={{ conf.q }}")
    HttpTask(task_id="relative", conn="api", url="items/{{ conf.id }}/{{ conf.dots }}")
    HttpTask(task_id="params", conn="api", url="items", params={"q": "{{ conf.q }}"})
    HttpTask(task_id="raw", url="{{ conf.base }}/{{ conf.path | raw }}")
"""


async def test_values_in_a_url_stay_one_path_segment_or_one_query_value(
    write_dag: WriteDag, start_engine: StartEngine, settings: Settings,
    origins: tuple[Origin, Origin],
) -> None:
    api, _ = origins
    write_dag("encoded.py", ENCODED)
    connections = {"api": {"base_url": f"{api.base}/v1/"}}
    conf = {"base": api.base, "id": "../admin?x=1", "q": "a&b=c #d", "dots": "..",
            "path": "items/x?y=1"}
    async with start_engine(replace(settings, connections=connections)) as h:
        run_id, state = await h.run("encoded", conf=conf)
        bodies = {t: (await h.xcom(run_id, t))["body"]
                  for t in ("absolute", "relative", "params", "raw")}
    assert state == "success"
    assert bodies["absolute"]["path"] == "/items/..%2Fadmin%3Fx%3D1"
    assert bodies["absolute"]["query"] == {"q": "a&b=c #d"}
    assert bodies["relative"]["path"] == "/v1/items/..%2Fadmin%3Fx%3D1/%2E%2E"
    assert bodies["params"]["query"] == {"q": "a&b=c #d"}
    assert (bodies["raw"]["path"], bodies["raw"]["query"]) == ("/items/x", {"y": "1"})


HEADERS = """
from dagd import DAG, HttpTask

with DAG("headers") as headers:
    HttpTask(task_id="split", url="{{ conf.base }}/h", headers={"X-Trace": "{{ conf.trace }}"})
"""


@pytest.mark.parametrize("trace", ["t\r\nX-Api-Key: forged", "t\nX-Api-Key: forged", "t\r"])
async def test_a_header_rendered_with_a_line_break_is_refused_before_sending(
    trace: str, write_dag: WriteDag, start_engine: StartEngine, origins: tuple[Origin, Origin],
) -> None:
    api, _ = origins
    write_dag("headers.py", HEADERS)
    async with start_engine() as h:
        run_id, state = await h.run("headers", conf={"base": api.base, "trace": trace})
        [attempt] = await h.attempts(run_id, "split")
    assert state == "failed"
    assert attempt.error == (
        "TemplateRenderError: DAG 'headers', task 'split', field 'headers.X-Trace': a header "
        "value must be one line: the rendered value holds a line break (CR or LF) or NUL, "
        "so nothing was sent")
    assert api.seen == []
