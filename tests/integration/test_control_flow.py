"""Control flow in real runs: branches, short-circuits, mapped task instances (async
and in worker processes, retried, failed, empty, resumed after a restart) and task
groups, read back from the store's rows and the attempts' log files."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dagd.config import Settings
from dagd.store.rows import AttemptRow, HistoryRow, TaskInstanceRow
from integration.harness import Harness, StartEngine, read_text, wait_until

pytestmark = pytest.mark.anyio

S, F, K, UF = "success", "failed", "skipped", "upstream_failed"

WriteDag = Callable[[str, str], Path]


# -- reading rows -----------------------------------------------------------------------


async def task_states(h: Harness, run_id: int) -> dict[str, str]:
    """The state of each task's own instance (map index -1), by task id."""
    return {ti.task_id: ti.state for ti in await h.store.list_tis(run_id) if ti.map_index < 0}


async def instances(h: Harness, run_id: int, task_id: str) -> dict[int, TaskInstanceRow]:
    """Every task_instance row of one task, by map index (-1: the task's own)."""
    rows = [ti for ti in await h.store.list_tis(run_id) if ti.task_id == task_id]
    by_index = {ti.map_index: ti for ti in rows}
    assert len(by_index) == len(rows), f"two rows with one map index: {rows}"
    return by_index


async def attempts_of(h: Harness, ti: TaskInstanceRow) -> list[AttemptRow]:
    return await h.store.list_attempts(ti.id)


async def history_of(h: Harness, ti: TaskInstanceRow) -> list[HistoryRow]:
    return [r for r in await h.store.run_history(ti.run_id) if r.ti_id == ti.id]


async def xcom_of(h: Harness, ti: TaskInstanceRow) -> Any:
    return await h.store.get_xcom(ti.id)


# -- branching ---------------------------------------------------------------------------

BRANCHES = """
from dagd import DAG, task

with DAG("route") as route:
    @task.branch
    async def choose(conf):
        return conf["path"]

    @task
    async def left():
        return "went left"

    @task
    async def right():
        return "went right"

    @task
    async def after_right(value):
        return value

    @task(trigger_rule="none_failed_min_one_success")
    async def join(a, b):
        return a or b

    l, r = left(), right()
    choose() >> [l, r]
    join(l, after_right(r))

with DAG("fanout") as fanout:
    @task.branch
    def pick():  # sync: decided in a worker process
        return ["a", "c"]

    @task
    async def a():
        return "A"

    @task
    async def b():
        return "B"

    @task
    async def c():
        return "C"

    @task(trigger_rule="none_failed_min_one_success")
    async def report(x, y, z):
        return [x, y, z]

    paths = [a(), b(), c()]
    pick() >> paths
    report(*paths)

with DAG("lost") as lost:
    @task.branch
    async def choose():
        return "nowhere"

    @task
    async def a():
        return "A"

    @task
    async def b():
        return "B"

    @task(trigger_rule="none_failed_min_one_success")
    async def join():
        return "joined"

    choose() >> [a(), b()] >> join()
"""


