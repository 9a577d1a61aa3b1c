"""`dagd test DAG`: run one DAG once, in the foreground, with a live progress table;
`dagd tasks test DAG TASK`: run one of its tasks alone (as `airflow tasks test`: its
upstream tasks are not run, so it sees no upstream XCom).

It uses the real engine on a throw-away data directory, so it never touches the
daemon's database and works whether or not a daemon runs. SIGTERM or Ctrl-C stops it at
once, and its attempts with it (their process groups too), as a forced daemon stop does.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import orjson
from rich.console import Console

from dagd.authoring.context import TEST_MODE
from dagd.authoring.dag import DAG
from dagd.check import find, load_dags
from dagd.config import Settings
from dagd.errors import DagdError, InvalidInput, NotFound


def only_task(dag: DAG, task_id: str) -> DAG:
    """A view of `dag` with one task and no dependencies (the DAG itself is unchanged;
    a worker process runs the task as the DAG file defines it)."""
    if task_id not in dag.tasks:
        raise NotFound(f"no such task; the DAG's tasks: {', '.join(sorted(dag.tasks))}",
                       dag_id=dag.dag_id, task_id=task_id)
    task = copy.copy(dag.tasks[task_id])
    task.upstream_ids, task.downstream_ids = set(), set()
    view = copy.copy(dag)
    view.tasks = {task_id: task}
    return view


async def run_test(settings: Settings, dag_id: str, conf: dict[str, Any], console: Console,
                   *, task_id: str | None = None) -> int:
    """Run the DAG once (with `task_id`, that task alone); the exit code: 0 if the run
    succeeded, 1 if it failed, 128 + N when signal N (SIGTERM, SIGINT) stopped it. A
    signal stops the attempts as a forced daemon stop does: each is cancelled, its
    process group stopped, and recorded. Its tasks see Airflow's `test_mode` True."""
    bag = await anyio.to_thread.run_sync(load_dags, settings)
    dag = find(bag, dag_id)
    if task_id is not None:
        dag = only_task(dag, task_id)
    # Airflow's test_mode, for the tasks of this run: here and in the worker processes.
    before = os.environ.get(TEST_MODE)
    os.environ[TEST_MODE] = "1"
    try:
        return await _run(settings, dag, conf, console, task_id=task_id)
    except BaseExceptionGroup as group:
        # The run refused (a conf its params do not accept) inside the engine's task
        # group: shown as the one error it is, as any other CLI error.
        found = _only_error(group)
        if found is None:
            raise
        raise found from None
    finally:
        if before is None:
            os.environ.pop(TEST_MODE, None)
        else:
            os.environ[TEST_MODE] = before


def _only_error(group: BaseException) -> DagdError | None:
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    return group if isinstance(group, DagdError) else None


async def _run(settings: Settings, dag: DAG, conf: dict[str, Any], console: Console,
               *, task_id: str | None) -> int:
    """The run of `run_test`, on a throw-away data directory."""
    # Here, not at the top: the CLI imports this module for its parsers, and the engine
    # is needed only once a test runs.
    from rich.live import Live
    from rich.text import Text

    from dagd.executors.logs import install_capture
    from dagd.kinds.connections import set_connections
    from dagd.notify import email
    from dagd.scheduler.callbacks import Callbacks
    from dagd.scheduler.loop import Engine
    from dagd.store import Store
    from dagd.tables import state_text, ti_table

    dag_id = dag.dag_id
    with tempfile.TemporaryDirectory(prefix="dagd-test-") as tmp:
        test_settings = replace(settings, data_dir=Path(tmp))
        store = await Store.open(test_settings.db_path, synchronous="normal")
        reader = await Store.open(test_settings.db_path, readonly=True)  # the callbacks'
        try:
            install_capture()
            set_connections(test_settings.connections)
            email.configure(test_settings)  # [smtp], for an EmailTask
            engine = Engine(store, test_settings)
            engine.set_dags({dag_id: dag}, set())
            callbacks = Callbacks(reader, engine.changes, lambda: engine.dags,
                                  timeout=test_settings.callback_timeout)
            stopped_by: list[int] = []
            async with anyio.create_task_group() as tg:
                await tg.start(callbacks.run)
                await tg.start(engine.serve)
                run_id = await engine.trigger(dag_id, conf=conf, source="dagd test")
                done = anyio.Event()

                async def wait() -> None:
                    await engine.wait_for_run(run_id)
                    done.set()

                async def signals() -> None:
                    # Open until the end: a second signal during the stop is absorbed
                    # instead of leaving the commands running.
                    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                        async for signum in received:
                            if not stopped_by:
                                stopped_by.append(signum)
                                done.set()

                tg.start_soon(wait)
                tg.start_soon(signals)
                title = Text(f"{dag_id} [run {run_id}]")
                with Live(console=console, refresh_per_second=8, transient=False) as live:
                    while not done.is_set():
                        live.update(ti_table(title, await store.list_tis(run_id),
                                             width=console.width))
                        with anyio.move_on_after(0.125):
                            await done.wait()
                    await engine.stop(0)
                    # The run's last callbacks, as the daemon calls them (not when stopped).
                    await callbacks.drain(0.0 if stopped_by else
                                          test_settings.callback_timeout + 1.0)
                    live.update(ti_table(title, await store.list_tis(run_id),
                                         width=console.width))
                tg.cancel_scope.cancel()
            console.print()
            if stopped_by:
                name = signal.Signals(stopped_by[0]).name
                console.print(f"{dag_id} run {run_id}: interrupted by {name}; "
                              "its running tasks were stopped")
                return 128 + stopped_by[0]
            run = await store.get_run(run_id)
            await _show_attempts(store, run_id, console, every=task_id is not None)
            console.print(f"{dag_id} run {run_id}: {state_text(run.state)}")
            return 0 if run.state == "success" else 1
        finally:
            await reader.close()
            await store.close()


async def _show_attempts(store: Any, run_id: int, console: Console, *, every: bool) -> None:
    """The logs of the failed task instances' attempts (with `every`, of all of them,
    and their XComs: what `dagd tasks test` shows)."""
    for ti in await store.list_tis(run_id):
        if not every and ti.state not in ("failed", "up_for_retry"):
            continue
        for attempt in await store.list_attempts(ti.id):
            console.rule(f"{ti.task_id} try {attempt.try_number}: "
                         f"{attempt.error or attempt.state}")
            path = anyio.Path(attempt.log_path)
            if await path.exists():
                console.print((await path.read_text(errors="replace"))[-4000:],
                              markup=False, highlight=False)
        if every and ti.state == "success":
            xcom = await store.get_xcom(ti.id)
            console.print(f"{ti.task_id} XCom: {orjson.dumps(xcom).decode()}", markup=False,
                          highlight=False)


def add_tasks_test(tasks: Any) -> None:
    """`dagd tasks test DAG TASK [--conf JSON]`, under the `tasks` command's parsers."""
    test = tasks.add_parser("test", help="run one task of a DAG alone, in the foreground, "
                                         "on throw-away state (as airflow tasks test)")
    test.add_argument("dag")
    test.add_argument("task")
    test.add_argument("--conf", help="JSON object passed to the run as its conf")


def read_conf(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        conf = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"--conf is not valid JSON: {exc}", field="--conf") from None
    if not isinstance(conf, dict):
        raise InvalidInput("--conf must be a JSON object, like '{\"key\": 1}'", field="--conf")
    return conf


async def cmd_tasks_test(settings: Settings, args: argparse.Namespace,
                         console: Console) -> int:
    return await run_test(settings, args.dag, read_conf(args.conf), console,
                          task_id=args.task)
