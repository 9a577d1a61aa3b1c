"""A property-based fuzz of the documented routes over real HTTP: hypothesis builds
requests from the OpenAPI document (path parameters, query values and JSON bodies,
inside their schemas and far outside: huge and negative numbers, unicode, traversal
strings, random JSON and bytes) and sends them to a real server on 127.0.0.1 over a
real SQLite file with a few DAGs and runs. Never a 5xx; on /api every refusal is a
JSON error; a refused (4xx) request writes nothing (runs, task instances, attempts,
state history, XCom, pauses, notifications and events that started runs, counted
before and after).

The server (engine and app) runs on an event loop in a thread of its own (anyio's
blocking portal), so that the examples, which hypothesis runs one by one, are plain
blocking HTTP requests."""

from __future__ import annotations

import dataclasses
import http.client
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from dagd.config import Settings
from dagd.web import openapi
from integration.harness import StartEngine
from integration.test_api import DAGS, api
from integration.test_api_paths import FORMS

Request = tuple[str, str, bytes | None]  # method, path with query, body
SKIPPED = {"/api/v1/stream"}  # an endless answer: the stream's own tests cover it
KNOWN_TEXT = ["shop", "flaky", "quick", "wobble", "after", "load", "noop", "prep.clean",
              "extract", "nope"]
FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8)
HOSTILE_TEXT = (st.text(max_size=40) | st.sampled_from(list(FORMS.values()))
                | st.integers(min_value=-2**80, max_value=2**80).map(str)
                | st.sampled_from(["", " ", "0", "-1", "1e400", "NaN", "true", "null",
                                   "9" * 400, "\u202e", "\U0001d7d8", "\u0661\u0662"]))


def in_path(value: str) -> str:
    """A value as it goes into a URL path: percent-encoded, except the traversal forms,
    which go as written (their encoding is the point)."""
    return value if value in FORMS.values() else quote(value, safe="")


