"""Rows for the retention tests and benchmark: finished and running runs written through
the store's own batches, as the scheduler writes them, with their attempts' log files."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import anyio

from dagd.executors.logs import attempt_log_path
from dagd.states import RunState, TaskState
from dagd.store import Store

_KEYS = itertools.count(1)  # the webhook deliveries' keys, unique

# Every table that refers to a run, directly or through a task instance: the rows left
# pointing at something gone (each query counts them; all must be 0).
DANGLING = {
    "task_instance": "SELECT count(*) FROM task_instance t WHERE NOT EXISTS "
                     "(SELECT 1 FROM run r WHERE r.id = t.run_id)",
    "attempt": "SELECT count(*) FROM attempt a WHERE NOT EXISTS "
               "(SELECT 1 FROM task_instance t WHERE t.id = a.ti_id)",
    "xcom": "SELECT count(*) FROM xcom x WHERE NOT EXISTS "
            "(SELECT 1 FROM task_instance t WHERE t.id = x.ti_id)",
    "state_history": "SELECT count(*) FROM state_history h WHERE NOT EXISTS "
                     "(SELECT 1 FROM run r WHERE r.id = h.run_id) OR (h.ti_id IS NOT NULL "
                     "AND NOT EXISTS (SELECT 1 FROM task_instance t WHERE t.id = h.ti_id))",
    "notification": "SELECT count(*) FROM notification n WHERE (n.run_id IS NOT NULL AND "
                    "NOT EXISTS (SELECT 1 FROM run r WHERE r.id = n.run_id)) OR (n.ti_id IS "
                    "NOT NULL AND NOT EXISTS (SELECT 1 FROM task_instance t "
                    "WHERE t.id = n.ti_id))",
    "run.event_id": "SELECT count(*) FROM run r WHERE r.event_id IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM event e WHERE e.id = r.event_id)",
}


def dangling(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return {name: db.execute(sql).fetchone()[0] for name, sql in DANGLING.items()}
    finally:
        db.close()


def count(path: Path, sql: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


async def finished_runs(
    store: Store, logs_dir: Path, *, dag_id: str, n: int, ended_at: float, tasks: int = 2,
    state: RunState = RunState.SUCCESS, per_batch: int = 500, source: str = "webhook:h",
) -> list[int]:
    """`n` runs of `dag_id` that ended at `ended_at`, each started by a webhook event and
    with `tasks` task instances, one attempt each (a log file written), an XCom each."""
    ids: list[int] = []
    for start in range(0, n, per_batch):
        paths: list[str] = []
        batch = store.batch()
        batch.now = ended_at
        for i in range(start, min(n, start + per_batch)):
            event_id = batch.record_event(kind="webhook", source=source, dag_id=dag_id,
                                          payload={"i": i}, outcome="run_created",
                                          dedup_key=f"delivery-{next(_KEYS)}")
            run_id = batch.create_run(dag_id=dag_id, run_type="webhook", conf={"i": i},
                                      event_id=event_id)
            batch.transition_run(run_id, RunState.QUEUED, RunState.RUNNING)
            for t in range(tasks):
                task_id = f"t{t}"
                ti_id = batch.create_ti(run_id=run_id, task_id=task_id, max_tries=1)
                batch.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.SCHEDULED,
                                    to=TaskState.QUEUED, try_number=0)
                batch.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.QUEUED,
                                    to=TaskState.RUNNING, try_number=1)
                log_path = attempt_log_path(logs_dir, dag_id, run_id, task_id, 1)
                paths.append(log_path)
                attempt = batch.start_attempt(ti_id=ti_id, try_number=1, log_path=log_path)
                ok = state is RunState.SUCCESS
                batch.finish_attempt(attempt, success=ok, error=None if ok else "boom")
                batch.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.RUNNING,
                                    to=TaskState.SUCCESS if ok else TaskState.FAILED,
                                    try_number=1, reason=None if ok else "boom")
                batch.put_xcom(ti_id, '{"v": 1}')
            batch.transition_run(run_id, RunState.RUNNING, state)
            ids.append(run_id)
        await store.commit(batch)
        await anyio.to_thread.run_sync(_write_logs, paths)
    return ids


def _write_logs(paths: list[str]) -> None:
    for raw in paths:
        path = Path(raw)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{path.parent.parent.name} {path.parent.name}\n")


async def running_run(store: Store, *, dag_id: str, at: float) -> int:
    """A run still running (one task instance running, no attempt end)."""
    batch = store.batch()
    batch.now = at
    run_id = batch.create_run(dag_id=dag_id, run_type="manual", conf={})
    batch.transition_run(run_id, RunState.QUEUED, RunState.RUNNING)
    ti_id = batch.create_ti(run_id=run_id, task_id="t0", max_tries=1)
    batch.transition_ti(run_id=run_id, ti_id=ti_id, frm=TaskState.SCHEDULED,
                        to=TaskState.QUEUED, try_number=0)
    await store.commit(batch)
    return run_id