async def test_a_branch_follows_the_path_named_in_the_conf(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("branches.py", BRANCHES)
    async with start_engine() as h:
        went_left = await h.trigger("route", {"path": "left"})
        went_right = await h.trigger("route", {"path": "right"})
        finals = (await h.wait(went_left), await h.wait(went_right))
        states = (await task_states(h, went_left), await task_states(h, went_right))
        joined = (await h.xcom(went_left, "join"), await h.xcom(went_right, "join"))
        never_ran = (await h.attempts(went_left, "right"), await h.attempts(went_right, "left"))
        skipped = await h.ti_history(went_left, "right")
    assert finals == (S, S)
    assert states[0] == {
        "choose": S, "left": S, "right": K, "after_right": K, "join": S,
    }
    assert states[1] == {
        "choose": S, "left": K, "right": S, "after_right": S, "join": S,
    }
    # The join ran after whichever path was taken and saw only that path's value.
    assert joined == ("went left", "went right")
    assert never_ran == ([], [])
    assert [(r.from_state, r.to_state, r.reason) for r in skipped][-1] == (
        "scheduled", "skipped", "skipped by choose",
    )


async def test_a_branch_may_follow_several_paths(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("branches.py", BRANCHES)
    async with start_engine() as h:
        run_id, state = await h.run("fanout")
        states = await task_states(h, run_id)
        report = await h.xcom(run_id, "report")
        picked = await h.xcom(run_id, "pick")
    assert state == S
    assert states == {"pick": S, "a": S, "b": K, "c": S, "report": S}
    assert picked == ["a", "c"]
    assert report == ["A", None, "C"]


async def test_a_branch_naming_a_task_not_downstream_fails_with_the_choices(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("branches.py", BRANCHES)
    async with start_engine() as h:
        run_id, state = await h.run("lost")
        states = await task_states(h, run_id)
        attempts = await h.attempts(run_id, "choose")
        history = await h.ti_history(run_id, "choose")
    error = (
        "branch returned 'nowhere', which is not a task directly downstream of 'choose' "
        "(choices: a, b)"
    )
    assert state == F
    assert states == {"choose": F, "a": UF, "b": UF, "join": UF}
    assert [(a.try_number, a.state, a.error) for a in attempts] == [(1, F, error)]
    assert (history[-1].to_state, history[-1].reason) == (F, error)


SHORT_CIRCUIT = """
from dagd import DAG, task

with DAG("gated") as gated:
    @task.short_circuit
    async def gate(conf):
        return conf["go"]

    @task
    async def work():
        return "worked"

    @task
    async def publish(value):
        return f"published {value}"

    @task
    async def independent():
        return "always"

    @task(trigger_rule="all_done")
    async def cleanup():
        return "cleaned"

    w = work()
    gate() >> w
    publish(w) >> cleanup()
    independent()
"""


@pytest.mark.parametrize(
    ("go", "expected", "published"),
    [
        (True, {"work": S, "publish": S}, "published worked"),
        (False, {"work": K, "publish": K}, None),
        (0, {"work": K, "publish": K}, None),
        ("yes", {"work": S, "publish": S}, "published worked"),
    ],
)
async def test_a_short_circuit_lets_through_or_skips_what_follows(
    go: Any,
    expected: dict[str, str],
    published: str | None,
    write_dag: WriteDag,
    start_engine: StartEngine,
) -> None:
    write_dag("gated.py", SHORT_CIRCUIT)
    async with start_engine() as h:
        run_id, state = await h.run("gated", {"go": go})
        states = await task_states(h, run_id)
        value = await h.xcom(run_id, "publish")
        work_attempts = await h.attempts(run_id, "work")
    assert state == S
    assert states == {"gate": S, "independent": S, "cleanup": S, **expected}
    assert value == published
    assert len(work_attempts) == (1 if expected["work"] == S else 0)


# -- mapping -----------------------------------------------------------------------------

MAPPING = """
import asyncio

from dagd import DAG, task

with DAG("literal") as literal:
    @task
    async def double(x):
        return 2 * x

    @task
    async def total(values):
        return {"values": values, "sum": sum(values)}

    total(double.expand(x=[3, 1, 2]))

with DAG("hundred") as hundred:
    @task
    async def numbers():
        return {"xs": list(range(100))}

    @task
    async def square(x, base, map_index):
        # Finish out of order: the list downstream must still follow the map index.
        await asyncio.sleep(0.001 * ((x * 37) % 10))
        return {"i": map_index, "sq": x * x + base}

    @task
    async def collect(results):
        return results

    collect(square.partial(base=1000).expand(x=numbers()["xs"]))

with DAG("nothing") as nothing:
    @task
    async def none_found():
        return []

    @task
    async def each(x):
        return x

    @task
    async def after(values):
        return values

    @task(trigger_rule="all_done")
    async def report():
        return "reported"

    after(each.expand(x=none_found())) >> report()
    each.override(task_id="each_literal").expand(x=[])
"""


async def test_mapping_over_a_literal_list(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("mapping.py", MAPPING)
    async with start_engine() as h:
        run_id, state = await h.run("literal")
        rows = await instances(h, run_id, "double")
        values = {i: await xcom_of(h, ti) for i, ti in rows.items()}
        total = await h.xcom(run_id, "total")
    assert state == S
    assert {i: ti.state for i, ti in rows.items()} == {-1: S, 0: S, 1: S, 2: S}
    assert values == {-1: [6, 2, 4], 0: 6, 1: 2, 2: 4}
    assert total == {"values": [6, 2, 4], "sum": 12}


async def test_mapping_over_100_items_of_an_upstream_output(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("mapping.py", MAPPING)
    async with start_engine() as h:
        run_id, state = await h.run("hundred")
        rows = await instances(h, run_id, "square")
        collected = await h.xcom(run_id, "collect")
        own_attempts = await attempts_of(h, rows[-1])
        own_history = await history_of(h, rows[-1])
    assert state == S
    assert sorted(rows) == list(range(-1, 100))
    assert {ti.state for ti in rows.values()} == {S}
    assert {ti.try_number for i, ti in rows.items() if i >= 0} == {1}
    assert collected == [{"i": i, "sq": i * i + 1000} for i in range(100)]
    # The task's own instance runs nothing itself: it stands for its instances.
    assert own_attempts == []
    assert [(r.from_state, r.to_state) for r in own_history if r.from_state] == [
        ("scheduled", "queued"), ("queued", "running"), ("running", "success"),
    ]
    assert own_history[-2].reason == "expanded into 100 mapped instances"


async def test_mapping_over_no_item_skips_the_task(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("mapping.py", MAPPING)
    async with start_engine() as h:
        run_id, state = await h.run("nothing")
        states = await task_states(h, run_id)
        rows = {t: await instances(h, run_id, t) for t in ("each", "each_literal")}
        reasons = {t: (await history_of(h, rows[t][-1]))[-1].reason for t in rows}
        attempts = [await attempts_of(h, rows[t][-1]) for t in rows]
    assert state == S
    assert states == {
        "none_found": S, "each": K, "after": K, "report": S, "each_literal": K,
    }
    assert {t: sorted(r) for t, r in rows.items()} == {"each": [-1], "each_literal": [-1]}
    assert reasons == {"each": "mapped over no item", "each_literal": "mapped over no item"}
    assert attempts == [[], []]


WORKERS = """
import os

from dagd import DAG, task

with DAG("words") as words:
    @task
    async def make_words():
        return ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]

    @task
    def shout(word, map_index):  # sync: each instance in its own worker process
        print(f"instance {map_index} shouts {word}", flush=True)
        return {"word": word.upper(), "pid": os.getpid()}

    @task
    async def gather(results):
        return [r["word"] for r in results]

    gather(shout.expand(word=make_words()))
"""

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


async def test_mapped_sync_instances_run_in_workers_with_a_row_and_log_each(
    write_dag: WriteDag, start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("words.py", WORKERS)
    async with start_engine() as h:
        run_id, state = await h.run("words", deadline=20.0)
        rows = await instances(h, run_id, "shout")
        attempts = {i: await attempts_of(h, ti) for i, ti in rows.items()}
        values = {i: await xcom_of(h, ti) for i, ti in rows.items() if i >= 0}
        gathered = await h.xcom(run_id, "gather")
    assert state == S
    assert gathered == [w.upper() for w in WORDS]
    assert sorted(rows) == [-1, *range(8)]
    assert all(ti.state == S and ti.try_number == 1 for ti in rows.values() if ti.map_index >= 0)
    assert all(ti.task_id == "shout" and ti.run_id == run_id for ti in rows.values())
    assert attempts[-1] == []
    # Each instance ran in a worker process of its own, not in the daemon.
    pids = [values[i]["pid"] for i in range(8)]
    assert os.getpid() not in pids
    # One attempt, one log file per instance, holding that instance's output only.
    run_dir = settings.logs_dir / "words" / f"run_{run_id}"
    for i, word in enumerate(WORDS):
        (attempt,) = attempts[i]
        assert (attempt.try_number, attempt.state, attempt.pid) == (1, S, pids[i])
        assert attempt.log_path == str(run_dir / f"shout[{i}]" / "attempt_1.log")
        text = await read_text(attempt.log_path)
        assert f"instance {i} shouts {word}" in text
        assert text.count("shouts") == 1
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith("shout")) == [
        f"shout[{i}]" for i in range(8)
    ]


FAILING = """
from dagd import DAG, task

with DAG("flaky_pages") as flaky_pages:
    @task(retries=1, retry_delay=0)
    async def fetch(page, try_number):
        if page == "p2" and try_number == 1:
            raise ConnectionError("page p2 timed out")
        return f"{page} on try {try_number}"

    @task
    async def pages(values):
        return values

    pages(fetch.expand(page=["p0", "p1", "p2", "p3"]))

with DAG("bad_rows") as bad_rows:
    @task
    async def parse(row):
        if row == "bad":
            raise ValueError(f"cannot parse {row!r}")
        return row.upper()

    @task
    async def load(rows):
        return rows

    @task
    async def publish(count):
        return count

    @task(trigger_rule="all_done")
    async def report():
        return "reported"

    publish(load(parse.expand(row=["a", "bad", "c"]))) >> report()

with DAG("not_a_list") as not_a_list:
    @task
    async def count():
        return 3

    @task
    async def each(x):
        return x

    @task
    async def after(values):
        return values

    after(each.expand(x=count()))
"""


async def test_a_failed_instance_is_retried_alone(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("failing.py", FAILING)
    async with start_engine() as h:
        run_id, state = await h.run("flaky_pages")
        rows = await instances(h, run_id, "fetch")
        attempts = {i: await attempts_of(h, ti) for i, ti in rows.items()}
        histories = {i: await history_of(h, ti) for i, ti in rows.items()}
        pages = await h.xcom(run_id, "pages")
    assert state == S
    assert {i: (ti.state, ti.try_number) for i, ti in rows.items()} == {
        -1: (S, 0), 0: (S, 1), 1: (S, 1), 2: (S, 2), 3: (S, 1),
    }
    assert [(a.try_number, a.state, a.error) for a in attempts[2]] == [
        (1, F, "ConnectionError: page p2 timed out"),
        (2, S, None),
    ]
    for i in (0, 1, 3):
        assert [(a.try_number, a.state) for a in attempts[i]] == [(1, S)]
    retried = [i for i, h_ in histories.items() if any(r.to_state == "up_for_retry" for r in h_)]
    assert retried == [2]
    assert [r.to_state for r in histories[-1] if r.from_state] == ["queued", "running", S]
    assert pages == ["p0 on try 1", "p1 on try 1", "p2 on try 2", "p3 on try 1"]


async def test_an_instance_failing_for_good_fails_the_task_and_its_downstream(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("failing.py", FAILING)
    async with start_engine() as h:
        run_id, state = await h.run("bad_rows")
        rows = await instances(h, run_id, "parse")
        states = await task_states(h, run_id)
        bad_attempts = await attempts_of(h, rows[1])
        own_reason = (await history_of(h, rows[-1]))[-1].reason
        never_ran = [await h.attempts(run_id, t) for t in ("load", "publish")]
        values = [await xcom_of(h, rows[i]) for i in (0, 2)]
    assert state == F
    # The other instances ran to their end regardless.
    assert {i: ti.state for i, ti in rows.items()} == {-1: F, 0: S, 1: F, 2: S}
    assert values == ["A", "C"]
    assert [(a.state, a.error) for a in bad_attempts] == [(F, "ValueError: cannot parse 'bad'")]
    assert own_reason == "1 of 3 mapped instances failed"
    assert states == {"parse": F, "load": UF, "publish": UF, "report": S}
    assert never_ran == [[], []]


async def test_an_upstream_output_that_is_not_a_list_fails_the_mapped_task(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("failing.py", FAILING)
    async with start_engine() as h:
        run_id, state = await h.run("not_a_list")
        states = await task_states(h, run_id)
        rows = await instances(h, run_id, "each")
        reason = (await history_of(h, rows[-1]))[-1].reason
        attempts = await attempts_of(h, rows[-1])
    assert state == F
    assert states == {"count": S, "each": F, "after": UF}
    assert sorted(rows) == [-1]
    assert attempts == []
    assert reason == (
        "cannot expand: DAG 'not_a_list', task 'each', field 'x': "
        "expand(x=...) must resolve to a list, got int"
    )


RESUMABLE = """
import asyncio

from dagd import DAG, task

RAN = {ran!r}

with DAG("resumable") as resumable:
    @task
    async def chunk(n, try_number):
        with open(RAN, "a") as f:
            f.write(f"{{n}} try {{try_number}}\\n")
        if n >= 3 and try_number == 1:
            await asyncio.Event().wait()  # until the engine stops
        return n * 10

    @task
    async def total(values):
        return values

    total(chunk.expand(n=[0, 1, 2, 3, 4, 5]))
"""


async def test_a_restart_finishes_the_remaining_instances_only(
    write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.txt"
    ran.touch()
    write_dag("resumable.py", RESUMABLE.format(ran=str(ran)))

    def executions() -> Counter[str]:
        return Counter(ran.read_text().splitlines())

    async def half_done(h: Harness, run_id: int) -> bool:
        rows = await instances(h, run_id, "chunk")
        finished = [i for i, ti in rows.items() if i >= 0 and ti.state == S]
        return sorted(finished) == [0, 1, 2] and sum(executions().values()) == 6

    async with start_engine() as h:
        run_id = await h.trigger("resumable")
        await wait_until(lambda: half_done(h, run_id), what="three instances done, three hung")
    # The engine stopped mid-mapping: nothing after the mapped task has run.
    async with start_engine() as h:
        stopped = {i: ti.state for i, ti in (await instances(h, run_id, "chunk")).items()}
        interrupted = await attempts_of(h, (await instances(h, run_id, "chunk"))[3])
        state = await h.wait(run_id)
        rows = await instances(h, run_id, "chunk")
        attempts = {i: await attempts_of(h, ti) for i, ti in rows.items() if i >= 0}
        total = await h.xcom(run_id, "total")
    assert {i: stopped[i] for i in (-1, 0, 1, 2)} == {-1: "running", 0: S, 1: S, 2: S}
    assert all(stopped[i] not in (S, F, K, UF) for i in (3, 4, 5))
    assert [(a.try_number, a.state, a.error) for a in interrupted][:1] == [
        (1, F, "interrupted: the daemon stopped"),
    ]
    assert state == S
    assert {i: ti.state for i, ti in rows.items()} == {i: S for i in range(-1, 6)}
    assert total == [0, 10, 20, 30, 40, 50]
    # The finished instances were not run again; the interrupted ones were, once more.
    assert executions() == Counter(
        [f"{n} try 1" for n in range(6)] + [f"{n} try 2" for n in (3, 4, 5)]
    )
    for i in (0, 1, 2):
        assert [(a.try_number, a.state) for a in attempts[i]] == [(1, S)]
    for i in (3, 4, 5):
        assert [(a.try_number, a.state) for a in attempts[i]] == [(1, F), (2, S)]


# -- task groups ---------------------------------------------------------------------------

GROUPS = """
from dagd import DAG, TaskGroup, task

with DAG("grouped") as grouped:
    @task
    async def start():
        return 2

    @task
    async def fetch_page(page, n):
        return [f"page{page}-{i}" for i in range(n)]

    @task
    async def merge(pages, more):
        return sum(len(p) for p in pages) + len(more)

    @task
    async def db(n):
        return ["row"] * n

    @task.branch
    async def choose(context):
        # Upstream through the group link, not through an argument.
        count = context.xcom_pull("extract.merge")
        return "small" if count < 10 else "big"  # a group mate: no prefix needed

    @task
    async def small(task_id):
        return f"{task_id} ran"

    @task
    async def big(task_id):
        return f"{task_id} ran"

    @task(trigger_rule="none_failed_min_one_success")
    async def done(context):
        return sorted(context.upstream)  # the upstream tasks that returned a value

    n = start()
    with TaskGroup("extract") as extract:
        pages = fetch_page.partial(n=n).expand(page=[1, 2, 3])
        with TaskGroup("sql"):
            rows = db(n)
        merge(pages, rows)
    with TaskGroup("load") as load:
        choose() >> [small(), big()]
    extract >> load >> done()
"""


async def test_task_groups_run_with_prefixed_ids_and_links_between_groups(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("groups.py", GROUPS)
    async with start_engine() as h:
        run_id, state = await h.run("grouped")
        states = await task_states(h, run_id)
        tis = {ti.task_id: ti for ti in await h.store.list_tis(run_id) if ti.map_index < 0}
        pages = await instances(h, run_id, "extract.fetch_page")
        values = {t: await h.xcom(run_id, t) for t in ("extract.merge", "load.small", "done")}
        spec = (await h.store.get_dag("grouped")).spec
    assert state == S
    assert states == {
        "start": S, "extract.fetch_page": S, "extract.sql.db": S, "extract.merge": S,
        "load.choose": S, "load.small": S, "load.big": K, "done": S,
    }
    assert sorted(pages) == [-1, 0, 1, 2]
    assert values == {
        "extract.merge": 8,
        "load.small": "load.small ran",
        "done": ["load.small"],
    }
    # The group link made load's first task wait for extract's last one.
    choose, merge = tis["load.choose"], tis["extract.merge"]
    assert choose.started_at is not None and merge.ended_at is not None
    assert choose.started_at >= merge.ended_at
    groups = {t["task_id"]: (t["group"], t["upstream"]) for t in spec["tasks"]}
    assert groups["extract.sql.db"] == ("extract.sql", ["start"])
    assert groups["load.choose"] == ("load", ["extract.merge"])
    assert groups["done"] == (None, ["load.big", "load.small"])