def inside(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a parameter or field's schema allows (and ids and names that exist)."""
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "integer":
        existing = st.sampled_from([-1, 0, 1, 2, 3, 4])
        return st.one_of(existing, existing, st.integers(
            min_value=schema.get("minimum", -2**63), max_value=schema.get("maximum", 2**63)))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        known = st.sampled_from(KNOWN_TEXT)
        return st.one_of(known, known, st.text(max_size=20))
    if kind == "array":
        return st.lists(inside(schema.get("items", {})), max_size=3)
    return JSON


def value_of(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of a parameter or field: mostly inside its schema, some far outside."""
    allowed = inside(schema)
    return st.one_of(allowed, allowed, JSON)


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def path_value(param: dict[str, Any]) -> st.SearchStrategy[str]:
    allowed = inside(param["schema"]).map(as_text)
    return st.one_of(allowed, allowed, HOSTILE_TEXT, JSON.map(as_text)).map(in_path)


def query_of(params: list[dict[str, Any]]) -> st.SearchStrategy[str]:
    optional = {p["name"]: value_of(p["schema"]).map(as_text) | HOSTILE_TEXT
                for p in params if p["in"] == "query"}
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda q: "?" + urlencode(q) if q else "")


def body_of(operation: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    if "requestBody" not in operation:
        return st.none() | st.binary(max_size=20)
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    fields = {name: value_of(s) for name, s in schema.get("properties", {}).items()}
    needed = {name: inside(schema["properties"][name]) for name in schema.get("required", [])}
    others = {name: v for name, v in fields.items() if name not in needed}
    shaped = st.one_of(st.fixed_dictionaries(needed, optional=others),
                       st.fixed_dictionaries({}, optional=fields))
    return st.one_of(shaped, shaped, shaped, JSON).map(lambda v: json.dumps(v).encode()) | (
        st.binary(max_size=40) | st.none())


def request_of(path: str, method: str, operation: dict[str, Any]) -> st.SearchStrategy[Request]:
    names = [p for p in operation["parameters"] if p["in"] == "path"]
    pieces = st.fixed_dictionaries({p["name"]: path_value(p) for p in names})
    return st.tuples(pieces, query_of(operation["parameters"]), body_of(operation)).map(
        lambda t: (method.upper(), path.format(**t[0]) + t[1], t[2]))


def operations(method: str) -> list[tuple[str, st.SearchStrategy[Request]]]:
    """(route, its requests) for each documented route of the method."""
    return [(path, request_of(path, method, item[method]))
            for path, item in openapi.document()["paths"].items()
            if path not in SKIPPED and method in item]


# -- the server, in a thread ---------------------------------------------------------
@dataclasses.dataclass
class Served:
    port: int
    headers: dict[str, str]
    db: Path


@pytest.fixture
def served(write_dag: Callable[[str, str], Path], start_engine: StartEngine,
           settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """An engine with a few runs done, and the API on 127.0.0.1, on an event loop in a
    thread (a blocking portal); stopped at the end."""
    monkeypatch.setenv("API_TEST_HOOK_TOKEN", "s3cret-hook-token")
    write_dag("api_dags.py", DAGS)
    custom = dataclasses.replace(settings, max_backfill_runs=3)

    @asynccontextmanager
    async def serve() -> AsyncIterator[Served]:
        async with start_engine(custom) as h, api(h) as (http, base):
            h.module_global("slow", "GATE").set()  # a run of it, if one is made, ends
            for dag_id in ("flaky", "quick", "shop"):
                await h.run(dag_id)
            yield Served(URL(base).port or 0, dict(http.headers), custom.db_path)

    with (anyio.from_thread.start_blocking_portal() as portal,
          portal.wrap_async_context_manager(serve()) as server):
        yield server


def snapshot(db: Path) -> tuple[Any, ...]:
    """What a refused request must not change."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return tuple(con.execute(sql).fetchall() for sql in (
            "SELECT id, state, ended_at FROM run ORDER BY id",
            "SELECT id, state, try_number FROM task_instance ORDER BY id",
            "SELECT count(*), max(id) FROM attempt",
            "SELECT count(*), max(id) FROM state_history",
            "SELECT count(*) FROM xcom",
            "SELECT dag_id, is_paused FROM dag ORDER BY dag_id",
            "SELECT id, state, attempts FROM notification ORDER BY id",
            "SELECT count(*) FROM event WHERE run_id IS NOT NULL",
        ))
    finally:
        con.close()


def busy(db: Path) -> bool:
    """A run still moving: running, or queued for a DAG that is not paused."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT count(*) FROM run r LEFT JOIN dag d ON d.dag_id = r.dag_id "
            "WHERE r.state = 'running' OR (r.state = 'queued' AND coalesce(d.is_paused, 0) = 0)"
        ).fetchone()
        running = con.execute("SELECT count(*) FROM attempt WHERE state = 'running'").fetchone()
    finally:
        con.close()
    return bool(row[0] or running[0])


def settle(db: Path, deadline: float = 15.0) -> None:
    """Wait (with a deadline) until what an accepted request started has ended."""
    end = time.monotonic() + deadline
    while busy(db):  # the rows have no change notification: poll, within the deadline
        if time.monotonic() > end:
            pytest.fail("runs still moving after an accepted request")
        time.sleep(0.02)


def send(server: Served, request: Request) -> tuple[int, str, bytes]:
    method, target, body = request
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = dict(server.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def check(server: Served, request: Request) -> None:
    settle(server.db)
    before = snapshot(server.db)
    status, kind, body = send(server, request)
    assert status < 500, (request, status, body[:300])
    if 400 <= status < 500:
        assert kind.startswith("application/json"), (request, status, kind)
        error = orjson.loads(body)
        assert isinstance(error.get("error"), str) and isinstance(error.get("message"), str)
        assert snapshot(server.db) == before, (request, status, body[:300])


def fuzz(served: Served, method: str) -> None:
    """Each route of the method, in turn, with its own examples."""
    for _path, requests in operations(method):
        @FUZZ
        @given(requests)
        def one_route(request: Request) -> None:
            check(served, request)

        one_route()


def test_fuzz_reads(served: Served) -> None:
    fuzz(served, "get")


def test_fuzz_writes(served: Served) -> None:
    fuzz(served, "post")
