"""Control flow when a DAG is defined: task groups, branch and short-circuit modes,
mapping (`expand`, `partial`) and what a branch's return value skips (`to_skip`). Pure."""

from __future__ import annotations

from typing import Any

import pytest

from dagd import DAG, Context, DagDefinitionError, PythonTask, TaskGroup, XComArg, task
from dagd.authoring.groups import current_group
from dagd.authoring.tasks import BaseTask
from dagd.scheduler.flow import to_skip


def noop() -> None:
    return None


def make(*task_ids: str, **options: Any) -> list[PythonTask]:
    return [PythonTask(task_id=tid, python_callable=noop, **options) for tid in task_ids]


def ctx(**overrides: Any) -> Context:
    values: dict[str, Any] = {
        "dag_id": "d", "task_id": "t", "run_id": 1, "try_number": 1, "attempt_id": 1,
    }
    values.update(overrides)
    return Context(**values)


def python_task(d: DAG, task_id: str) -> PythonTask:
    created = d.tasks[task_id]
    assert isinstance(created, PythonTask)
    return created


def edges(d: DAG) -> set[tuple[str, str]]:
    """Every (upstream, downstream) pair of the DAG, checked from both ends."""
    down = {(t.task_id, o) for t in d.tasks.values() for o in t.downstream_ids}
    up = {(o, t.task_id) for t in d.tasks.values() for o in t.upstream_ids}
    assert down == up
    return down


# -- task groups: ids -----------------------------------------------------------------


def test_tasks_in_a_group_get_the_group_prefix() -> None:
    with DAG("etl") as d:
        before = make("start")[0]
        with TaskGroup("preprocess") as group:
            clean, scale = make("clean", "scale")
        after = make("finish")[0]
    assert list(d.tasks) == ["start", "preprocess.clean", "preprocess.scale", "finish"]
    assert (clean.task_id, scale.task_id) == ("preprocess.clean", "preprocess.scale")
    assert group.tasks == [clean, scale]
    assert clean.group is group and before.group is None and after.group is None
    assert clean.describe()["group"] == "preprocess"
    assert before.describe()["group"] is None


def test_nested_groups_join_their_ids_with_dots() -> None:
    with DAG("etl") as d:
        with TaskGroup("outer") as outer:
            (top,) = make("top")
            with TaskGroup("inner") as inner:
                (deep,) = make("deep")
            (back,) = make("back")
    assert list(d.tasks) == ["outer.top", "outer.inner.deep", "outer.back"]
    assert (inner.qualified_id, inner.parent) == ("outer.inner", outer)
    # A group holds its subgroups' tasks too: linking `outer` takes them into account.
    assert outer.tasks == [top, deep, back]
    assert inner.tasks == [deep]
    assert deep.describe()["group"] == "outer.inner"
    assert back.describe()["group"] == "outer"


def test_leaving_a_group_ends_its_prefix_even_on_an_error() -> None:
    with DAG("d") as d:
        with pytest.raises(RuntimeError), TaskGroup("g"):
            make("inside")
            raise RuntimeError("stop here")
        assert current_group() is None
        make("outside")
    assert list(d.tasks) == ["g.inside", "outside"]


def test_the_same_task_id_in_two_groups_is_two_tasks() -> None:
    with DAG("d") as d:
        with TaskGroup("eu"):
            make("fetch")
        with TaskGroup("us"):
            make("fetch")
        make("fetch")
    assert list(d.tasks) == ["eu.fetch", "us.fetch", "fetch"]


def test_a_duplicate_id_inside_a_group_names_the_prefixed_id() -> None:
    with DAG("d"), TaskGroup("g"):
        make("x")
        with pytest.raises(DagDefinitionError) as info:
            make("x")
    assert info.value.task_id == "g.x"
    assert "duplicate task id" in info.value.message


