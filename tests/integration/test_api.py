"""The REST API over real HTTP (aiohttp on 127.0.0.1, port 0) on a running engine and a
real SQLite file: DAGs with their graph and triggers, the DAG file's source, runs with
their filters and pages, task instances with their attempts, logs from an offset, XCom,
and the operator's actions (clear, mark)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import pytest

from integration.harness import Harness, StartEngine, wait_until, web_server

pytestmark = pytest.mark.anyio

SECRET = "s3cret-hook-token"

DAGS = f"""
import asyncio
import os
from dagd import DAG, Cron, FileDrop, TaskGroup, Webhook, task

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "{SECRET}"  # a hard-coded secret: the source route masks it

with DAG("shop", params={{"name": "nobody", "count": 3, "ratio": 0.5, "dry": False}},
         tags=["etl", "daily"],
         triggers=[Cron("0 2 * * *"), FileDrop(os.path.join(HERE, "incoming"),
                                               pattern="*.csv"),
                   Webhook("shop_hook", auth="bearer", secret_env="API_TEST_HOOK_TOKEN")],
         ) as shop:
    @task
    def extract():
        return [1, 2]

    rows = extract()
    with TaskGroup("prep"):
        @task(retries=2, retry_delay=0)
        def clean(rows):
            return rows

        cleaned = clean(rows)

    @task
    def load(item):
        print("loading", item)
        return item * 2

    cleaned >> load.expand(item=[1, 2])

with DAG("flaky", tags=["etl"]) as flaky:
    @task(retries=1, retry_delay=0)
    def wobble():
        print("line one")
        print("token", TOKEN)
        raise RuntimeError("wobbled")

    @task
    def after():
        return "after"

    wobble() >> after()

GATE = asyncio.Event()  # the test sets it (in the daemon's loop) to let `hold` end

with DAG("slow") as slow:
    @task
    async def hold():
        print("holding")
        print("half a li", end="", flush=True)
        await GATE.wait()

    hold()

with DAG("quick") as quick:
    @task
    async def noop():
        return {{"token": TOKEN, "n": 1}}

    noop()
