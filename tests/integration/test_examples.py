"""The example pipelines of `examples/`, end to end on a real engine.

The DAGs folder is `examples/` itself; `DAGD_EXAMPLES_DATA` points the examples' data
(incoming folders, warehouse, models, rejects) at the test's temp folder, so nothing is
written into the repository. Worker processes inherit that variable.

- ETL (`etl_sales`): the shipped sample CSV dropped into a real watched folder; the
  warehouse, the rejects file, the validation log and counts, the summary row, the move
  to `processed/`; the same file dropped again replaces its rows; a sweep that meets a
  file with too many bad rows fails and loads nothing.
- ML (`ml_training`): three candidates trained in parallel worker processes; the best is
  deployed with a versioned artifact and the `current` pointer; a second run on the same
  data follows `skip_deploy`; bad extra data fails `ingest` before any training.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import sqlite3
import sys
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dagd.authoring.loader import load_file, load_folder
from dagd.config import Settings
from dagd.store.rows import RunRow, TaskInstanceRow
from integration.harness import Harness, StartEngine, read_text, wait_until, watching

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SALES_SAMPLE = EXAMPLES / "data" / "samples" / "sales_2026-11-01.csv"
WINE_SAMPLE = EXAMPLES / "data" / "samples" / "wine.csv"
ML_DEADLINE = 90.0  # seconds: three scikit-learn worker processes on a busy 2-core machine


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "examples-data"
    folder.mkdir()
    monkeypatch.setenv("DAGD_EXAMPLES_DATA", str(folder))
    return folder


@pytest.fixture
def examples_settings(settings: Settings, data: Path) -> Settings:
    return replace(settings, dags_folder=EXAMPLES)


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, args).fetchall()


async def runs_of(h: Harness, dag_id: str) -> list[RunRow]:
    return sorted(await h.store.list_runs(dag_id, limit=1000), key=lambda r: r.id)


async def next_run(h: Harness, dag_id: str, after: int) -> RunRow:
    """The first run of `dag_id` created after the `after` runs there were."""
    async def created() -> bool:
        return len(await runs_of(h, dag_id)) > after

    await wait_until(created, 15.0, f"a run of {dag_id}")
    return (await runs_of(h, dag_id))[after]


async def log_of(h: Harness, run_id: int, task_id: str) -> str:
    attempts = await h.attempts(run_id, task_id)
    return "".join([await read_text(a.log_path) for a in attempts])


async def instances(h: Harness, run_id: int, task_id: str) -> list[TaskInstanceRow]:
    return sorted((ti for ti in await h.store.list_tis(run_id) if ti.task_id == task_id),
                  key=lambda ti: ti.map_index)


def test_every_example_loads_without_errors(data: Path) -> None:
    bag = load_folder(EXAMPLES)
    assert not bag.errors, [f"{e.file}:{e.line}: {e.message}" for e in bag.errors]
    assert {"hello_abc", "ml_pipeline", "etl_sales", "ml_training"} <= set(bag.dags)
    kinds = {d: {t["kind"] for t in bag.dags[d].describe()["triggers"]}
             for d in ("etl_sales", "ml_training")}
    assert kinds["etl_sales"] >= {"file"} and len(bag.dags["etl_sales"].triggers) == 2
    assert len(bag.dags["ml_training"].triggers) == 3
    folders = [t.folder for d in ("etl_sales", "ml_training")
               for t in bag.dags[d].triggers if hasattr(t, "folder")]
    assert folders == [str(data / "incoming"), str(data / "ml_incoming")]


# -- ETL -------------------------------------------------------------------------------


EXPECTED_REJECTS = [
    ("8", "missing field"),
    ("13", "non-numeric amount"),
    ("16", "bad date"),
    ("20", "bad date"),
    ("25", "duplicate order_id"),
]


async def test_etl_loads_a_dropped_csv_reports_bad_rows_and_reloads_idempotently(
    start_engine: StartEngine, examples_settings: Settings, data: Path
) -> None:
    incoming = data / "incoming"
    incoming.mkdir()
    warehouse = data / "warehouse.db"
    async with watching(start_engine, examples_settings, capture=True) as h:
        shutil.copyfile(SALES_SAMPLE, incoming / SALES_SAMPLE.name)
        run = await next_run(h, "etl_sales", 0)
        assert run.conf["path"] == str(incoming / SALES_SAMPLE.name)
        assert await h.wait(run.id) == "success"
        assert set((await h.states(run.id)).values()) == {"success"}

        # Loaded: typed, normalised, aggregated per day and region.
        assert query(warehouse, "SELECT COUNT(*) FROM sales") == [(25,)]
        assert {r for (r,) in query(warehouse, "SELECT DISTINCT region FROM sales")} == {
            "North", "South", "East", "West"}
        assert {p for (p,) in query(warehouse, "SELECT DISTINCT product FROM sales")} == {
            "widget", "gadget", "gizmo"}
        totals = query(warehouse, "SELECT day, region, orders, units, revenue "
                                  "FROM daily_region_totals ORDER BY day, region")
        assert ("2026-11-01", "North", 5, 11, 222.9) in totals
        assert ("2026-10-31", "West", 1, 6, 119.4) in totals
        assert sum(t[2] for t in totals) == 25

        # Bad rows: in the rejects file with their reasons, in the log, in the XCom.
        validated = await h.xcom(run.id, "validate")
        assert (validated["rows"], validated["valid"], validated["rejected"]) == (30, 25, 5)
        reasons = validated["files"][0]["reasons"]
        assert reasons == {"bad date": 2, "duplicate order_id": 1, "missing field": 1,
                           "non-numeric amount": 1}
        rejects = Path(validated["files"][0]["rejects_file"])
        assert rejects.parent == data / "rejects"
        rows = list(csv.DictReader(io.StringIO(await read_text(rejects), newline="")))
        assert [(r["line"], r["reason"].split(":")[0]) for r in rows] == EXPECTED_REJECTS
        assert rows[1]["amount"] == "twelve"
        log = await log_of(h, run.id, "validate")
        assert "line 13 rejected: non-numeric amount: amount 'twelve' is not a number" in log
        assert "line 16 rejected: bad date" in log

        # The summary row, and the file moved out of the way.
        summary = query(warehouse, "SELECT dag_run_id, started_by, files, file_names, "
                                   "rows_read, rows_loaded, rows_rejected, rows_replaced "
                                   "FROM load_summary")
        assert summary == [(run.id, "file", 1, '["sales_2026-11-01.csv"]', 30, 25, 5, 0)]
        written = await h.xcom(run.id, "write_summary")
        assert (written["dag_run_id"], written["rows_loaded"]) == (run.id, 25)
        processed = incoming / "processed" / SALES_SAMPLE.name
        await wait_until(processed.exists, 10.0, "the file moved to processed/")
        assert not (incoming / SALES_SAMPLE.name).exists()

        # The same bytes again: a new run that replaces the rows instead of adding them.
        shutil.copyfile(SALES_SAMPLE, incoming / SALES_SAMPLE.name)
        again = await next_run(h, "etl_sales", 1)
        assert await h.wait(again.id) == "success"
        assert query(warehouse, "SELECT COUNT(*) FROM sales") == [(25,)]
        assert query(warehouse, "SELECT COUNT(*), MAX(dag_run_id) FROM loaded_files") == [
            (1, again.id)]
        assert sum(t[2] for t in query(warehouse, "SELECT * FROM daily_region_totals")) == 25
        assert query(warehouse, "SELECT dag_run_id, rows_loaded, rows_replaced FROM "
                                "load_summary ORDER BY id") == [(run.id, 25, 0),
                                                                (again.id, 25, 25)]


async def test_etl_sweep_fails_on_too_many_bad_rows_and_loads_nothing(
    start_engine: StartEngine, examples_settings: Settings, data: Path
) -> None:
    incoming = data / "incoming"
    incoming.mkdir()
    warehouse = data / "warehouse.db"
    shutil.copyfile(SALES_SAMPLE, incoming / SALES_SAMPLE.name)
    (incoming / "broken.csv").write_text(
        "order_id,order_date,region,product,quantity,amount\n"
        "1,2026-11-01,North,widget,1,9.99\n"
        "2,2026-11-01,North,widget,1,n/a\n"
        "3,yesterday,South,widget,1,9.99\n"
    )
    async with start_engine(examples_settings, capture=True) as h:
        # No conf: the run sweeps the folder, as the daily timer's runs do.
        run_id, state = await h.run("etl_sales")
        assert state == "failed"
        states = await h.states(run_id)
        assert states["validate"] == "failed"
        assert states["load"] == states["write_summary"] == "upstream_failed"
        [attempt] = await h.attempts(run_id, "validate")
        assert attempt.error is not None
        assert "broken.csv: 2 of 3 rows are bad" in attempt.error
        assert "max_reject_fraction" in attempt.error
        assert "sales_2026-11-01.csv" not in attempt.error  # 5 of 30 is under the limit
        assert states["create_tables"] == "success"  # beside validate, not after it
        assert query(warehouse, "SELECT COUNT(*) FROM sales") == [(0,)]
        assert len(list((data / "rejects").glob("broken.*.rejects.csv"))) == 1

        # Without the broken file the sweep loads the rest.
        (incoming / "broken.csv").unlink()
        run_id, state = await h.run("etl_sales")
        assert state == "success"
        assert query(warehouse, "SELECT started_by, rows_loaded FROM load_summary") == [
            ("sweep", 25)]

        # A file without the expected columns is refused whole, naming what is missing.
        headless = incoming / "headless.csv"
        headless.write_text("id,when,where\n1,2,3\n")
        run_id, state = await h.run("etl_sales", {"path": str(headless)})
        assert state == "failed"
        [attempt] = await h.attempts(run_id, "extract")
        assert "headless.csv: missing column(s) order_id, order_date" in str(attempt.error)

        # An empty folder: nothing to load, the rest of the run is skipped.
        for path in incoming.glob("*.csv"):
            path.unlink()
        run_id, state = await h.run("etl_sales")
        assert state == "success"
        states = await h.states(run_id)
        assert states["anything_to_load"] == "success"
        assert states["validate"] == states["load"] == "skipped"


# -- ML --------------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_ml_deploys_the_best_candidate_once_and_skips_an_equal_one(
    start_engine: StartEngine, examples_settings: Settings, data: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("sklearn", reason="the ML example needs pip install 'dagd[examples]'")
    caplog.set_level(logging.INFO)  # the daemon's level: the tasks' info lines reach logs
    models = data / "models"
    async with start_engine(examples_settings, capture=True) as h:
        run_id, state = await h.run("ml_training", deadline=ML_DEADLINE)
        assert state == "success", await log_of(h, run_id, "train")
        trained = await instances(h, run_id, "train")
        assert [(ti.map_index, ti.state) for ti in trained if ti.map_index >= 0] == [
            (0, "success"), (1, "success"), (2, "success")]
        picked = await h.xcom(run_id, "pick_best")
        board = picked["leaderboard"]
        assert sorted(r["model_name"] for r in board) == [
            "gradient_boosting", "logistic_regression", "random_forest"]
        assert board[0]["score"] == max(r["score"] for r in board) > 0.9
        states = await h.states(run_id)
        assert states["preprocess.clean"] == states["preprocess.split"] == "success"
        assert (states["decide"], states["deploy"], states["skip_deploy"]) == (
            "success", "success", "skipped")
        assert states["report"] == "success"

        # A versioned artifact, its metadata, and the pointer to it.
        assert sorted(p.name for p in models.iterdir()) == ["current.json", "v0001"]
        assert sorted(p.name for p in (models / "v0001").iterdir()) == [
            "metadata.json", "model.pkl"]
        current = json.loads((models / "current.json").read_text())
        assert current["version"] == "v0001"
        assert current["model_name"] == picked["best"]["model_name"] == board[0]["model_name"]
        assert current["score"] == board[0]["score"]
        assert Path(current["path"]) == models / "v0001" / "model.pkl"
        metadata = json.loads((models / "v0001" / "metadata.json").read_text())
        assert metadata["model_name"] == current["model_name"]
        assert metadata["trained_on"]["rows"] == 178
        assert metadata["trained_on"]["sources"][0]["name"] == "wine.csv"
        assert metadata["previous_version"] is None
        assert (models / "v0001" / "model.pkl").stat().st_size > 0
        assert (await h.xcom(run_id, "report"))["deployed"] is True

        # Same data, same seed, same score: it does not beat the deployed model.
        pointer_before = (models / "current.json").read_bytes()
        run_id, state = await h.run("ml_training", deadline=ML_DEADLINE)
        assert state == "success"
        states = await h.states(run_id)
        assert (states["deploy"], states["skip_deploy"], states["report"]) == (
            "skipped", "success", "success")
        assert "does not beat v0001" in await log_of(h, run_id, "decide")
        assert (models / "current.json").read_bytes() == pointer_before
        assert not (models / "v0002").exists()
        report = await h.xcom(run_id, "report")
        assert (report["deployed"], report["version"]) == (False, "v0001")
        assert not any((data / "staging" / "ml_training").iterdir())  # cleaned up


async def test_ml_refuses_extra_data_without_the_dataset_columns(
    start_engine: StartEngine, examples_settings: Settings, data: Path
) -> None:
    incoming = data / "ml_incoming"
    incoming.mkdir()
    bad = incoming / "measurements.csv"
    bad.write_text("alcohol,hue,target\n13.1,1.02,0\n")
    outside = data / "elsewhere.csv"
    shutil.copyfile(WINE_SAMPLE, outside)
    async with start_engine(examples_settings, capture=True) as h:
        run_id, state = await h.run("ml_training", {"path": str(bad)})
        assert state == "failed"
        [attempt] = await h.attempts(run_id, "ingest")
        assert "measurements.csv cannot be training data: it lacks the column(s) malic_acid"\
            in str(attempt.error)
        assert [ti.state for ti in await instances(h, run_id, "train")] == ["upstream_failed"]

        run_id, state = await h.run("ml_training", {"path": str(outside)})
        assert state == "failed"
        [attempt] = await h.attempts(run_id, "ingest")
        assert f"is not inside {incoming}" in str(attempt.error)
    assert not (data / "models").exists()


def ml_globals(data: Path) -> dict[str, Any]:
    dags, failure = load_file(EXAMPLES / "ml_training.py")
    assert failure is None, failure
    [dag] = dags
    return dag.tasks["decide"].python_callable.__globals__  # type: ignore[attr-defined]


def test_ml_decide_deploys_only_a_model_that_beats_the_current_one(data: Path) -> None:
    ns = ml_globals(data)
    decide = ns["decide"].fn
    picked = {"best": {"model_name": "random_forest", "score": 0.95}}
    params = {"min_improvement": 0.0}
    assert decide(picked, params) == "deploy"  # nothing deployed yet
    (data / "models").mkdir()
    current = data / "models" / "current.json"
    current.write_text(json.dumps({"version": "v0003", "model_name": "lr", "score": 0.9}))
    assert decide(picked, params) == "deploy"
    assert decide(picked, {"min_improvement": 0.05}) == "skip_deploy"
    assert decide({"best": {"model_name": "x", "score": 0.9}}, params) == "skip_deploy"
    current.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid model pointer"):
        decide(picked, params)


def test_ml_example_loads_without_scikit_learn_and_says_what_to_install(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now fails
    ns = ml_globals(data)
    with pytest.raises(RuntimeError, match=r"pip install 'dagd\[examples\]'"):
        ns["train"].fn(split={"path": "unused"}, model_name="random_forest",
                       params={"seed": 1})