def test_a_group_outside_a_dag_or_with_a_bad_id_is_refused() -> None:
    with pytest.raises(DagDefinitionError) as info:
        TaskGroup("lonely")
    assert info.value.field == "group_id"
    assert "'lonely'" in info.value.message and "outside a DAG" in info.value.message
    with DAG("d"), pytest.raises(DagDefinitionError) as bad:
        TaskGroup("has space")
    assert (bad.value.dag_id, bad.value.field) == ("d", "group_id")
    assert "'has space'" in bad.value.message


# -- task groups: linking -------------------------------------------------------------


def test_a_task_upstream_of_a_group_precedes_its_roots_only() -> None:
    with DAG("d") as d:
        (extract,) = make("extract")
        with TaskGroup("prep") as prep:
            a, b, c = make("a", "b", "c")
            a >> c
            b >> c
        (load,) = make("load")
        assert (extract >> prep) is prep
        assert (prep >> load) is load
    assert edges(d) == {
        ("prep.a", "prep.c"), ("prep.b", "prep.c"),
        ("extract", "prep.a"), ("extract", "prep.b"),
        ("prep.c", "load"),
    }
    assert [t.task_id for t in prep.roots] == ["prep.a", "prep.b"]
    assert [t.task_id for t in prep.leaves] == ["prep.c"]


def test_a_group_links_in_every_spelling() -> None:
    with DAG("d") as d:
        x, y = make("x", "y")
        with TaskGroup("g") as g:
            first, last = make("first", "last")
            first >> last
        (z,) = make("z")
        [x, y] >> g  # lists before a group
        z << g  # a task after a group, written from the right
    with DAG("e") as e:
        (p,) = make("p")
        with TaskGroup("g") as g2:
            first2, last2 = make("first", "last")
            first2 >> last2
        (q,) = make("q")
        g2 << p
        g2 >> [q]
    assert edges(d) == {
        ("g.first", "g.last"), ("x", "g.first"), ("y", "g.first"), ("g.last", "z"),
    }
    assert edges(e) == {("g.first", "g.last"), ("p", "g.first"), ("g.last", "q")}


def test_a_chain_through_a_group_and_task_outputs() -> None:
    with DAG("d") as d:

        @task
        def extract() -> int:
            return 1

        @task
        def load() -> None:
            return None

        with TaskGroup("t") as group:
            make("one", "two")
        out = extract()
        out >> group >> load()
    assert isinstance(out, XComArg)
    assert edges(d) == {
        ("extract", "t.one"), ("extract", "t.two"), ("t.one", "load"), ("t.two", "load"),
    }


def test_group_to_group_links_leaves_to_roots() -> None:
    with DAG("d") as d:
        with TaskGroup("extract") as extract:
            api, db, merge = make("api", "db", "merge")
            [api, db] >> merge
        with TaskGroup("load") as load:
            stage, publish = make("stage", "publish")
            stage >> publish
        extract >> load
    assert edges(d) == {
        ("extract.api", "extract.merge"), ("extract.db", "extract.merge"),
        ("load.stage", "load.publish"),
        ("extract.merge", "load.stage"),
    }
    assert d.validate()[-1] == "load.publish"


def test_a_nested_group_links_as_a_whole() -> None:
    with DAG("d") as d:
        (start,) = make("start")
        with TaskGroup("outer") as outer:
            (head,) = make("head")
            with TaskGroup("inner") as inner:
                make("deep")
            head >> inner
        (end,) = make("end")
        start >> outer >> end
    assert edges(d) == {
        ("outer.head", "outer.inner.deep"),
        ("start", "outer.head"),
        ("outer.inner.deep", "end"),
    }


def test_linking_an_empty_group_is_refused_with_its_id() -> None:
    with DAG("d"):
        (x,) = make("x")
        with TaskGroup("outer"), TaskGroup("empty") as empty:
            pass
        with pytest.raises(DagDefinitionError) as info:
            x >> empty
    # No half-made edge either.
    assert x.downstream_ids == set()
    for link in (lambda: empty >> x, lambda: empty << x):
        with pytest.raises(DagDefinitionError) as other:
            link()
        assert "'outer.empty'" in other.value.message
    assert "'outer.empty'" in str(info.value)
    assert info.value.dag_id == "d"