"""


@asynccontextmanager
async def api(h: Harness) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """The web app on 127.0.0.1, port 0; a session that sends the CLI's token, and the
    base URL of the API."""
    async with web_server(h) as (session, root):
        yield session, f"{root}/api/v1"


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def post(http: aiohttp.ClientSession, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


@pytest.fixture
def dags(write_dag: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("API_TEST_HOOK_TOKEN", SECRET)
    return write_dag("api_dags.py", DAGS)


async def test_dags_list_filters_and_detail_with_graph_triggers_and_params(
    dags: Path, start_engine: StartEngine
) -> None:
    async with start_engine() as h, api(h) as (http, base):
        assert (await post(http, f"{base}/dags/quick/pause"))[0] == 200
        _, everything = await get(http, f"{base}/dags")
        by_name = await get(http, f"{base}/dags?name=SHO")
        by_tag = await get(http, f"{base}/dags?tag=etl")
        paused = await get(http, f"{base}/dags?paused=true")
        unpaused = await get(http, f"{base}/dags?paused=false&tag=etl&name=fla")
        bad_paused = await get(http, f"{base}/dags?paused=maybe")
        status, shop = await get(http, f"{base}/dags/shop")
        unknown = await get(http, f"{base}/dags/nope")
    ids = [d["dag_id"] for d in everything["dags"]]
    assert ids == ["flaky", "quick", "shop", "slow"]
    assert [d["dag_id"] for d in by_name[1]["dags"]] == ["shop"]
    assert [d["dag_id"] for d in by_tag[1]["dags"]] == ["flaky", "shop"]
    assert [d["dag_id"] for d in paused[1]["dags"]] == ["quick"]
    assert [d["dag_id"] for d in unpaused[1]["dags"]] == ["flaky"]
    assert bad_paused[0] == 422 and bad_paused[1]["field"] == "paused"
    assert unknown[0] == 404 and unknown[1] == {
        "error": "not_found", "message": "DAG 'nope': no such DAG", "dag_id": "nope"}

    assert status == 200
    assert shop["tags"] == ["etl", "daily"] and shop["is_paused"] is False
    assert shop["file"] == str(dags)
    assert shop["params"] == [
        {"name": "name", "default": "nobody", "type": "string", "schema": {"type": "string"}},
        {"name": "count", "default": 3, "type": "integer", "schema": {"type": "integer"}},
        {"name": "ratio", "default": 0.5, "type": "number", "schema": {"type": "number"}},
        {"name": "dry", "default": False, "type": "boolean", "schema": {"type": "boolean"}},
    ]
    cron, drop, hook = shop["triggers"]
    assert cron["kind"] == "cron" and cron["expression"] == "0 2 * * *"
    fire = datetime.fromisoformat(cron["next_fire_at"])
    assert fire > datetime.now(UTC) and (fire.hour, fire.minute) == (2, 0)
    assert drop["kind"] == "file" and drop["folder"] == str(dags.parent / "incoming")
    assert hook["kind"] == "webhook" and hook["path"] == "/hooks/shop_hook"
    assert SECRET not in str(shop)
    tasks = {t["task_id"]: t for t in shop["tasks"]}
    assert list(tasks) == ["extract", "prep.clean", "load"]
    assert tasks["prep.clean"]["group"] == "prep" and tasks["prep.clean"]["retries"] == 2
    assert tasks["load"]["is_mapped"] is True and tasks["load"]["mapped"] == ["item"]
    assert tasks["extract"]["kind"] == "python"
    assert tasks["extract"]["trigger_rule"] == "all_success"
    assert tasks["extract"]["downstream"] == ["prep.clean"]
    assert sorted((e["from"], e["to"]) for e in shop["edges"]) == [
        ("extract", "prep.clean"), ("prep.clean", "load")]
    assert shop["task_groups"] == [{"group_id": "prep", "parent": None,
                                    "tasks": ["prep.clean"]}]


async def test_source_is_the_loaded_file_with_secrets_masked(
    dags: Path, start_engine: StartEngine
) -> None:
    expected = (await anyio.Path(dags).read_text()).replace(SECRET, "***")
    async with start_engine() as h, api(h) as (http, base):
        async with http.get(f"{base}/dags/shop/source") as resp:
            status, kind, text = resp.status, resp.content_type, await resp.text()
        unknown = await get(http, f"{base}/dags/nope/source")
    assert (status, kind) == (200, "text/plain")
    assert text == expected
    assert unknown[0] == 404 and unknown[1]["dag_id"] == "nope"


async def test_runs_list_filters_pages_and_detail(dags: Path, start_engine: StartEngine) -> None:
    async with start_engine() as h, api(h) as (http, base):
        first, state = await h.run("flaky")
        assert state == "failed"
        middle = time.time()
        quick = [(await h.run("quick", {"n": n}))[0] for n in range(5)]
        _, everything = await get(http, f"{base}/runs")
        _, page1 = await get(http, f"{base}/runs?dag=quick&limit=2")
        _, page2 = await get(http, f"{base}/runs?dag=quick&limit=2&before={page1['next']}")
        _, page3 = await get(http, f"{base}/runs?dag=quick&limit=2&before={page2['next']}")
        _, nested = await get(http, f"{base}/dags/quick/runs?limit=3")
        _, failed = await get(http, f"{base}/runs?state=failed")
        _, since = await get(http, f"{base}/runs?since={middle}")
        _, until = await get(http, f"{base}/runs?until={middle}")
        iso = datetime.fromtimestamp(middle, UTC).isoformat()
        _, since_iso = await get(http, f"{base}/runs?since={quote(iso)}")
        _, since_plus = await get(http, f"{base}/runs?since={iso}")  # "+" sent as is
        _, future = await get(http, f"{base}/runs?since=2999-01-01")
        bad = [await get(http, f"{base}/runs?{q}") for q in (
            "state=bogus", "since=yesterday", "until=nan", "limit=0", "limit=1001",
            "before=-1", "before=x")]
        missing_dag = await get(http, f"{base}/dags/nope/runs")
        _, detail = await get(http, f"{base}/runs/{quick[0]}")
        _, tis = await get(http, f"{base}/runs/{first}/tasks")
    assert [r["id"] for r in everything["runs"]] == [*reversed(quick), first]
    assert everything["next"] is None
    assert [r["id"] for r in page1["runs"]] == [quick[4], quick[3]]
    assert [r["id"] for r in page2["runs"]] == [quick[2], quick[1]]
    assert [r["id"] for r in page3["runs"]] == [quick[0]] and page3["next"] is None
    assert [r["id"] for r in nested["runs"]] == quick[:1:-1]
    assert [r["id"] for r in failed["runs"]] == [first]
    assert [r["id"] for r in since["runs"]] == quick[::-1] == [r["id"] for r in
                                                               since_iso["runs"]]
    assert since_plus == since_iso
    assert [r["id"] for r in until["runs"]] == [first]
    assert future["runs"] == []
    assert [(s, b["field"]) for s, b in bad] == [
        (422, "state"), (422, "since"), (422, "until"), (422, "limit"), (422, "limit"),
        (422, "before"), (422, "before")]
    assert missing_dag[0] == 404
    assert detail["conf"] == {"n": 0} and detail["state"] == "success"
    assert detail["event"]["kind"] == "manual" and detail["event"]["run_id"] == quick[0]
    assert detail["duration"] >= 0
    assert [t["task_id"] for t in detail["task_instances"]] == ["noop"]
    assert {t["task_id"]: t["state"] for t in tis["task_instances"]} == {
        "wobble": "failed", "after": "upstream_failed"}


async def test_task_instance_attempts_logs_from_an_offset_and_xcom(
    dags: Path, start_engine: StartEngine
) -> None:
    async with start_engine() as h, api(h) as (http, base):
        run_id, _ = await h.run("flaky")
        quick, _ = await h.run("quick")
        ti_url = f"{base}/runs/{run_id}/tasks/wobble"
        _, ti = await get(http, ti_url)
        async with http.get(f"{ti_url}/logs?try=1") as resp:
            whole, headers = await resp.text(), resp.headers
        offset = int(headers["X-Dagd-Log-Offset"])
        async with http.get(f"{ti_url}/logs?try=1&offset={offset}") as resp:
            rest, rest_headers = await resp.text(), resp.headers
        async with http.get(f"{ti_url}/logs?try=1&offset=3") as resp:
            inside_line = await resp.text()
        second_line = whole.index("\n") + 1
        async with http.get(f"{ti_url}/logs?try=1&offset={second_line}") as resp:
            from_line_two = await resp.text()
        async with http.get(f"{ti_url}/logs?try=1&offset=99999999") as resp:
            past_end = resp.status, await resp.text(), resp.headers["X-Dagd-Log-Offset"]
        async with http.get(f"{ti_url}/logs") as resp:
            latest = resp.headers["X-Dagd-Try-Number"]
        bad_offset = await get(http, f"{ti_url}/logs?offset=-1")
        no_try = await get(http, f"{ti_url}/logs?try=3")
        _, xcom = await get(http, f"{base}/runs/{quick}/tasks/noop/xcom")
        _, no_xcom = await get(http, f"{ti_url}/xcom")
        not_run = await get(http, f"{base}/runs/{run_id}/tasks/after/logs")
        bad_index = await get(http, f"{ti_url}?map_index=-2")
    assert ti["state"] == "failed" and ti["try_number"] == 2 and ti["retries_left"] == 0
    assert ti["dag_id"] == "flaky" and ti["task"]["retries"] == 1
    assert [(a["try_number"], a["state"], a["retries_left"]) for a in ti["attempts"]] == [
        (1, "failed", 1), (2, "failed", 0)]
    assert all("wobbled" in a["error"] and a["ended_at"] >= a["started_at"]
               for a in ti["attempts"])
    assert all("log_path" not in a for a in ti["attempts"])
    assert whole.startswith("line one\ntoken ***\n") and SECRET not in whole
    assert headers["X-Dagd-Log-Complete"] == "true"
    assert offset > len(whole)  # the file's bytes, before masking
    assert rest == "" and rest_headers["X-Dagd-Log-Offset"] == str(offset)
    assert inside_line == whole  # an offset inside a line reads that whole line
    assert from_line_two == whole[second_line:]
    assert past_end == (200, "", "99999999")
    assert latest == "2"
    assert bad_offset[0] == 422 and bad_offset[1]["field"] == "offset"
    assert no_try[0] == 404 and no_try[1]["task_id"] == "wobble"
    assert xcom == {"run_id": quick, "task_id": "noop", "map_index": -1,
                    "value": {"token": "***", "n": 1}}
    assert no_xcom["value"] is None
    assert not_run[0] == 404
    assert bad_index[0] == 422 and bad_index[1]["field"] == "map_index"


async def test_mapped_task_instances_by_map_index(dags: Path, start_engine: StartEngine) -> None:
    async with start_engine() as h, api(h) as (http, base):
        run_id, state = await h.run("shop")
        _, tis = await get(http, f"{base}/runs/{run_id}/tasks")
        _, second = await get(http, f"{base}/runs/{run_id}/tasks/load?map_index=1")
        _, xcom = await get(http, f"{base}/runs/{run_id}/tasks/load/xcom?map_index=1")
        async with http.get(f"{base}/runs/{run_id}/tasks/load/logs?map_index=0") as resp:
            log = await resp.text()
        not_mapped = await get(http, f"{base}/runs/{run_id}/tasks/load?map_index=7")
    assert state == "success"
    assert sorted((t["task_id"], t["map_index"]) for t in tis["task_instances"]
                  if t["task_id"] == "load") == [("load", -1), ("load", 0), ("load", 1)]
    assert second["map_index"] == 1 and second["state"] == "success"
    assert xcom["value"] == 4
    assert log == "loading 1\n"
    assert not_mapped[0] == 404


async def test_clear_mark_and_mark_run(dags: Path, start_engine: StartEngine) -> None:
    async with start_engine() as h, api(h) as (http, base):
        run_id, _ = await h.run("flaky")
        url = f"{base}/runs/{run_id}/tasks"
        before = await h.store.run_history(run_id)
        refused = [
            await post(http, f"{url}/wobble/clear", {"downstream": "yes"}),
            await post(http, f"{url}/wobble/clear", {"downsteam": True}),
            await post(http, f"{url}/wobble/clear", {"map_index": "0"}),
            await post(http, f"{url}/wobble/clear", [1]),
            await post(http, f"{url}/wobble/mark", {"state": "running"}),
            await post(http, f"{url}/wobble/mark", {}),
            await post(http, f"{base}/runs/{run_id}/mark", {"state": "queued"}),
        ]
        unknown = [
            await post(http, f"{url}/nope/clear", {}),
            await post(http, f"{url}/wobble/clear", {"map_index": 3}),
            await post(http, f"{base}/runs/999999/mark", {"state": "success"}),
            await post(http, f"{base}/runs/999999/tasks/wobble/mark", {"state": "success"}),
        ]
        history = await h.store.run_history(run_id)
        status, cleared = await post(http, f"{url}/wobble/clear", {"downstream": True})
        assert await h.wait(run_id) == "failed"
        _, after_clear = await get(http, f"{url}/wobble")
        marked = await post(http, f"{url}/wobble/mark", {"state": "success"})
        assert await h.wait(run_id) in ("success", "failed")
        quick, _ = await h.run("quick")
        mark_run = await post(http, f"{base}/runs/{quick}/mark", {"state": "failed"})
        _, quick_run = await get(http, f"{base}/runs/{quick}")
    assert [(s, b["field"]) for s, b in refused] == [
        (422, "downstream"), (422, "downsteam"), (422, "map_index"), (422, "body"),
        (422, "state"), (422, "state"), (422, "state")]
    assert [s for s, _ in unknown] == [404, 404, 404, 404]
    assert unknown[0][1]["task_id"] == "nope" and unknown[1][1]["task_id"] == "wobble"
    assert unknown[2][1]["field"] == unknown[3][1]["field"] == "run_id"
    assert history == before  # no refused action changed a state
    assert status == 200 and cleared["cleared"] == ["wobble", "after"]
    assert after_clear["try_number"] == 4 and len(after_clear["attempts"]) == 4
    assert marked == (200, {"run_id": run_id, "task_id": "wobble", "map_index": -1,
                            "state": "success"})
    assert mark_run[0] == 200 and quick_run["state"] == "failed"


async def test_a_running_task_logs_whole_lines_and_a_clear_of_it_is_a_409(
    dags: Path, start_engine: StartEngine
) -> None:
    async with start_engine(capture=True) as h, api(h) as (http, base):
        run_id = await h.trigger("slow")
        url = f"{base}/runs/{run_id}/tasks/hold"

        async def holding() -> bool:
            async with http.get(f"{url}/logs") as resp:
                return resp.status == 200 and await resp.text() == "holding\n"

        await wait_until(holding, what="hold running, its first line logged")
        async with http.get(f"{url}/logs") as resp:
            running_log = dict(resp.headers)
        before = await h.tis(run_id)
        conflict = await post(http, f"{url}/clear", {})
        after = await h.tis(run_id)
        marked = await post(http, f"{url}/mark", {"state": "success"})
        assert await h.wait(run_id) == "success"
        h.module_global("slow", "GATE").set()
    # While it runs: up to the last whole line, and not complete.
    assert running_log["X-Dagd-Log-Offset"] == str(len("holding\n"))
    assert "X-Dagd-Log-Complete" not in running_log
    assert conflict[0] == 409 and conflict[1]["error"] == "state"
    assert "running" in conflict[1]["message"] and "hold" in conflict[1]["message"]
    assert after == before  # the refused clear changed nothing
    assert marked[0] == 200


async def test_a_trigger_names_an_unknown_body_field_and_a_body_that_is_not_json(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    write_dag("one.py", "from dagd import DAG, task\n\nwith DAG('one') as d:\n"
                        "    @task\n    async def t():\n        return 1\n\n    t()\n")
    async with start_engine() as h, api(h) as (http, base):
        url = f"{base}/dags/one/runs"
        async with http.post(url, json={"conf": {}, "extra": 1}) as r:
            unknown = r.status, await r.json()
        async with http.post(url, data=b'{"conf": {}}',
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            form = r.status, await r.json()
        runs = await h.store.list_runs("one")
    assert unknown[0] == 422 and unknown[1]["field"] == "extra"
    assert form[0] == 400 and "Content-Type: application/json" in form[1]["message"]
    assert runs == []


async def test_the_log_of_a_mapped_task_itself_says_to_ask_an_instance(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    write_dag("fan.py", """
from dagd import DAG, task

