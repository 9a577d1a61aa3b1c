"""The web UI's pages over a real aiohttp server on 127.0.0.1 and a running engine:
each page answers with what it should show, unknown ids and path tricks are HTML 404s,
HTML in ids, conf, params, errors and logs shows as text, and no page has an inline
script, style or event handler (the CSP would block them)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from dagd.accounts import AccountsFile
from integration.harness import Harness, StartEngine, web_server

pytestmark = pytest.mark.anyio

XSS = "<script>alert(1)</script>"
XSS2 = '"><img src=x onerror=alert(1)>'

UI_DAGS = f'''
from dagd import DAG, TaskGroup, task

XSS = {XSS!r}
XSS2 = {XSS2!r}

with DAG("shop", description="sells " + XSS, tags=["daily", XSS2],
         params={{"who": XSS, "count": 3, "ratio": 0.5, "loud": True, "items": [1, 2]}}):
    @task
    def extract(params):
        print("log line " + XSS)
        print("log line " + XSS2)
        return {{"said": XSS2}}

    with TaskGroup("prep"):
        @task
        def clean(value):
            return value

        @task
        def split(value):
            return [1, 2, 3]

    @task
    def train(n):
        return n * 2

    @task(retries=1, retry_delay=0)
    def report(values, conf):
        if conf.get("fail"):
            raise ValueError("bad " + XSS)
        return sum(values)

    raw = extract()
    with TaskGroup("prep"):
        parts = split(clean(raw))
    report(train.expand(n=parts))
'''


class PageParser(HTMLParser):
    """Collects what the CSP forbids: inline scripts, style elements and attributes,
    on* handler attributes, javascript: URLs; and every element's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inline: list[str] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append((tag, values))
        if tag == "script":
            if not values.get("src"):
                self.inline.append("script without src")
            else:
                self.scripts.append(str(values["src"]))
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"{tag} {name}={value!r}")
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                    "javascript:"):
                self.inline.append(f"{tag} {name}={value!r}")
        if tag == "img" or tag == "iframe":
            self.inline.append(f"unexpected <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"script body {data[:40]!r}")
        self.text.append(data)


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def assert_clean(html: str) -> PageParser:
    """No inline script/style/handler, only same-origin static scripts, no raw XSS."""
    page = parse(html)
    assert page.inline == [], page.inline
    assert all(src.startswith("/static/") for src in page.scripts), page.scripts
    assert XSS not in html and "<img" not in html
    return page


@asynccontextmanager
async def ui(h: Harness) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with web_server(h) as (session, root):
        yield session, root


async def get(http: aiohttp.ClientSession, url: str, status: int = 200) -> str:
    async with http.get(url, allow_redirects=False) as resp:
        body = await resp.text()
        assert resp.status == status, (url, resp.status, body[:500])
        if status in (200, 404) and "/static/" not in url:
            assert resp.content_type == "text/html", (url, resp.content_type)
        return body


def texts(page: PageParser) -> str:
    return " ".join(t.strip() for t in page.text if t.strip())


async def test_every_page_shows_its_content_escaped_and_without_inline_code(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        run_id, state = await h.run("shop", {"note": XSS, "fail": True})
        assert state == "failed"
        dags = assert_clean(await get(http, f"{base}/"))
        dag = assert_clean(await get(http, f"{base}/dags/shop"))
        run = assert_clean(await get(http, f"{base}/runs/{run_id}"))
        task = assert_clean(await get(http, f"{base}/runs/{run_id}/tasks/extract"))
        failed = assert_clean(await get(http, f"{base}/runs/{run_id}/tasks/report"))
        first_try = assert_clean(await get(http, f"{base}/runs/{run_id}/tasks/report?try=1"))
        mapped = assert_clean(await get(http, f"{base}/runs/{run_id}/tasks/train?map_index=1"))
        events = assert_clean(await get(http, f"{base}/events"))
        notes = assert_clean(await get(http, f"{base}/notifications"))
        css = await get(http, f"{base}/static/dagd.css")
        js = await get(http, f"{base}/static/dagd.js") + await get(http, f"{base}/static/live.js")

    # The DAGs page: the DAG, its description and tag as text, the params as fields.
    shown = texts(dags)
    assert "shop" in shown and f"sells {XSS}" in shown and XSS2 in shown
    fields = {a["name"]: a for t, a in dags.tags if t in ("input", "select") and "data-param" in a}
    assert {n: (a.get("value"), a.get("data-type")) for n, a in fields.items()} == {
        "who": (XSS, "string"), "count": ("3", "integer"), "ratio": ("0.5", "number"),
        "loud": (None, "boolean"), "items": ("[1,2]", "array")}
    assert [a["data-state"] for t, a in dags.tags if a.get("class") == "mark"] == [
        "failed"]
    # The DAG page: the grid's cells by state, the graph's nodes, groups and mapped count.
    cells = {a["data-ti"]: a["data-state"] for t, a in dag.tags if "data-ti" in a}
    assert cells == {f"{run_id}:extract": "success", f"{run_id}:prep.clean": "success",
                     f"{run_id}:prep.split": "success", f"{run_id}:train": "success",
                     f"{run_id}:report": "failed"}
    nodes = {a["data-task"]: a["data-state"] for t, a in dag.tags if t == "g" and "data-task" in a}
    assert nodes["report"] == "failed" and nodes["train"] == "success"
    assert any(a.get("data-group") == "prep" for _, a in dag.tags)
    assert "[3]" in texts(dag)
    assert "def extract(params):" in texts(dag)  # the DAG file's source
    # The run page: the conf as text, the Gantt with a failed try and the retry wait.
    assert XSS in texts(run)
    segments = [(a.get("class"), a.get("data-state")) for t, a in run.tags if t == "rect"]
    assert ("seg seg-running", "failed") in segments
    assert ("seg seg-retry", "up_for_retry") in segments
    # The task pages: the log, the XCom, the error, each as text.
    assert f"log line {XSS}" in texts(task) and f"log line {XSS2}" in texts(task)
    assert XSS2 in texts(task)  # the XCom
    assert f"ValueError: bad {XSS}" in texts(failed) and "try 2" in texts(failed)
    assert "try 1" in texts(first_try) and "0 retries left" in texts(failed)
    assert "train[1]" in texts(mapped)
    assert "manual" in texts(events) or "Events" in texts(events)
    assert "Notifications" in texts(notes)
    assert "prefers-color-scheme: dark" in css and "EventSource" in js


async def test_html_in_a_stored_dag_id_and_an_import_error_shows_as_text(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        described = [d.describe() for d in h.bag.dags.values()]
        evil: dict[str, Any] = {**described[0], "dag_id": XSS2, "tags": [XSS],
                                "description": XSS, "fileloc": ""}
        await h.store.sync_dags([*described, evil], [{
            "file": f"/dags/{XSS}.py", "line": 3, "message": f"NameError: {XSS2}",
            "traceback": f"Traceback ...\n  {XSS}\nNameError: {XSS2}"}])
        dags = assert_clean(await get(http, f"{base}/"))
        page = assert_clean(await get(http, f"{base}/dags/{quote(XSS2, safe='')}"))
    shown = texts(dags)
    assert f"/dags/{XSS}.py:3" in shown and f"NameError: {XSS2}" in shown
    assert XSS2 in shown and XSS in shown
    assert XSS2 in texts(page)
    assert [a for t, a in dags.tags if t == "details" and "import-error" in (a.get("class") or "")]


@pytest.mark.parametrize("path", [
    "/runs/999", "/runs/abc", "/runs/1/tasks/nope", "/dags/nope",
    "/runs/..%2F..%2Fetc%2Fpasswd", "/runs/%2e%2e%2f", "/runs/1/tasks/..%2F..%2Fetc%2Fpasswd",
    "/runs/1/tasks/%2e%2e%2fetc%2fpasswd", "/dags/..%2F..%2Fetc%2Fpasswd",
    "/dags/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/runs/1/tasks/extract?try=9",
    "/runs/1/tasks/extract?try=..%2F..%2Fetc%2Fpasswd",
    "/runs/1/tasks/extract?map_index=..%2Fx",
])
async def test_unknown_ids_and_path_tricks_are_an_html_404(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, path: str
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        await h.run("shop")
        async with http.get(base + path, allow_redirects=False) as resp:
            status, kind, body = resp.status, resp.content_type, await resp.text()
    assert status in (400, 404), (path, status)
    assert kind == "text/html"
    assert "root:" not in body and "Traceback" not in body
    assert_clean(body)


@pytest.mark.parametrize("path", [
    "/static/../../../../etc/passwd", "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/%2e%2e%2f%2e%2e%2fui.py",
])
async def test_static_files_never_leave_their_folder(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, path: str
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        async with http.get(base + path, allow_redirects=False) as resp:
            status, body = resp.status, await resp.text()
    assert status in (403, 404), (path, status)
    assert "root:" not in body and "import" not in body


async def test_runs_are_paginated_by_run_id(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        ids = [(await h.run("shop"))[0] for _ in range(27)]
        first = parse(await get(http, f"{base}/dags/shop"))
        older = [a["href"] for t, a in first.tags if t == "a" and a.get("rel") == "next"]
        assert older == [f"/dags/shop?before={ids[2]}"]
        second = parse(await get(http, base + older[0]))
        bad = await get(http, f"{base}/dags/shop?before=x", status=400)
    runs_on = {int(m) for m in re.findall(r'href="/runs/(\d+)"', " ".join(
        f'href="{a["href"]}"' for t, a in second.tags if t == "a" and "href" in a))}
    assert runs_on == {ids[0], ids[1]}
    assert [a for t, a in second.tags if t == "a" and a.get("rel") == "next"] == []
    assert_clean(bad)


TRIGGERED = '''
from dagd import DAG, Cron, FileDrop, Webhook, task

with DAG("timed", triggers=[Cron("0 3 * * 1"), FileDrop({folder!r}, pattern="*.csv"),
                            Webhook("retrain", auth="bearer", secret_env="UI_TEST_TOKEN")]):
    @task
    def noop():
        return None

    noop()
'''


async def test_triggers_show_their_next_fire_time_folder_and_webhook_path(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, tmp_path: Path
) -> None:
    write_dag("timed.py", TRIGGERED.format(folder=str(tmp_path / "drops")))
    async with start_engine() as h, ui(h) as (http, base):
        dags = assert_clean(await get(http, f"{base}/"))
        await h.engine.set_paused("timed", True)
        paused = assert_clean(await get(http, f"{base}/dags/timed"))
    shown = texts(dags)
    assert re.search(r"cron 0 3 \* \* 1 \(UTC\) next: \d{4}-\d\d-\d\d 03:00 UTC", shown), shown
    assert f"file *.csv in {tmp_path / 'drops'}" in shown
    assert "cron cron" not in shown and "file files" not in shown
    assert "POST /hooks/retrain" in shown
    assert "next: paused" in texts(paused)
    boxes = [a for t, a in paused.tags if t == "input" and a.get("data-action") == "pause"]
    assert len(boxes) == 1 and "checked" in boxes[0]


async def test_a_viewer_sees_the_pages_without_their_buttons(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        run_id, _ = await h.run("shop")
        token = AccountsFile(h.settings.data_dir).create_token("watcher", role="viewer")
        viewer = {"Authorization": f"Bearer {token}"}
        pages = {}
        for path in ("/", "/dags/shop", f"/runs/{run_id}", f"/runs/{run_id}/tasks/extract",
                     "/events"):
            async with http.get(base + path, headers=viewer) as resp:
                assert resp.status == 200, path
                pages[path] = assert_clean(await resp.text())
        operator = parse(await get(http, f"{base}/runs/{run_id}/tasks/extract"))
    for path, page in pages.items():
        actions = [a for t, a in page.tags if "data-action" in a]
        assert actions == [], (path, actions)
    assert {a["data-action"] for t, a in operator.tags if "data-action" in a} == {
        "clear", "clear-downstream", "mark-task"}


async def test_the_outbox_page_offers_a_failed_notification_again_and_filters(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        run_id, _ = await h.run("shop")
        batch = h.store.batch()
        for event in ("failure", "success"):
            batch.queue_notification(dag_id="shop", run_id=run_id, ti_id=None,
                                     notifier="chat", event=event, payload={"x": XSS})
        await h.store.commit(batch)
        first, second = sorted(n.id for n in await h.store.list_notifications())
        await h.store.notification_failed(first, f"HTTP 500: {XSS2}", None)
        await h.store.notification_sent(second)
        every = assert_clean(await get(http, f"{base}/notifications"))
        failed = assert_clean(await get(http, f"{base}/notifications?state=failed"))
        by_tag = parse(await get(http, f"{base}/?tag=daily"))
        no_tag = parse(await get(http, f"{base}/?tag=nothing"))
    assert f"HTTP 500: {XSS2}" in texts(every)
    retry = [a for t, a in every.tags if a.get("data-action") == "retry-notification"]
    assert [a["data-notification"] for a in retry] == [str(first)]
    rows = [a for t, a in failed.tags if t == "tr"]
    assert len(rows) == 2  # the header and the failed one
    assert [a["data-dag"] for t, a in by_tag.tags if t == "li" and "data-dag" in a] == ["shop"]
    assert "No DAG matches" in texts(no_tag)