# -- @task inside groups ----------------------------------------------------------------


def test_task_decorator_inside_groups_prefixes_and_wires() -> None:
    with DAG("ml") as d:

        @task
        def ingest() -> list[int]:
            return [1, 2]

        @task
        def clean(rows: list[int]) -> list[int]:
            return rows

        @task
        def train(rows: list[int]) -> float:
            return 0.5

        rows = ingest()
        with TaskGroup("prep"):
            cleaned = clean(clean(rows))
        with TaskGroup("models"):
            first = train(cleaned)
            second = train(cleaned)
            with TaskGroup("deep"):
                third = train(cleaned)
        leftover = clean(rows)
    assert [first.task.task_id, second.task.task_id, third.task.task_id] == [
        "models.train", "models.train__1", "models.deep.train",
    ]
    # The same function again in a group is numbered within the group's prefix ...
    assert cleaned.task.task_id == "prep.clean__1"
    # ... and outside a group it keeps its plain name: nothing called "clean" is there yet.
    assert leftover.task.task_id == "clean"
    assert edges(d) == {
        ("ingest", "prep.clean"), ("prep.clean", "prep.clean__1"),
        ("prep.clean__1", "models.train"), ("prep.clean__1", "models.train__1"),
        ("prep.clean__1", "models.deep.train"), ("ingest", "clean"),
    }


def test_task_decorator_with_a_task_id_option_inside_a_group() -> None:
    with DAG("d") as d:

        @task(task_id="fetch_rows")
        def fetch() -> None:
            return None

        with TaskGroup("g"):
            fetch()
            fetch()
    assert list(d.tasks) == ["g.fetch_rows", "g.fetch_rows__1"]


# -- modes ---------------------------------------------------------------------------


def test_branch_and_short_circuit_modes_show_in_describe() -> None:
    with DAG("d") as d:

        @task.branch
        def choose() -> str:
            return "a"

        @task.short_circuit(retries=2)
        def gate() -> bool:
            return True

        @task
        def plain() -> None:
            return None

        choose()
        gate()
        plain()
        PythonTask(task_id="explicit", python_callable=noop, mode="branch")
    kinds = {tid: t.describe()["kind"] for tid, t in d.tasks.items()}
    assert kinds == {
        "choose": "branch", "gate": "short_circuit", "plain": "python", "explicit": "branch",
    }
    assert python_task(d, "gate").mode == "short_circuit"
    assert python_task(d, "gate").retry_policy.retries == 2
    assert python_task(d, "choose").mode == "branch"
    assert python_task(d, "plain").mode == "normal"
    assert "mapped" not in d.tasks["plain"].describe()


def test_an_unknown_mode_is_refused_naming_the_field() -> None:
    with DAG("d"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="t", python_callable=noop, mode="loop")
    exc = info.value
    assert (exc.dag_id, exc.task_id, exc.field) == ("d", "t", "mode")
    assert "'loop'" in exc.message and "branch" in exc.message
    assert "short_circuit" in exc.message


# -- mapping: definition -----------------------------------------------------------------


def test_expand_over_a_literal_list_creates_one_mapped_task() -> None:
    with DAG("d") as d:

        @task
        def train(params: dict[str, int]) -> int:
            return params["depth"]

        out = train.expand(params=[{"depth": 1}, {"depth": 2}])
    created = python_task(d, "train")
    assert out.task is created
    assert created.mapped == {"params": [{"depth": 1}, {"depth": 2}]}
    assert created.upstream_ids == set()
    assert created.describe()["mapped"] == ["params"]
    assert created.expand_items({}) == [{"params": {"depth": 1}}, {"params": {"depth": 2}}]


