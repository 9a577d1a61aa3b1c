"""The REST API on a real aiohttp server on 127.0.0.1, over a running engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from integration.harness import Harness, StartEngine, web_server

pytestmark = pytest.mark.anyio

API_DAGS = """
from dagd import DAG, task

with DAG("greet", params={"name": "nobody"}) as greet:
    @task
    def hello(params, conf):  # a worker process: its print goes to the attempt log
        print(f"hello {params['name']} ({conf.get('why')})")
        return params["name"]

    hello()

with DAG("other") as other:
    @task
    async def noop():
        return None

    noop()
"""


@asynccontextmanager
async def api(h: Harness) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """The web app on 127.0.0.1, port 0; a session and the API's base URL."""
    async with web_server(h) as (session, root):
        yield session, f"{root}/api/v1"


async def test_trigger_with_conf_then_read_the_run_and_its_log(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("api.py", API_DAGS)
    async with start_engine() as h, api(h) as (http, base):
        async with http.post(f"{base}/dags/greet/runs",
                             json={"conf": {"name": "ada", "why": "test"}}) as resp:
            assert resp.status == 201
            created = await resp.json()
        run_id = created["run_id"]
        assert created == {"run_id": run_id, "dag_id": "greet", "state": "queued"}
        assert await h.wait(run_id) == "success"

        async with http.get(f"{base}/runs/{run_id}") as resp:
            assert resp.status == 200
            run = await resp.json()
        async with http.get(f"{base}/runs/{run_id}/tasks/hello/logs") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            latest = await resp.text()
        async with http.get(f"{base}/runs/{run_id}/tasks/hello/logs?try=1") as resp:
            first = await resp.text()
        async with http.get(f"{base}/runs/{run_id}/tasks/hello/logs?try=2") as resp:
            assert resp.status == 404
            no_try = await resp.json()
        async with http.get(f"{base}/runs/{run_id}/tasks/hello/logs?try=last") as resp:
            bad_try = resp.status, await resp.json()
    assert run["id"] == run_id and run["dag_id"] == "greet"
    assert run["state"] == "success"
    assert run["conf"] == {"name": "ada", "why": "test"}
    assert [(t["task_id"], t["state"], t["try_number"]) for t in run["task_instances"]] == [
        ("hello", "success", 1)
    ]
    assert latest == first == "hello ada (test)\n"
    assert no_try["error"] == "not_found" and no_try["task_id"] == "hello"
    assert bad_try[0] == 422 and bad_try[1]["field"] == "try"


async def test_refusals_are_json_errors_with_their_status(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("api.py", API_DAGS)
    async with start_engine() as h, api(h) as (http, base):
        async with http.post(f"{base}/dags/nope/runs", json={}) as resp:
            unknown = resp.status, resp.content_type, await resp.json()
        async with http.post(f"{base}/dags/greet/runs", data=b'{"conf": {',
                             headers={"Content-Type": "application/json"}) as resp:
            malformed = resp.status, resp.content_type, await resp.json()
        async with http.post(f"{base}/dags/greet/runs", json=[1, 2]) as resp:
            not_object = resp.status, await resp.json()
        async with http.post(f"{base}/dags/greet/runs", json={"conf": "x"}) as resp:
            bad_conf = resp.status, await resp.json()
        async with http.get(f"{base}/runs/999") as resp:
            no_run = resp.status, await resp.json()
        async with http.get(f"{base}/runs/abc") as resp:
            bad_id = resp.status, await resp.json()
        async with http.post(f"{base}/dags/nope/pause") as resp:
            pause_unknown = resp.status, await resp.json()
        async with http.get(f"{base}/runs?limit=ten") as resp:
            bad_limit = resp.status, await resp.json()
        runs = await h.store.list_runs()
    assert unknown[:2] == (404, "application/json")
    assert unknown[2]["error"] == "not_found" and unknown[2]["dag_id"] == "nope"
    assert malformed[:2] == (422, "application/json")
    assert malformed[2]["error"] == "invalid" and malformed[2]["field"] == "body"
    assert "not valid JSON" in malformed[2]["message"]
    assert not_object[0] == 422 and not_object[1]["field"] == "body"
    assert bad_conf[0] == 422 and bad_conf[1]["field"] == "conf"
    assert no_run[0] == 404 and no_run[1]["error"] == "not_found"
    assert bad_id[0] == 422 and bad_id[1]["field"] == "run_id"
    assert pause_unknown[0] == 404 and pause_unknown[1]["dag_id"] == "nope"
    assert bad_limit[0] == 422 and bad_limit[1]["field"] == "limit"
    assert runs == []  # no refused request created a run


async def test_pause_holds_new_runs_and_unpause_releases_them(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("api.py", API_DAGS)
    async with start_engine() as h, api(h) as (http, base):
        async with http.post(f"{base}/dags/greet/pause") as resp:
            assert resp.status == 200
            assert await resp.json() == {"dag_id": "greet", "is_paused": True}
        async with http.get(f"{base}/dags/greet") as resp:
            assert (await resp.json())["is_paused"] is True
        async with http.post(f"{base}/dags/greet/runs", json={}) as resp:
            assert resp.status == 201
            held = (await resp.json())["run_id"]
        # A run of another DAG, triggered after, goes through the same scheduler ticks:
        # once it has ended, the paused DAG's run has been passed over, not started.
        async with http.post(f"{base}/dags/other/runs", json={}) as resp:
            passing = (await resp.json())["run_id"]
        assert await h.wait(passing) == "success"
        async with http.get(f"{base}/runs/{held}") as resp:
            while_paused = await resp.json()

        async with http.post(f"{base}/dags/greet/unpause") as resp:
            assert await resp.json() == {"dag_id": "greet", "is_paused": False}
        assert await h.wait(held) == "success"
        async with http.get(f"{base}/dags/greet") as resp:
            dag = await resp.json()
    assert while_paused["state"] == "queued"
    assert while_paused["task_instances"] == []
    assert dag["is_paused"] is False


BIG = "99999999999999999999"  # past 64 bits


@pytest.mark.parametrize(("method", "path", "field"), [
    ("GET", f"/runs/{BIG}", "run_id"),
    ("GET", f"/runs/{BIG}/tasks/hello/logs", "run_id"),
    ("GET", f"/runs?limit={BIG}", "limit"),
    ("GET", "/runs?limit=-1", "limit"),
    ("GET", "/runs?limit=0", "limit"),
    ("GET", "/runs?limit=1001", "limit"),
    ("GET", "/dags/greet/runs?limit=-1", "limit"),
    ("GET", "/events?limit=100000", "limit"),
    ("POST", f"/events/{BIG}/replay", "event_id"),
    ("GET", "/runs/" + "9" * 5000, "run_id"),
])
async def test_numbers_out_of_range_are_422s_that_name_the_field(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    method: str, path: str, field: str,
) -> None:
    write_dag("api.py", API_DAGS)
    async with start_engine() as h, api(h) as (http, base):
        async with http.request(method, f"{base}{path}") as resp:
            status, body = resp.status, await resp.json()
    assert (status, body["field"]) == (422, field), body
    assert body["error"] == "invalid"


async def test_a_page_is_at_most_1000_rows(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("api.py", API_DAGS)
    async with start_engine() as h, api(h) as (http, base):
        async with http.get(f"{base}/runs?limit=1000") as resp:
            assert resp.status == 200
            assert (await resp.json())["runs"] == []


async def test_a_try_number_past_64_bits_is_a_422(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("api.py", API_DAGS)
    async with start_engine() as h, api(h) as (http, base):
        run_id, _ = await h.run("greet")
        async with http.get(f"{base}/runs/{run_id}/tasks/hello/logs?try={BIG}") as resp:
            status, body = resp.status, await resp.json()
    assert (status, body["field"]) == (422, "try"), body


async def test_a_body_that_does_not_decode_is_a_400(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("api.py", API_DAGS)
    async with start_engine() as h, api(h) as (http, base):
        async with http.post(f"{base}/dags/greet/runs", data=b"not gzip", headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"}) as resp:
            status, body = resp.status, await resp.json()
        assert await h.store.list_runs("greet") == []
    assert (status, body["field"], body["error"]) == (400, "body", "bad_request"), body
