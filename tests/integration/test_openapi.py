"""GET /api/v1/openapi.json is an OpenAPI 3.1 document that matches the app's routes:
the router is walked, and a route the document lacks, or a documented route the app
lacks, fails the test; every $ref resolves and every route documents its errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dagd.store import Store
from dagd.web import openapi
from dagd.web.app import create_app
from integration.harness import StartEngine
from integration.test_api import DAGS, api

pytestmark = pytest.mark.anyio

METHODS = {"get", "post", "put", "patch", "delete"}
# Not part of the API: the UI's pages, the login pages, static files, webhooks.
API_PATH = re.compile(r"^(/api/|/metrics$)")


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every API route the app serves."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path") or ""
        if route.method == "HEAD" or not API_PATH.match(template):
            continue
        found.add((route.method.lower(), template))
    return found


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items()
            for method in item if method in METHODS}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = doc
    for part in pointer[2:].split("/"):
        node = node[part]
    return node


async def test_the_document_and_the_router_name_the_same_routes(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_TEST_HOOK_TOKEN", "unused-here")
    write_dag("api_dags.py", DAGS)
    async with start_engine() as h:
        reader = await Store.open(h.settings.db_path, readonly=True)
        try:
            served = app_routes(create_app(h.engine, reader))
        finally:
            await reader.close()
        async with api(h) as (http, base):
            async with http.get(f"{base}/openapi.json") as resp:
                assert resp.status == 200 and resp.content_type == "application/json"
                doc = await resp.json()
    in_doc = documented(doc)
    # The stream and metrics are documented here and served by their own modules.
    assert not served - in_doc, f"routes the document lacks: {sorted(served - in_doc)}"
    missing = in_doc - served - {("get", "/api/v1/stream"), ("get", "/metrics")}
    assert not missing, f"documented routes the app lacks: {sorted(missing)}"
    assert doc == openapi.document()


def test_the_document_is_well_formed() -> None:
    doc = openapi.document()
    assert doc["openapi"] == "3.1.0"
    for pointer in set(refs(doc)):
        assert resolve(doc, pointer) is not None
    for path, item in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            params = operation["parameters"]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == names, where
            assert all("type" in p["schema"] or "$ref" in p["schema"] for p in params), where
            codes = set(operation["responses"])
            assert {"401", "403"} <= codes, where
            if names - {"dag_id", "task_id"} or (names and method == "get"):
                assert "404" in codes or "422" in codes, where
            if "requestBody" in operation:
                assert "422" in codes, where
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message"] and "field" in error["properties"]