def test_several_keywords_map_over_their_cartesian_product() -> None:
    with DAG("d") as d:

        @task
        def fit(model: str, depth: int, seed: int) -> str:
            return f"{model}-{depth}-{seed}"

        fit.partial(seed=7).expand(model=["tree", "forest"], depth=(1, 2, 3))
    created = python_task(d, "fit")
    items = created.expand_items({})
    # The first keyword varies slowest, as itertools.product does.
    assert [(i["model"], i["depth"]) for i in items] == [
        ("tree", 1), ("tree", 2), ("tree", 3), ("forest", 1), ("forest", 2), ("forest", 3),
    ]
    assert all(set(i) == {"model", "depth"} for i in items)
    assert created.describe()["mapped"] == ["depth", "model"]
    # Each instance gets its own item and the shared `partial` arguments.
    results = [created.call_sync(ctx(map_index=i)) for i in range(len(items))]
    assert results == [
        "tree-1-7", "tree-2-7", "tree-3-7", "forest-1-7", "forest-2-7", "forest-3-7",
    ]


def test_expand_over_an_upstream_output_is_resolved_at_run_time() -> None:
    with DAG("d") as d:

        @task
        def settings() -> dict[str, Any]:
            return {"grid": [0.1, 0.2], "name": "m"}

        @task
        def words() -> list[str]:
            return ["a", "b"]

        @task
        def score(lr: float, word: str, name: str, map_index: int) -> str:
            return f"{map_index}:{name}:{word}:{lr}"

        conf = settings()
        score.partial(name=conf["name"]).expand(lr=conf["grid"], word=words())
    created = python_task(d, "score")
    assert created.upstream_ids == {"settings", "words"}
    upstream = {"settings": {"grid": [0.1, 0.2], "name": "m"}, "words": ["a", "b"]}
    assert created.expand_items(upstream) == [
        {"lr": 0.1, "word": "a"}, {"lr": 0.1, "word": "b"},
        {"lr": 0.2, "word": "a"}, {"lr": 0.2, "word": "b"},
    ]
    # map_index is injected from the context like any other context field.
    assert created.call_sync(ctx(upstream=upstream, map_index=3)) == "3:m:b:0.2"


def test_an_upstream_dict_maps_over_its_items() -> None:
    with DAG("d") as d:

        @task
        def table() -> dict[str, int]:
            return {"x": 1}

        @task
        def show(pair: tuple[str, int]) -> None:
            return None

        show.expand(pair=table())
    created = python_task(d, "show")
    assert created.expand_items({"table": {"x": 1, "y": 2}}) == [
        {"pair": ("x", 1)}, {"pair": ("y", 2)},
    ]


def test_an_empty_list_maps_to_no_item() -> None:
    with DAG("d") as d:

        @task
        def each(x: int) -> int:
            return x

        each.expand(x=[])
        each.expand(x=[1, 2], y=[])
    assert python_task(d, "each").expand_items({}) == []
    assert python_task(d, "each__1").expand_items({}) == []


def test_python_task_takes_expand_and_mode_together() -> None:
    def pick(x: int) -> str:
        return f"step{x}"

    with DAG("d") as d:
        (up,) = make("up")
        PythonTask(task_id="mapped", python_callable=pick, expand={"x": XComArg(up)},
                   mode="branch")
    created = python_task(d, "mapped")
    assert created.upstream_ids == {"up"}
    assert created.describe()["kind"] == "branch"
    assert created.describe()["mapped"] == ["x"]
    assert created.call_sync(ctx(upstream={"up": [4, 5]}, map_index=1)) == "step5"


