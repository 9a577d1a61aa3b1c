"""The UI's pure parts: the graph's layers and layout, a mapped task's one state, the
Gantt's bars of a task that retried, and the grid's cells escaping what they show."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from dagd.store.rows import AttemptRow, HistoryRow, RunRow, TaskInstanceRow
from dagd.web.ui_dags import grid_rows
from dagd.web.ui_gantt import gantt
from dagd.web.ui_graph import COL_W, layers, layout, summary_state
from dagd.web.ui_view import param_fields, span

XSS = '"><img src=x onerror=alert(1)>'


def task(task_id: str, *upstream: str, **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "upstream": list(upstream), **extra}


def test_a_task_is_one_layer_right_of_its_furthest_upstream() -> None:
    tasks = [task("a"), task("b", "a"), task("c", "b"), task("d", "a", "c"), task("e")]
    assert layers(tasks) == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 0}
    graph = layout(tasks, {})
    x = {n.task_id: n.x for n in graph.nodes}
    assert x["d"] - x["a"] == 3 * COL_W and x["e"] == x["a"]
    assert {(e.upstream, e.downstream) for e in graph.edges} == {
        ("a", "b"), ("b", "c"), ("a", "d"), ("c", "d")}
    assert all(n.state == "none" for n in graph.nodes)


def test_an_edge_label_is_drawn_midway_and_cut_to_fit() -> None:
    tasks = [task("a"), task("b", "a", edge_labels={"a": "yes"}),
             task("c", "a", "b", edge_labels={"b": "x" * 40})]
    edges = {(e.upstream, e.downstream): e for e in layout(tasks, {}).edges}
    assert edges["a", "c"].label is None and edges["a", "c"].short == ""
    yes = edges["a", "b"]
    assert (yes.label, yes.short) == ("yes", "yes")
    start = layout(tasks, {}).nodes[0]
    assert start.x + 150 < yes.mid_x < start.x + COL_W + 150
    assert edges["b", "c"].label == "x" * 40 and edges["b", "c"].short == "x" * 17 + "…"


def test_groups_are_boxes_around_their_tasks_and_a_mapped_task_shows_its_count() -> None:
    tasks = [task("ingest"), task("prep.clean", "ingest", group="prep"),
             task("prep.split", "prep.clean", group="prep"),
             task("train", "prep.split", mapped=["model"]), task("report", "train")]
    states = {"ingest": ["success"], "prep.clean": ["success"], "prep.split": ["running"],
              "train": ["success", "running", "queued"]}
    graph = layout(tasks, states)
    nodes = {n.task_id: n for n in graph.nodes}
    (box,) = graph.boxes
    assert box.group == "prep"
    for inside in ("prep.clean", "prep.split"):
        n = nodes[inside]
        assert box.x < n.x and n.x + graph.node_w < box.x + box.w
        assert box.y < n.y and n.y + graph.node_h < box.y + box.h
    assert nodes["ingest"].x + graph.node_w < box.x  # outside it, on its left
    assert nodes["prep.clean"].label == "clean"
    assert (nodes["train"].count, nodes["train"].state) == (3, "running")
    assert (nodes["report"].count, nodes["report"].state) == (None, "none")
    assert graph.width > nodes["report"].x + graph.node_w


def test_the_state_of_many_instances() -> None:
    assert summary_state([]) == "none"
    assert summary_state(["success", "failed", "success"]) == "failed"
    assert summary_state(["failed", "up_for_retry"]) == "up_for_retry"
    assert summary_state(["skipped", "success"]) == "success"


def test_the_gantt_of_a_retry_queued_running_waiting_running() -> None:
    run = RunRow(id=1, dag_id="d", state="success", run_type="manual", event_id=None,
                 logical_date=None, conf={}, created_at=100.0, started_at=100.0,
                 ended_at=130.0)
    ti = TaskInstanceRow(id=7, run_id=1, task_id="t", map_index=-1, state="success",
                         try_number=2, max_tries=2, next_attempt_at=None, started_at=102.0,
                         ended_at=130.0, updated_at=130.0, queued_at=101.0)
    attempts = [
        AttemptRow(id=1, ti_id=7, try_number=1, state="failed", started_at=102.0,
                   ended_at=110.0, pid=None, error="boom", log_path="/x"),
        AttemptRow(id=2, ti_id=7, try_number=2, state="success", started_at=121.0,
                   ended_at=130.0, pid=None, error=None, log_path="/y"),
    ]
    history = [HistoryRow(run_id=1, ti_id=7, from_state="up_for_retry", to_state="queued",
                          at=120.0, reason=None)]
    chart = gantt(run, [ti], attempts, history, now=200.0)
    (row,) = chart.rows
    assert [(s.kind, s.state) for s in row.segments] == [
        ("queued", "queued"), ("running", "failed"), ("retry", "up_for_retry"),
        ("queued", "queued"), ("running", "success")]
    xs = [s.x for s in row.segments]
    assert xs == sorted(xs)
    last = row.segments[-1]
    assert abs(last.x + last.w - chart.width) < 0.01  # the run's end is the chart's right
    assert chart.ticks[0].label == "0"


def test_param_fields_and_durations() -> None:
    fields = param_fields({"n": 3, "r": 0.5, "flag": True, "name": "x", "xs": [1],
                           "cfg": {"a": 1}, "none": None})
    assert [(f["name"], f["type"], f["value"]) for f in fields] == [
        ("n", "integer", "3"), ("r", "number", "0.5"), ("flag", "boolean", "true"),
        ("name", "string", "x"), ("xs", "array", "[1]"), ("cfg", "json", '{"a":1}'),
        ("none", "any", "null")]
    assert span(0.0, 0.042) == "42 ms"
    assert span(0.0, 65.0) == "1m 05s"
    assert span(None, 1.0) == "-"


class Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_grid_cells_escape_every_value() -> None:
    run = RunRow(id=5, dag_id="d", state="success", run_type="manual", event_id=None,
                 logical_date=None, conf={}, created_at=1.0, started_at=1.0, ended_at=2.0)
    tis = [TaskInstanceRow(id=i + 1, run_id=5, task_id=XSS, map_index=i, state=state,
                           try_number=1, max_tries=1, next_attempt_at=None, started_at=1.0,
                           ended_at=2.0, updated_at=2.0)
           for i, state in enumerate(["success", XSS])]
    (row,) = grid_rows([{"task_id": XSS, "mapped": ["x"]}], [run], {(5, XSS): tis})
    html = str(row["cells"])
    assert "<img" not in html
    parser = Attributes()
    parser.feed(html)
    (cell,) = [a for t, a in parser.found if t == "a"]
    assert cell["data-ti"] == f"5:{XSS}"
    assert cell["data-mapped"] == f"0=success,1={XSS}"
    assert cell["href"] == (
        "/runs/5/tasks/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E?map_index=0")
    assert [t for t, _ in parser.found] == ["td", "a", "span"]


def _points(path: str) -> list[tuple[float, float]]:
    """Points along an edge's path (its M, L and C commands), every few pixels."""
    tokens = path.replace(",", " ").replace("M", " M ").replace("L", " L ").replace(
        "C", " C ").split()
    out: list[tuple[float, float]] = []
    at = (0.0, 0.0)
    i = 0
    while i < len(tokens):
        op = tokens[i]
        if op in ("M", "L"):
            nxt = (float(tokens[i + 1]), float(tokens[i + 2]))
            if op == "L":
                out += [(at[0] + (nxt[0] - at[0]) * k / 50, at[1] + (nxt[1] - at[1]) * k / 50)
                        for k in range(51)]
            at, i = nxt, i + 3
        else:
            (ax, ay), (bx, by), (cx, cy) = ((float(tokens[i + j]), float(tokens[i + j + 1]))
                                            for j in (1, 3, 5))
            for k in range(51):
                t = k / 50
                u = 1 - t
                out.append((u**3 * at[0] + 3 * u * u * t * ax + 3 * u * t * t * bx + t**3 * cx,
                            u**3 * at[1] + 3 * u * u * t * ay + 3 * u * t * t * by + t**3 * cy))
            at, i = (cx, cy), i + 7
    return out


