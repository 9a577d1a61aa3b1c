"""The tick's steps over the working copy (`Runs`), driven by plain sync code: no event
loop, no SQLite. A batch collects what each step writes, as the engine's tick would
commit it, and says what changed."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dagd import DAG, PythonTask
from dagd.changes import KINDS, RUN, TI, Change
from dagd.config import Settings
from dagd.executors.base import AttemptResult, AttemptSpec
from dagd.scheduler.runs import Runs
from dagd.store import Batch
from dagd.store.batch import IdCounter
from dagd.store.rows import RunRow


async def noop() -> None:
    return None


def pipeline(retries: int = 0) -> DAG:
    with DAG("etl", default_args={"retries": retries, "retry_delay": 30}) as dag:
        extract = PythonTask(task_id="extract", python_callable=noop)
        load = PythonTask(task_id="load", python_callable=noop)
        extract >> load
    dag.validate()
    return dag


class Ticks:
    """The engine's tick, step by step, at a chosen time."""

    def __init__(self, dag: DAG, tmp_path: Path) -> None:
        self.now = 1000.0
        self.woken = 0
        self.runs = Runs(Settings(data_dir=tmp_path), rand=lambda: 0.5, clock=lambda: self.now,
                         wake=self._wake)
        self.runs.dags = {dag.dag_id: dag}
        self.ids = IdCounter({"event": 0, "run": 0, "ti": 0, "attempt": 0})

    def _wake(self) -> None:
        self.woken += 1

    def tick(self, results: list[AttemptResult] = ()) -> tuple[Batch, list[AttemptSpec]]:
        batch = Batch(self.ids, now=self.now)
        for result in results:
            self.runs.apply_result(batch, result)
        self.runs.release_retries(batch)
        self.runs.start_runs(batch)
        self.runs.plan(batch)
        dispatch: list[AttemptSpec] = []
        self.runs.fill_slots(batch, dispatch)
        self.runs.finish_runs(batch)
        ended = self.runs.take_ended()
        # What the engine publishes once the batch is committed, before it forgets.
        self.changes = batch.changes(KINDS, name_ti=self.runs.name_ti)
        for run_id in ended:
            self.runs.forget(run_id)
        return batch, dispatch

    def of(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    def queue(self, dag_id: str = "etl", conf: dict[str, object] | None = None) -> int:
        batch = Batch(self.ids, now=self.now)
        run_id = batch.create_run(dag_id=dag_id, run_type="file", conf=conf or {})
        self.runs.queue(RunRow(id=run_id, dag_id=dag_id, state="queued", run_type="file",
                               event_id=None, logical_date=None, conf=conf or {},
                               created_at=self.now, started_at=None, ended_at=None))
        return run_id


def ok(spec: AttemptSpec, value: object = None) -> AttemptResult:
    xcom = orjson.dumps(value).decode() if value is not None else None
    return AttemptResult(spec=spec, ok=True, xcom=xcom)


def test_a_run_goes_task_by_task_to_success_and_says_so(tmp_path: Path) -> None:
    ticks = Ticks(pipeline(), tmp_path)
    run_id = ticks.queue(conf={"folder": "/data/in", "path": "/data/in/a.csv"})
    _, dispatch = ticks.tick()
    assert [s.task_id for s in dispatch] == ["extract"]
    assert [(c.kind, c.state) for c in ticks.of(RUN)] == [(RUN, "running")]
    _batch, dispatch = ticks.tick([ok(dispatch[0], {"rows": 3})])
    assert [s.task_id for s in dispatch] == ["load"]
    assert dispatch[0].context.upstream == {"extract": {"rows": 3}}  # the XCom went down
    _, dispatch = ticks.tick([ok(dispatch[0])])
    assert dispatch == []
    [ended] = ticks.of(RUN)
    assert (ended.id, ended.dag_id, ended.state) == (run_id, "etl", "success")
    assert ended.detail == {"run_type": "file",
                            "conf": {"folder": "/data/in", "path": "/data/in/a.csv"}}
    assert [(c.dag_id, (c.detail or {}).get("task_id"), c.state) for c in ticks.of(TI)] == [
        ("etl", "load", "success")]
    assert not ticks.runs.knows(run_id)


def test_a_failure_waits_its_retry_delay_in_the_heap_not_in_a_sleep(tmp_path: Path) -> None:
    ticks = Ticks(pipeline(retries=1), tmp_path)
    ticks.queue()
    _, [first] = ticks.tick()
    _, dispatch = ticks.tick([AttemptResult.failure(first, OSError("disk full"))])
    assert dispatch == []
    assert [c.state for c in ticks.of(TI)] == ["up_for_retry"]
    assert ticks.runs.next_retry_at() == pytest.approx(1030.0)
    ticks.now = 1029.0
    assert ticks.tick()[1] == []  # not due yet
    ticks.now = 1030.0
    _, [again] = ticks.tick()
    assert (again.task_id, again.try_number) == ("extract", 2)


def test_a_queued_run_of_an_undefined_dag_fails_with_its_reason(tmp_path: Path) -> None:
    ticks = Ticks(pipeline(), tmp_path)
    ticks.queue(dag_id="gone")
    batch, dispatch = ticks.tick()
    assert dispatch == []
    [failed] = ticks.of(RUN)
    assert (failed.dag_id, failed.state) == ("gone", "failed")
    [history] = [h for h in batch.rows["insert_history"] if h["to_state"] == "failed"]
    assert history["reason"] == "DAG is not defined (see `dagd dags errors`)"


def test_an_attempt_context_is_built_whole() -> None:
    from dagd.authoring.context import Context
    from dagd.scheduler.runs import _context

    args = ("etl", "load", 7, 2, 31, None, {"k": 1}, {"p": 2}, {"extract": [1]}, 3)
    built = _context(*args)
    assert built == Context(dag_id="etl", task_id="load", run_id=7, try_number=2,
                            attempt_id=31, logical_date=None, conf={"k": 1}, params={"p": 2},
                            upstream={"extract": [1]}, map_index=3)
    assert built.ti_key == "etl/7/load/3"
    with pytest.raises(AttributeError):
        built.task_id = "other"  # type: ignore[misc]