@pytest.mark.parametrize(
    ("value", "type_name"), [(5, "int"), ("abc", "str"), ({"a": 1}, "dict"), (None, "NoneType")]
)
def test_expand_needs_a_list_or_an_output_and_names_the_field(
    value: Any, type_name: str
) -> None:
    with DAG("d"):

        @task
        def train(params: Any, epochs: int) -> None:
            return None

        with pytest.raises(DagDefinitionError) as info:
            train.partial(epochs=1).expand(params=value)
    exc = info.value
    assert (exc.dag_id, exc.task_id, exc.field) == ("d", "train", "params")
    assert f"expand(params=...) needs a list or another task's output, got {type_name}" in (
        exc.message
    )
    assert "field 'params'" in str(exc)


def test_python_task_expand_validation_names_the_field() -> None:
    with DAG("d"), TaskGroup("g"), pytest.raises(DagDefinitionError) as info:
        PythonTask(task_id="t", python_callable=noop, expand={"ok": [1], "rows": 3})
    assert (info.value.task_id, info.value.field) == ("g.t", "rows")


def test_a_keyword_both_fixed_and_mapped_is_refused() -> None:
    with DAG("d"):

        @task
        def train(lr: float, epochs: int) -> None:
            return None

        with pytest.raises(DagDefinitionError) as info:
            train.partial(lr=0.1, epochs=3).expand(lr=[0.2, 0.3])
        with pytest.raises(DagDefinitionError) as other:
            PythonTask(task_id="t", python_callable=noop, op_kwargs={"epochs": 1},
                       expand={"epochs": [2]})
    assert (info.value.task_id, info.value.field) == ("train", "lr")
    assert "'lr' is given both as a fixed argument (partial) and to expand()" in (
        info.value.message
    )
    assert (other.value.task_id, other.value.field) == ("t", "epochs")


def test_expand_without_a_keyword_is_refused() -> None:
    with DAG("d") as d:

        @task
        def train(x: int) -> None:
            return None

        with pytest.raises(DagDefinitionError) as info:
            train.expand()
    assert "train.expand() needs a keyword to map" in info.value.message
    assert d.tasks == {}


@pytest.mark.parametrize(("output", "type_name"), [(7, "int"), (None, "NoneType"),
                                                     ("text", "str")])
def test_an_upstream_output_that_is_not_a_list_fails_naming_the_field(
    output: Any, type_name: str
) -> None:
    with DAG("d") as d:

        @task
        def source() -> Any:
            return output

        @task
        def each(row: Any) -> None:
            return None

        each.expand(row=source())
    with pytest.raises(DagDefinitionError) as info:
        python_task(d, "each").expand_items({"source": output})
    exc = info.value
    assert (exc.task_id, exc.field) == ("each", "row")
    assert f"expand(row=...) must resolve to a list, got {type_name}" in exc.message


def test_a_map_index_out_of_range_is_refused() -> None:
    with DAG("d") as d:

        @task
        def each(x: int) -> int:
            return x

        each.expand(x=[1, 2])
    created = python_task(d, "each")
    assert created.call_sync(ctx(map_index=1)) == 2
    for bad in (2, -1):
        with pytest.raises(DagDefinitionError) as info:
            created.build_call(ctx(map_index=bad))
        assert f"map index {bad} is out of range (2 items)" in info.value.message


# -- to_skip: what a return value skips -------------------------------------------------


def branch_dag() -> tuple[DAG, PythonTask]:
    with DAG("d") as d:
        (choose,) = make("choose", mode="branch")
        left, right, both = make("left", "right", "both")
        choose >> [left, right, both]
        (after,) = make("after")
        left >> after
    return d, choose


def test_a_normal_task_skips_nothing_whatever_it_returns() -> None:
    with DAG("d"):
        plain, down = make("plain", "down")
        plain >> down
    for value in (None, False, 0, "down", ["down"]):
        assert to_skip(plain, value) == (set(), None)


def test_a_branch_follows_the_returned_id_and_skips_the_other_direct_downstreams() -> None:
    _, choose = branch_dag()
    # Only tasks directly downstream: "after" is left to the trigger rules.
    assert to_skip(choose, "left") == ({"right", "both"}, None)
    assert to_skip(choose, ["left", "both"]) == ({"right"}, None)
    assert to_skip(choose, ("right",)) == ({"left", "both"}, None)
    assert to_skip(choose, ["left", "right", "both"]) == (set(), None)
    assert to_skip(choose, ["left", "left"]) == ({"right", "both"}, None)


