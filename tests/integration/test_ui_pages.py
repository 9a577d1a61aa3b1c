"""What the UI's run and task pages say over a real aiohttp server: a mapped task's own
page lists its instances, durations follow the latest try after a clear, a running
duration carries its start for the page's timer, the grid's columns name their run,
a viewer sees whether a DAG is paused, triggers and dates read well, and the login page
offers its first-login hint only while no user exists."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dagd.accounts import AccountsFile
from integration.harness import StartEngine, wait_until
from integration.test_ui import (
    TRIGGERED,
    UI_DAGS,
    PageParser,
    assert_clean,
    get,
    parse,
    texts,
    ui,
)

pytestmark = pytest.mark.anyio

WAITS = '''
from pathlib import Path

from dagd import DAG, task

with DAG("waits"):
    @task
    def hold():
        import time

        while not Path({flag!r}).exists():  # the test says when to go on
            time.sleep(0.02)

    hold()
'''


async def test_a_mapped_tasks_page_lists_its_instances_not_a_try_of_its_own(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        run_id, state = await h.run("shop")
        assert state == "success"
        page = assert_clean(await get(http, f"{base}/runs/{run_id}/tasks/train"))
        dag = parse(await get(http, f"{base}/dags/shop"))
        run = parse(await get(http, f"{base}/runs/{run_id}"))
    assert "train | success | mapped into 3 |" in " | ".join(
        t.strip() for t in run.text if t.strip())
    shown = texts(page)
    assert "Mapped into 3 instances" in shown, shown
    assert "retries left" not in shown and "Not run yet" not in shown
    assert "Log" not in shown.split("Mapped into")[1]
    links = [a["href"] for t, a in page.tags if t == "a" and "map_index=" in a.get("href", "")]
    assert links == [f"/runs/{run_id}/tasks/train?map_index={i}" for i in range(3)]
    states = [a["data-state"] for t, a in page.tags
              if re.fullmatch(rf"{run_id}:train:\d", a.get("data-ti") or "")]
    assert states == ["success"] * 3
    assert "n=1" in shown and "n=2" in shown and "n=3" in shown  # split's [1, 2, 3]
    node = [a["href"] for t, a in dag.tags if t == "a" and a.get("data-task-link") == "train"]
    assert node == [f"/runs/{run_id}/tasks/train"]


async def test_durations_follow_the_latest_try_after_a_clear(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        run_id, _ = await h.run("shop")
        first = (await h.attempts(run_id, "extract"))[0]
        assert first.started_at is not None
        # The second try must start over a second after the first: wait for the clock.
        await wait_until(lambda: time.time() > first.started_at + 1.1,  # type: ignore[operator]
                         what="a second to pass")
        await h.engine.clear(run_id, "extract")

        async def ran_again() -> bool:
            tries = await h.attempts(run_id, "extract")
            return len(tries) == 2 and tries[-1].ended_at is not None
        await wait_until(ran_again, what="extract to run again")
        tries = await h.attempts(run_id, "extract")
        ti = (await h.tis(run_id))["extract"]
        assert ti.started_at is not None and ti.started_at < tries[-1].started_at - 1
        run = parse(await get(http, f"{base}/runs/{run_id}"))
        task = parse(await get(http, f"{base}/runs/{run_id}/tasks/extract"))
    row = next(r for r in _rows(run) if r[0] == "extract")
    assert re.fullmatch(r"\d+ ms|0\.\d+s", row[-1]), row
    facts = texts(task)
    duration = facts.split("duration", 1)[1].split()[0:2]
    assert duration[1] == "ms" or duration[0].startswith("0."), facts


def _rows(page: PageParser) -> list[list[str]]:
    """The texts of each row of the task instances table: task, state, try, queued,
    started, duration (read from the page's text in document order)."""
    rows: list[list[str]] = []
    joined = " | ".join(t.strip() for t in page.text if t.strip())
    for match in re.finditer(r"(\S+) \| (\w+) \| (\d+) of (\d+) \| ([^|]+) \| ([^|]+) \| "
                             r"([^|]+?)(?= \||$)", joined):
        rows.append([g.strip() for g in match.groups()])
    return rows


async def test_a_running_duration_carries_its_start_for_the_page_timer(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    write_dag("waits.py", WAITS.format(flag=str(flag)))
    async with start_engine() as h, ui(h) as (http, base):
        run_id = await h.trigger("waits")

        async def started() -> bool:
            return bool(await h.attempts(run_id, "hold"))
        await wait_until(started, what="hold to start")
        run = parse(await get(http, f"{base}/runs/{run_id}"))
        dag = parse(await get(http, f"{base}/dags/waits"))
        flag.write_text("go")
        assert await h.wait(run_id) == "success"
        done = parse(await get(http, f"{base}/runs/{run_id}"))
    for page in (run, dag):
        ticking = [a for t, a in page.tags if t == "span" and "data-tick" in a]
        assert ticking and all(float(a["data-tick"] or 0) > 0 for a in ticking)
    assert [a for t, a in done.tags if "data-tick" in a] == []
    body = next(a for t, a in run.tags if t == "body")
    assert float(body["data-clock"] or 0) > 0


async def test_the_grid_names_each_runs_column_and_a_run_shows_its_date_short(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        ids = [(await h.run("shop"))[0] for _ in range(2)]
        dag = parse(await get(http, f"{base}/dags/shop"))
        run = parse(await get(http, f"{base}/runs/{ids[0]}"))
        row = await h.store.get_run(ids[0])
    heads = [(a["href"], a["title"]) for t, a in dag.tags if a.get("class") == "run-head"]
    assert [h for h, _ in heads] == [f"/runs/{i}" for i in ids]
    assert all(re.search(r"created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", t or "")
               for _, t in heads)
    assert row.logical_date and "T" in row.logical_date
    shown = texts(run)
    assert re.search(r"for \d{4}-\d\d-\d\d \d\d:\d\d UTC", shown), shown
    assert row.logical_date not in shown  # only in the title and datetime attributes
    assert [a["title"] for t, a in run.tags if t == "time" and a.get("title")] == [
        row.logical_date]


async def test_a_viewer_sees_whether_a_dag_is_paused(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, tmp_path: Path
) -> None:
    write_dag("timed.py", TRIGGERED.format(folder=str(tmp_path / "drops")))
    async with start_engine() as h, ui(h) as (http, base):
        token = AccountsFile(h.settings.data_dir).create_token("watcher", role="viewer")
        viewer = {"Authorization": f"Bearer {token}"}
        seen = {}
        for paused in (False, True):
            await h.engine.set_paused("timed", paused)
            for path in ("/", "/dags/timed"):
                async with http.get(base + path, headers=viewer) as resp:
                    page = assert_clean(await resp.text())
                seen[paused, path] = [a for t, a in page.tags
                                      if t == "input" and "data-paused" in a]
    for (paused, path), boxes in seen.items():
        assert len(boxes) == 1, (path, boxes)
        box = boxes[0]
        assert "disabled" in box and "data-action" not in box
        assert ("checked" in box) is paused, (path, paused, box)


async def test_the_login_page_hints_at_the_first_login_only_while_no_user_exists(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        async with http.get(f"{base}/login", headers={"Authorization": ""}) as resp:
            before = await resp.text()
        AccountsFile(h.settings.data_dir).add_user("ada", "a long enough password", role="viewer")
        async with http.get(f"{base}/login", headers={"Authorization": ""}) as resp:
            after = await resp.text()
    assert "No user yet?" in before
    assert "No user yet?" not in after and "Username" in after


async def test_the_events_page_filters_by_kind_and_outcome(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("shop.py", UI_DAGS)
    async with start_engine() as h, ui(h) as (http, base):
        await h.run("shop")
        manual = parse(await get(http, f"{base}/events?kind=manual&outcome=run_created"))
        cron = assert_clean(await get(http, f"{base}/events?kind=cron"))
        odd = assert_clean(await get(http, f"{base}/events?kind=%3Cb%3E&outcome=nope"))
    outcomes = [a["data-outcome"] for t, a in manual.tags if a.get("class") == "outcome"]
    assert outcomes == ["run_created"]
    assert "No event matches" in texts(cron)
    selected = [a.get("value") for t, a in odd.tags if t == "option" and "selected" in a]
    assert selected == ["<b>"]  # an unknown kind is kept (as text), an unknown outcome not