def test_no_edge_passes_behind_a_node_it_does_not_join() -> None:
    # ml_pipeline's shape: ingest feeds deploy four layers on, pick_best feeds report.
    tasks = [task("ingest"), task("clean", "ingest"), task("features", "clean"),
             task("train_a", "features"), task("train_b", "features"),
             task("pick_best", "train_a", "train_b"), task("deploy", "pick_best", "ingest"),
             task("report", "deploy", "pick_best", "clean"), task("side", "ingest"),
             task("mid", "side"), task("late", "mid", "ingest")]
    graph = layout(tasks, {})
    assert any(e.path.count("C") > 1 for e in graph.edges)  # some edges are long
    for edge in graph.edges:
        for node in graph.nodes:
            if node.task_id in (edge.upstream, edge.downstream):
                continue
            inside = [(x, y) for x, y in _points(edge.path)
                      if node.x < x < node.x + graph.node_w and node.y < y < node.y + graph.node_h]
            assert inside == [], (edge.upstream, edge.downstream, node.task_id, edge.path)


def test_each_edge_is_one_path_with_one_arrowhead() -> None:
    tasks = [task("a"), task("b", "a"), task("c", "a", "b")]
    graph = layout(tasks, {})
    assert sorted((e.upstream, e.downstream) for e in graph.edges) == [
        ("a", "b"), ("a", "c"), ("b", "c")]
    assert all(e.path.count("M") == 1 for e in graph.edges)