def test_a_branch_returning_none_or_nothing_skips_every_direct_downstream() -> None:
    _, choose = branch_dag()
    assert to_skip(choose, None) == ({"left", "right", "both"}, None)
    assert to_skip(choose, []) == ({"left", "right", "both"}, None)


def test_a_branch_returning_an_id_not_downstream_is_an_error_listing_the_choices() -> None:
    _, choose = branch_dag()
    for value in ("after", ["left", "nowhere"], "choose"):
        skip, error = to_skip(choose, value)
        bad = value[-1] if isinstance(value, list) else value
        assert skip == set()
        assert error == (
            f"branch returned {bad!r}, which is not a task directly downstream of "
            "'choose' (choices: both, left, right)"
        )


def test_a_branch_returning_a_non_string_is_an_error() -> None:
    _, choose = branch_dag()
    for value in (3, ["left", {"id": "right"}], True):
        skip, error = to_skip(choose, value)
        assert skip == set()
        assert error is not None and "expected task ids (strings)" in error


def test_a_branch_without_downstream_tasks_lists_no_choice() -> None:
    with DAG("d"):
        (alone,) = make("alone", mode="branch")
    assert to_skip(alone, None) == (set(), None)
    assert to_skip(alone, "x") == (
        set(),
        "branch returned 'x', which is not a task directly downstream of 'alone' "
        "(choices: none)",
    )


def test_a_branch_in_a_group_may_name_its_group_mates_without_the_prefix() -> None:
    with DAG("d"):
        with TaskGroup("route"):
            (choose,) = make("choose", mode="branch")
            fast, slow = make("fast", "slow")
            choose >> [fast, slow]
        (outside,) = make("outside")
        choose >> outside
    assert to_skip(choose, "fast") == ({"route.slow", "outside"}, None)
    assert to_skip(choose, "route.slow") == ({"route.fast", "outside"}, None)
    assert to_skip(choose, ["outside", "slow"]) == ({"route.fast"}, None)
    skip, error = to_skip(choose, "other")
    assert skip == set()
    assert error is not None
    assert "(choices: outside, route.fast, route.slow)" in error
    assert "downstream of 'route.choose'" in error


def test_a_branch_in_a_nested_group_resolves_with_its_full_prefix() -> None:
    with DAG("d"), TaskGroup("a"), TaskGroup("b"):
        (choose,) = make("choose", mode="branch")
        x, y = make("x", "y")
        choose >> [x, y]
    assert to_skip(choose, "x") == ({"a.b.y"}, None)
    assert to_skip(choose, "a.b.y") == ({"a.b.x"}, None)
    assert to_skip(choose, "b.x")[1] is not None


@pytest.mark.parametrize("value", [False, 0, None, "", [], {}])
def test_a_falsy_short_circuit_skips_every_direct_downstream(value: Any) -> None:
    with DAG("d"):
        (gate,) = make("gate", mode="short_circuit")
        a, b, c = make("a", "b", "c")
        gate >> [a, b]
        a >> c
    assert to_skip(gate, value) == ({"a", "b"}, None)


@pytest.mark.parametrize("value", [True, 1, "yes", [0], {"k": None}])
def test_a_truthy_short_circuit_skips_nothing(value: Any) -> None:
    with DAG("d"):
        (gate,) = make("gate", mode="short_circuit")
        (a,) = make("a")
        gate >> a
    assert to_skip(gate, value) == (set(), None)


def test_to_skip_accepts_any_task_kind() -> None:
    class Other(BaseTask):
        kind = "other"

    with DAG("d"):
        other = Other(task_id="o")
        (down,) = make("down")
        other >> down
    assert to_skip(other, False) == (set(), None)
