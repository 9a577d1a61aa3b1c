"""The web UI in a real headless Chromium (Playwright) against a real `dagd run`: log in,
see the DAGs, trigger a run with conf from the form and watch the graph turn green
without a reload, read a failed task's error, clear it and see it run again, and the
Gantt of a run with a retry. Every page is checked for CSP violations and script
errors; each test saves a screenshot in its tmp folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from acceptance.harness import CLI_TIMEOUT, Daemon, Dagd, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 20_000  # for a state to show: a run of a few short tasks, on a busy machine
USER, PASSWORD = "ada", "a long enough password for ada"
# The README's pictures are taken again only when asked: DAGD_UI_PICTURES=1 pytest ...
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

UI_DAGS = '''
from pathlib import Path

from dagd import DAG, TaskGroup, task

HERE = Path(__file__).resolve().parent

with DAG("ui_demo", description="A small pipeline to watch live", tags=["demo", "ui"],
         params={"who": "world", "times": 2, "loud": False}):
    @task
    def hello(params):
        for i in range(params["times"]):
            print(f"hello {params['who']} #{i + 1}")
        return {"who": params["who"]}

    @task
    def load(greeting):
        print("loading for", greeting["who"])
        return [1, 2, 3]

    @task
    def scale(values, n):
        return [v * n for v in values]

    @task
    def split(values):
        return [values[:1], values[1:]]

    @task
    def score(values):
        return sum(values)

    @task
    def publish(scores):
        print("published", scores)

    greeting = hello()
    with TaskGroup("features"):
        rows = scale(load(greeting), 2)
    publish(score.expand(values=split(rows)))

with DAG("breaks", description="Fails until the fix file exists", tags=["demo"]):
    @task
    def fragile():
        if not (HERE / "fixed").exists():
            raise RuntimeError("the fix file is missing: create it and clear this task")
        print("fixed, running fine")

    @task
    def after():
        print("after the fix")

    fragile() >> after()

with DAG("flaky", description="Fails its first try, then succeeds", tags=["demo"]):
    @task(retries=2, retry_delay=1)
    def wobbly():
        mark = HERE / "wobbled"
        if not mark.exists():
            mark.write_text("1")
            raise ConnectionError("the first try always fails")
        print("second try works")

    @task
    def steady():
        print("steady")

    steady() >> wobbly()

with DAG("tails", description="Writes its log in two parts", tags=["demo"]):
    @task
    def slow_log():
        import time

        print("first part of the log", flush=True)
        while not (HERE / "go").exists():  # the test says when to go on
            time.sleep(0.05)
        print("second part, written later", flush=True)
        print('<img src=x onerror="window.dagdXss = 1"> shown as text', flush=True)

    slow_log()

with DAG("chain", description="Holds its first task until told", tags=["demo"]):
    @task
    def hold():
        import time

        while not (HERE / "release").exists():  # the test says when to go on
            time.sleep(0.05)

    @task
    def after_hold():
        print("after the hold")

    hold() >> after_hold()
'''


@dataclass
class Watched:
    """A page whose console errors, uncaught exceptions and CSP reports are collected."""

    page: Page
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # refusals a test provokes

    def allow_refusal(self, status: int) -> None:
        """The browser logs an answer of `status` to a fetch: expected, once."""
        self.allowed.append(f"the server responded with a status of {status}")

    def check(self) -> None:
        unexpected = list(self.problems)
        for allowed in self.allowed:
            found = next((p for p in unexpected if allowed in p), None)
            assert found is not None, f"no refusal {allowed!r} was seen"
            unexpected.remove(found)
        assert unexpected == [], unexpected


def watch(page: Page) -> Watched:
    watched = Watched(page)

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error" or "Content Security Policy" in msg.text:
            watched.problems.append(f"console {msg.type}: {msg.text}")

    page.on("console", console)
    page.on("pageerror", lambda exc: watched.problems.append(f"page error: {exc}"))
    return watched


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def add_user(dagd: Dagd) -> None:
    done = subprocess.run(dagd.argv("users", "add", USER, "--role", "operator"),
                          input=(PASSWORD + "\n").encode(), capture_output=True,
                          timeout=CLI_TIMEOUT, cwd=dagd.root, env=dagd.env(), check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


@pytest.fixture
def ui(dagd: Dagd, write_dag: Callable[[str, str], Path], browser: Browser,
       tmp_path: Path) -> Iterator[tuple[Daemon, Watched]]:
    """A daemon with the UI DAGs and a user, and a browser page logged in to it."""
    write_dag("ui_dags.py", UI_DAGS)
    add_user(dagd)
    daemon = dagd.start()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = watch(page)
    try:
        page.goto(daemon.url("/"))
        expect(page).to_have_url(daemon.url("/login?next=/"))
        page.fill('input[name="username"]', USER)
        page.fill('input[name="password"]', PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(daemon.url("/"))
        yield daemon, watched
    finally:
        context.close()


def shot(page: Page, tmp_path: Path, name: str, *, docs: str | None = None) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs is not None and os.environ.get("DAGD_UI_PICTURES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / docs)
    return path


def confirm(page: Page) -> None:
    """Say yes to the confirm step an action that changes a run asks first."""
    page.locator(".confirm").get_by_role("button", name="Confirm").click()


def nodes_all(page: Page, state: str) -> None:
    for node in page.locator("svg[data-graph] g.node").all():
        expect(node).to_have_attribute("data-state", state, timeout=WAIT_MS)


def test_the_dag_list_then_a_run_with_conf_from_the_form_turns_the_graph_green_live(
    ui: tuple[Daemon, Watched], tmp_path: Path
) -> None:
    daemon, watched = ui
    page = watched.page
    cards = page.locator(".dag-card")
    expect(cards).to_have_count(5)
    expect(page.locator(".dag-card .dag-id")).to_have_text(["breaks", "chain", "flaky",
                                                             "tails", "ui_demo"])
    shot(page, tmp_path, "dags-all")
    flaky = cards.filter(has_text="flaky")
    flaky.locator('input[data-action="pause"]').check()
    expect(flaky).to_have_class("dag-card paused")
    status, dag = daemon.request("GET", "/api/v1/dags/flaky")
    assert status == 200 and dag["is_paused"] is True, dag
    page.fill('input[name="q"]', "demo")
    page.get_by_role("button", name="Filter").click()
    expect(cards).to_have_count(1)
    shot(page, tmp_path, "dags")

    page.get_by_role("link", name="ui_demo").click()
    expect(page.locator("h1 .dag-id")).to_have_text("ui_demo")
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    page.evaluate("window.dagdMarker = 'no reload'")  # gone if the page reloads
    page.locator("summary", has_text="Trigger").click()
    form = page.locator("form.trigger-form")
    form.locator('input[name="who"]').fill("Ada <b>Lovelace</b>")
    form.locator('input[name="times"]').fill("three")
    form.get_by_role("button", name="Trigger run").click()
    expect(form.locator(".form-error")).to_contain_text("times (integer): must be a whole")
    form.locator('input[name="times"]').fill("3")
    form.get_by_role("button", name="Trigger run").click()
    expect(form.locator(".form-result")).to_contain_text("queued")

    nodes_all(page, "success")
    assert page.evaluate("window.dagdMarker") == "no reload"
    expect(page.locator("svg[data-graph] [data-count]")).to_have_text("[2]")
    expect(page.locator(".grid .cell[data-state='success']")).to_have_count(6)
    run_id = int(page.locator("svg[data-graph]").get_attribute("data-run") or 0)
    status, run = daemon.request("GET", f"/api/v1/runs/{run_id}")
    assert status == 200 and run["conf"] == {"who": "Ada <b>Lovelace</b>", "times": 3,
                                             "loud": False}
    # Two more runs, from the API: their columns join the grid as they run.
    for who in ("Grace", "Edsger"):
        status, _ = daemon.request("POST", "/api/v1/dags/ui_demo/runs", {"conf": {"who": who}})
        assert status == 201
    expect(page.locator(".grid .cell[data-state='success']")).to_have_count(18)
    nodes_all(page, "success")
    assert page.evaluate("window.dagdMarker") == "no reload"
    page.locator("summary", has_text="Trigger").click()  # folded again, for the picture
    shot(page, tmp_path, "dag", docs="ui-dag.png")

    page.goto(daemon.url(f"/runs/{run_id}/tasks/hello"))
    expect(page.locator("#log")).to_contain_text("hello Ada <b>Lovelace</b> #3")
    watched.check()


def test_a_failed_task_shows_its_error_and_runs_again_once_cleared(
    ui: tuple[Daemon, Watched], tmp_path: Path, dags_folder: Path
) -> None:
    daemon, watched = ui
    page = watched.page
    page.goto(daemon.url("/dags/breaks"))
    page.locator("summary", has_text="Trigger").click()
    page.locator("summary", has_text="Raw JSON conf").click()
    raw = page.locator("textarea[name='conf']")
    expect(raw).to_have_value("{}")  # the fields' values: breaks has no params
    raw.fill("[1, 2]")
    page.get_by_role("button", name="Trigger run").click()
    expect(page.locator(".form-error")).to_contain_text("raw conf: must be a JSON object")
    raw.fill('{"why": "raw <i>conf</i>"}')
    page.get_by_role("button", name="Trigger run").click()
    expect(page.locator("svg[data-graph] g.node[data-task='fragile']")).to_have_attribute(
        "data-state", "failed")
    expect(page.locator("svg[data-graph] g.node[data-task='after']")).to_have_attribute(
        "data-state", "upstream_failed")

    run_id = int(page.locator("svg[data-graph]").get_attribute("data-run") or 0)
    status, run = daemon.request("GET", f"/api/v1/runs/{run_id}")
    assert status == 200 and run["conf"] == {"why": "raw <i>conf</i>"}, run
    page.locator("svg[data-graph] a[data-task-link='fragile']").click()
    expect(page.locator("pre.error-block")).to_contain_text(
        "RuntimeError: the fix file is missing")
    expect(page.locator("#log")).to_contain_text("the fix file is missing")
    expect(page.locator(".attempts tbody tr")).to_have_count(1)

    shot(page, tmp_path, "task-failed", docs="ui-task.png")

    (dags_folder / "fixed").write_text("yes\n")
    page.get_by_role("button", name="Clear with downstream").click()
    expect(page.locator(".actions .confirm")).to_contain_text(
        f"Clear fragile of run {run_id} and every task after it")
    page.locator(".actions .confirm").get_by_role("button", name="Cancel").click()
    expect(page.locator(".actions .confirm")).to_have_count(0)
    expect(page.locator(".attempts tbody tr")).to_have_count(1)  # nothing was cleared
    page.get_by_role("button", name="Clear with downstream").click()
    confirm(page)
    expect(page.locator(".actions .form-result")).to_contain_text("cleared")
    expect(page.locator(".attempts tbody tr")).to_have_count(2)
    expect(page.locator(".heading .badge")).to_have_text("success")
    expect(page.locator("#log")).to_contain_text("fixed, running fine")
    expect(page.locator("#log-box h2")).to_contain_text("try 2")
    shot(page, tmp_path, "task-cleared")
    watched.check()


def test_the_gantt_of_a_run_with_a_retry(
    ui: tuple[Daemon, Watched], tmp_path: Path
) -> None:
    daemon, watched = ui
    page = watched.page
    status, created = daemon.request("POST", "/api/v1/dags/flaky/runs", {"conf": {}})
    assert status == 201, created
    run_id = created["run_id"]
    page.goto(daemon.url(f"/runs/{run_id}"))
    expect(page.locator(".heading .badge")).to_have_text("success")
    gantt = page.locator("svg.gantt")
    expect(gantt.locator("rect.seg-running[data-state='failed']")).to_have_count(1)
    expect(gantt.locator("rect.seg-retry")).to_have_count(1)
    expect(gantt.locator("rect.seg-running[data-state='success']")).to_have_count(2)
    expect(gantt.locator(".gantt-label")).to_have_text(["steady", "wobbly"])
    expect(page.locator(".facts")).to_contain_text("manual")
    shot(page, tmp_path, "run")

    page.get_by_role("link", name="Events").click()
    expect(page.locator("table.events")).to_contain_text("flaky")
    page.get_by_role("button", name="Replay").click()
    confirm(page)
    result = page.locator("table.events .form-result")
    expect(result).to_contain_text(f"replayed: run {run_id + 1} queued.")
    result.get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text(f"run {run_id + 1}")
    expect(page.locator(".heading .badge")).to_have_text("success")
    shot(page, tmp_path, "events")
    watched.check()


def test_a_running_run_marked_failed_from_its_page(
    ui: tuple[Daemon, Watched], tmp_path: Path
) -> None:
    daemon, watched = ui
    page = watched.page
    status, created = daemon.request("POST", "/api/v1/dags/tails/runs", {"conf": {}})
    assert status == 201, created
    page.goto(daemon.url(f"/runs/{created['run_id']}"))
    expect(page.locator(".heading .badge")).to_have_text("running")
    expect(page.locator("svg.gantt rect.seg-running[data-state='running']")).to_have_count(1)
    page.get_by_role("button", name="Mark failed").click()
    expect(page.locator(".confirm")).to_contain_text(
        f"Mark run {created['run_id']} failed: its unfinished tasks end with it.")
    confirm(page)
    expect(page.locator(".heading .badge")).to_have_text("failed")
    expect(page.locator("[data-region='tis'] .badge")).to_have_text(["failed"])
    shot(page, tmp_path, "marked")
    watched.check()


def test_a_running_task_log_grows_on_the_page_without_a_reload(
    ui: tuple[Daemon, Watched], tmp_path: Path, dags_folder: Path
) -> None:
    daemon, watched = ui
    page = watched.page
    status, created = daemon.request("POST", "/api/v1/dags/tails/runs", {"conf": {}})
    assert status == 201, created
    run_id = created["run_id"]
    page.goto(daemon.url(f"/runs/{run_id}/tasks/slow_log"))
    expect(page.locator("#log")).to_contain_text("first part of the log")
    expect(page.locator(".heading .badge")).to_have_text("running")
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    page.evaluate("window.dagdMarker = 'no reload'")
    watched.allow_refusal(409)
    page.get_by_role("button", name="Clear", exact=True).click()  # refused: it runs
    confirm(page)
    expect(page.locator(".actions .form-result")).to_contain_text(
        "is running: mark it failed or success first")
    expect(page.locator(".actions .form-result")).to_have_class("form-result error-text")
    (dags_folder / "go").write_text("go\n")
    expect(page.locator("#log")).to_contain_text("second part, written later")
    expect(page.locator(".heading .badge")).to_have_text("success")
    expect(page.locator(".attempts tbody .badge")).to_have_text("success")  # re-read
    # A log line with HTML in it reaches the page live as text, never as an element.
    expect(page.locator("#log")).to_contain_text(
        '<img src=x onerror="window.dagdXss = 1"> shown as text')
    expect(page.locator("#log img")).to_have_count(0)
    assert page.evaluate("window.dagdXss") is None
    text = page.locator("#log").text_content() or ""
    assert text.count("first part of the log") == 1, text
    assert page.evaluate("window.dagdMarker") == "no reload"
    shot(page, tmp_path, "tail")
    watched.check()


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_pages_fit_a_phone_in_either_theme(
    ui: tuple[Daemon, Watched], tmp_path: Path, browser: Browser, scheme: str
) -> None:
    daemon, watched = ui
    status, created = daemon.request("POST", "/api/v1/dags/ui_demo/runs", {"conf": {}})
    assert status == 201, created
    run_id = created["run_id"]
    cookies = watched.page.context.cookies()
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  color_scheme=scheme, is_mobile=True, has_touch=True)
    try:
        context.add_cookies(cookies)  # the session of the logged-in page
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        small = watch(page)
        for path in ("/", "/dags/ui_demo", f"/runs/{run_id}", f"/runs/{run_id}/tasks/hello",
                     "/events", "/notifications"):
            page.goto(daemon.url(path))
            expect(page.locator("main")).to_be_visible()
            if path == "/dags/ui_demo":
                nodes_all(page, "success")
            wide = page.evaluate("document.documentElement.scrollWidth") - 390
            assert wide <= 0, f"{path} is {wide}px wider than a phone's screen"
            name = path.strip("/").replace("/", "-") or "dags"
            shot(page, tmp_path, f"phone-{scheme}-{name}")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(18, 21, 27)") == (scheme == "dark"), background
        small.check()
    finally:
        context.close()


def test_an_open_trigger_form_and_its_message_outlive_the_live_refreshes(
    ui: tuple[Daemon, Watched], tmp_path: Path
) -> None:
    daemon, watched = ui
    page = watched.page
    card = page.locator(".dag-card[data-dag='ui_demo']")
    card.locator("summary", has_text="Trigger").click()
    card.locator('input[name="who"]').fill("Grace")
    card.get_by_role("button", name="Trigger run").click()
    result = card.locator(".form-result")
    expect(result).to_contain_text("queued")
    # The run's marks change as it runs: the list is redrawn around the open form.
    expect(card.locator(".marks .mark[data-state='success']")).to_have_count(1)
    status, _ = daemon.request("POST", "/api/v1/dags/flaky/runs", {"conf": {}})
    assert status == 201
    expect(page.locator(".dag-card[data-dag='flaky'] .mark[data-state='success']")
           ).to_have_count(1)
    expect(result).to_contain_text("queued")
    expect(result.get_by_role("link", name="open")).to_be_visible()
    expect(card.locator("details.trigger")).to_have_attribute("open", "")
    expect(card.locator('input[name="who"]')).to_have_value("Grace")
    shot(page, tmp_path, "dags-trigger-kept")
    watched.check()


def test_a_new_runs_graph_shows_its_waiting_tasks_scheduled_and_durations_tick(
    ui: tuple[Daemon, Watched], tmp_path: Path, dags_folder: Path
) -> None:
    daemon, watched = ui
    page = watched.page
    page.goto(daemon.url("/dags/chain"))
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    status, created = daemon.request("POST", "/api/v1/dags/chain/runs", {"conf": {}})
    assert status == 201, created
    graph = page.locator("svg[data-graph]")
    expect(graph.locator("g.node[data-task='hold']")).to_have_attribute("data-state", "running")
    expect(graph.locator("g.node[data-task='after_hold']")).to_have_attribute(
        "data-state", "scheduled")
    expect(page.locator(".grid .cell[data-state='scheduled']")).to_have_count(1)
    shot(page, tmp_path, "graph-scheduled")
    page.goto(daemon.url(f"/runs/{created['run_id']}"))
    duration = page.locator(".facts [data-tick]")
    expect(duration).to_have_count(1)
    first = duration.text_content() or ""
    expect(duration).not_to_have_text(first, timeout=3_000)  # no event came: the timer
    (dags_folder / "release").write_text("go\n")
    expect(page.locator(".heading .badge")).to_have_text("success")
    expect(page.locator(".facts [data-tick]")).to_have_count(0)
    watched.check()


def test_a_page_whose_session_ends_says_logged_out_and_stops_asking(
    ui: tuple[Daemon, Watched], tmp_path: Path
) -> None:
    daemon, watched = ui
    page = watched.page
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    page.evaluate("""async () => {
        const body = new URLSearchParams({csrf: document.querySelector(
            'meta[name="dagd-csrf"]').content});
        await fetch("/logout", {method: "POST", body, credentials: "same-origin",
                                redirect: "manual"});
    }""")
    status, _ = daemon.request("POST", "/api/v1/dags/flaky/runs", {"conf": {}})
    assert status == 201  # a change: the page asks the server again, and is refused
    expect(page.locator("#live")).to_have_attribute("data-live", "out")
    expect(page.locator("#live")).to_have_text("logged out")
    expect(page.locator("#flash a")).to_have_attribute("href", "/login?next=%2F")
    shot(page, tmp_path, "logged-out")
    count = len(asked)
    # One more change, to the end of its run: a page still live would ask for it.
    status, body = daemon.request("POST", "/api/v1/dags/flaky/runs", {"conf": {}})
    assert status == 201
    wait_until(lambda: daemon.request("GET", f"/api/v1/runs/{body['run_id']}")[1].get(
        "state") == "success", timeout=WAIT_MS / 1000, what="the last run to succeed")
    streams = [u for u in asked if "/api/v1/stream" in u]
    assert not [u for u in streams if "undefined" in u], streams
    assert [u for u in asked[count:] if "/api/v1/" in u] == [], asked[count:]
    watched.problems = [p for p in watched.problems if "status of 401" not in p]
    watched.check()


ROOT = Path(__file__).resolve().parents[2]


def test_a_newcomer_opens_the_printed_link_and_watches_ml_training(
    dagd: Dagd, browser: Browser, tmp_path: Path
) -> None:
    """The first minutes the README promises: the shipped config and examples, no user
    yet; the link the daemon prints logs the browser in, ml_training is triggered from
    its form with conf and runs live, and its training log reads in the page."""
    shutil.copytree(ROOT / "examples", dagd.dags_folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    dagd.config = ROOT / "config" / "dagd.toml"
    daemon = dagd.start()
    found = wait_until(lambda: re.search(r"log in at (http://\S+/login\?token=[\w-]+)",
                                         daemon.log()), timeout=10, what="the login link")
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = watch(page)
    try:
        page.goto(found[1])
        expect(page).to_have_url(daemon.url("/"))
        expect(page.locator(".dag-card[data-dag='ml_training']")).to_be_visible()
        page.get_by_role("link", name="ml_training").click()
        page.locator("summary", has_text="Trigger").click()
        form = page.locator("form.trigger-form")
        form.locator('input[name="min_improvement"]').fill("0.01")
        form.get_by_role("button", name="Trigger run").click()
        expect(form.locator(".form-result")).to_contain_text("queued")
        for node in page.locator("svg[data-graph] g.node").all():
            expect(node).to_have_attribute("data-state", re.compile("^(success|skipped)$"),
                                           timeout=120_000)
        run_id = int(page.locator("svg[data-graph]").get_attribute("data-run") or 0)
        status, run = daemon.request("GET", f"/api/v1/runs/{run_id}")
        assert status == 200 and run["state"] == "success", run
        assert run["conf"]["min_improvement"] == 0.01
        shot(page, tmp_path, "ml_training")
        page.goto(daemon.url(f"/runs/{run_id}/tasks/train?map_index=0"))
        expect(page.locator("#log")).to_contain_text("f1_macro")
        shot(page, tmp_path, "ml_training-train")
        watched.check()
    finally:
        context.close()