with DAG("fan") as fan:
    @task
    async def items():
        return [1, 2, 3]

    @task
    async def square(x):
        print("square of", x)
        return x * x

    square.expand(x=items())
""")
    async with start_engine(capture=True) as h, api(h) as (http, base):
        run_id, state = await h.run("fan")
        parent = await get(http, f"{base}/runs/{run_id}/tasks/square/logs")
        async with http.get(f"{base}/runs/{run_id}/tasks/square/logs?map_index=2") as r:
            child = r.status, await r.text()
    assert state == "success"
    assert parent[0] == 404 and parent[1]["field"] == "map_index"
    assert "mapped task: its 3 instances ran" in parent[1]["message"]
    assert "map_index 0 to 2" in parent[1]["message"]
    assert child[0] == 200 and "square of 3" in child[1]


async def test_a_manual_runs_conf_has_the_types_of_the_dags_params_defaults(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    write_dag("typed.py", "from dagd import DAG, task\n\n"
                          "with DAG('typed', params={'seed': 42, 'name': 'x'}) as d:\n"
                          "    @task\n    async def t():\n        return 1\n\n    t()\n")
    async with start_engine() as h, api(h) as (http, base):
        bad = await post(http, f"{base}/dags/typed/runs", {"conf": {"seed": "abc"}})
        other = await post(http, f"{base}/dags/typed/runs", {"conf": {"extra": "kept"}})
        good = await post(http, f"{base}/dags/typed/runs", {"conf": {"seed": 7}})
        runs = await h.store.list_runs("typed")
    assert bad[0] == 422 and bad[1]["field"] == "seed" and "int" in bad[1]["message"]
    assert other[0] == 201 and good[0] == 201  # a key params does not declare is the run's
    assert len(runs) == 2
