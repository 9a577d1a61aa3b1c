"""Airflow-style DAG files (tests/compat/dags, Airflow 2 and 3 imports) run end to end on
a real engine with real worker processes: task states, XComs (with keys), the order of
execution and the rendered commands, read back from the store and the attempts' logs."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dagd.config import Settings
from integration.harness import Harness, StartEngine, read_text

pytestmark = pytest.mark.anyio

DAGS = Path(__file__).resolve().parents[1] / "compat" / "dags"
S, K, F = "success", "skipped", "failed"


@pytest.fixture
def airflow_folder(settings: Settings) -> Settings:
    """The Airflow-style DAG files (and their .sql and .sh files) in the DAGs folder."""
    shutil.copytree(DAGS, settings.dags_folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return settings


async def log_of(h: Harness, run_id: int, task_id: str, try_number: int = 1) -> str:
    attempts = await h.attempts(run_id, task_id)
    return await read_text(attempts[try_number - 1].log_path)


async def own_states(h: Harness, run_id: int) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in await h.store.list_tis(run_id) if ti.map_index < 0}


async def test_airflow_2_tutorial(airflow_folder: Settings, start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("tutorial_v2", {"source": "web"})
        assert state == S
        assert await own_states(h, run_id) == dict.fromkeys(
            ["print_date", "templated", "push", "pull", "end"], S)
        run = await h.store.get_run(run_id)
        assert run.logical_date is not None
        ds = datetime.fromisoformat(run.logical_date).astimezone(UTC).strftime("%Y-%m-%d")
        assert await h.xcom(run_id, "print_date") == f"date={ds} p=eu"
        assert await h.xcom(run_id, "push") == {"__airflow_xcom__": {
            "rows": 42, "source": "web", "return_value": {"total": 7}}}
        pulled = await h.xcom(run_id, "pull")
        assert pulled == {
            "greeting": "hello!", "rows": 42, "source": "web", "returned": {"total": 7},
            "explicit": {"total": 7}, "both": [{"total": 7}, f"date={ds} p=eu"],
            "ds_is_ds": True, "run_id": "manual", "templated": True,
            "params": {"region": "eu", "source": "web"},  # the conf overrides params
            # `ti` is a parameter of its own: not in **kwargs, as in Airflow
            "keys": ["dag", "data_interval_start", "macros", "task", "task_instance",
                     "test_mode", "ts"],
            "key_str": True,
        }
        log = await log_of(h, run_id, "templated")
        plus7 = datetime.strptime(ds, "%Y-%m-%d").toordinal() + 7
        week = datetime.fromordinal(plus7).strftime("%Y-%m-%d")
        assert f"{ds} {week} 0\n" in log and f"{ds} {week} 1\n" in log
        assert f"Parameter I passed in x-{ds.replace('-', '')}\n" in log
        # The order: each task started after its upstream tasks ended.
        ended = {t: (await h.attempts(run_id, t))[0] for t in ("print_date", "push", "pull")}
        assert ended["print_date"].ended_at <= ended["push"].started_at  # type: ignore[operator]
        assert ended["push"].ended_at <= ended["pull"].started_at  # type: ignore[operator]


async def test_airflow_3_taskflow(airflow_folder: Settings, start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("taskflow_v3")
        assert state == S
        states = await own_states(h, run_id)
        assert states == {
            "make_room": S, "extract": S, "scale": S, "total": S, "label_a": S,
            "choose": S, "big": S, "small": K, "gate": S, "after_gate": K,
            "report.describe": S, "report.shout": S, "clean_room": S,
        }
        assert await h.xcom(run_id, "extract") == {"a": 1, "b": 2, "items": [1, 2, 3]}
        assert await h.xcom(run_id, "scale") == [10, 20, 30]
        assert await h.xcom(run_id, "total") == 60
        assert await h.xcom(run_id, "label_a") == 100
        assert await h.xcom(run_id, "choose") == "big"
        assert await h.xcom(run_id, "report.describe") == "report.describe:60"
        assert await h.xcom(run_id, "report.shout") == "shout-report.describe:60"
        room = (await h.attempts(run_id, "make_room"))[0]
        extract = (await h.attempts(run_id, "extract"))[0]
        assert room.ended_at is not None and room.ended_at <= extract.started_at


async def test_skips_failures_and_branches(airflow_folder: Settings,
                                           start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("control_v2", {"go": "left"})
        assert state == F  # fail_now and exit1 failed
        assert await own_states(h, run_id) == {
            "branch": S, "left": S, "right": K, "join": S,
            "sc_all": S, "sc_all_next": K, "sc_all_done": K,
            "sc_direct": S, "sc_direct_next": K, "sc_direct_done": S,
            "latest_only": S, "after_latest": S,
            "skip_me": K, "after_skip": K,
            "fail_now": F, "flaky": S, "exit99": K, "exit1": F,
        }
        assert len(await h.attempts(run_id, "fail_now")) == 1  # retries=2, never used
        assert len(await h.attempts(run_id, "flaky")) == 2
        assert await h.xcom(run_id, "flaky") == 2
        assert "AirflowSkipException: nothing to do today" in (
            await h.attempts(run_id, "skip_me"))[0].error
        assert "exit code 99" in (await h.attempts(run_id, "exit99"))[0].error
        assert "before\n" in await log_of(h, run_id, "exit99")
        assert len(await h.attempts(run_id, "exit99")) == 1

        run_id, _ = await h.run("control_v2", {"go": "right"})
        states = await own_states(h, run_id)
        assert (states["left"], states["right"], states["join"]) == (K, S, S)


async def test_custom_operator_templates_and_files(airflow_folder: Settings,
                                                   start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("custom_op", {"limit": 9})
        assert state == S
        run = await h.store.get_run(run_id)
        ds = datetime.fromisoformat(run.logical_date or "").astimezone(UTC).strftime("%Y-%m-%d")
        report: dict[str, Any] = await h.xcom(run_id, "report")
        assert report == {
            "__airflow_xcom__": {"label": "HIHI", "return_value": {
                "sql": f"SELECT '{ds}' AS day, 9 AS n FROM sales_eu", "label": "HIHI",
                "extra": {"when": ds.replace("-", ""), "n": "9"}, "task": "report"}}}
        assert await h.xcom(run_id, "reader") == "HIHI"
        assert await h.xcom(run_id, "script") == f"script for {ds} in custom_op"
        assert await h.xcom(run_id, "listing") == "me sql nohome"
        log = await log_of(h, run_id, "script")
        assert 'echo "script for ${DAGD_ARG_1} in ${DAGD_ARG_2}"' in log
        assert f'DAGD_ARG_1="{ds}"' in log


async def test_native_rendering(airflow_folder: Settings, start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("native_v3", {"n": 4})
        assert state == S
        assert await h.xcom(run_id, "native") == {"sum": 6, "type": "list", "conf": 4}


async def test_a_template_file_outside_the_search_path_is_refused(
        settings: Settings, start_engine: StartEngine, write_dag: Any) -> None:
    (settings.dags_folder.parent / "secret.sh").write_text("echo secret\n")
    write_dag("escape.py", """\
        from airflow.sdk import DAG
        from airflow.providers.standard.operators.bash import BashOperator

        with DAG("escape", schedule=None):
            BashOperator(task_id="up", bash_command="../secret.sh")
        """)
    async with start_engine(settings) as h:
        run_id, state = await h.run("escape")
        assert state == F
        (attempt,) = await h.attempts(run_id, "up")
        assert attempt.error is not None and "without '..'" in attempt.error


RUNTIME = """\
    from airflow.sdk import DAG
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.models.xcom_arg import XComArg
    from dagd import PythonTask


    def late_import(**kwargs):
        # Airflow 2's habit: import inside the function, at run time
        from airflow.operators.python import get_current_context

        return get_current_context()["ti"].task_id


    def plain():
        try:
            import airflow  # noqa: F401
        except ImportError:
            return "no airflow"
        return "airflow leaked"


    with DAG("runtime", schedule=None):
        first = PythonOperator(task_id="first", python_callable=late_import)
        echo = BashOperator(
            task_id="echo",
            bash_command="echo \\"got {{ ti.xcom_pull(task_ids='first') }} in $(basename $PWD)\\"",
            cwd="{{ dag_run.conf['where'] }}",
        )
        first >> echo
        PythonTask(task_id="native", python_callable=plain)
        # .output and XComArg, as another operator's arguments
        pair = PythonOperator(task_id="pair", python_callable=lambda: {"k": "v", "n": 2})
        PythonOperator(task_id="uses_output", python_callable=lambda a, b, c: [a, b, c],
                       op_args=[pair.output["k"], XComArg(pair, key="return_value")["n"]],
                       op_kwargs={"c": first.output})
    """


async def test_run_time_imports_templates_and_native_tasks(
        settings: Settings, start_engine: StartEngine, write_dag: Any, tmp_path: Path) -> None:
    where = tmp_path / "workdir"
    where.mkdir()
    write_dag("runtime.py", RUNTIME)
    async with start_engine(settings) as h:
        run_id, state = await h.run("runtime", {"where": str(where)})
        assert state == S, await h.states(run_id)
        assert await h.xcom(run_id, "first") == "first"
        assert await h.xcom(run_id, "echo") == "got first in workdir"
        # A dagd task of the same file: `airflow` is not there when no Airflow task runs
        assert await h.xcom(run_id, "native") == "no airflow"
        assert await h.xcom(run_id, "uses_output") == ["v", 2, "first"]
        assert (await h.tis(run_id))["uses_output"].state == S


async def test_setup_and_teardown(airflow_folder: Settings, start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("setup_teardown_v2")
        assert state == F  # `work` fails; its teardown still runs
        assert await own_states(h, run_id) == {
            "create": S, "work": F, "delete": S,
            "outer_setup": S, "inside": S, "outer_teardown": S,
            "section.inner_setup": S, "section.inner_work": S, "section.inner_teardown": S,
            "query": S,
        }
        assert await h.xcom(run_id, "delete") == "deleted cluster-1"
        assert await h.xcom(run_id, "section.inner_teardown") == "inner gone"
        teardown = (await h.attempts(run_id, "outer_teardown"))[0]
        for before in ("inside", "section.inner_teardown"):
            ended = (await h.attempts(run_id, before))[0].ended_at
            assert ended is not None and ended <= teardown.started_at
        run = await h.store.get_run(run_id)
        ds = datetime.fromisoformat(run.logical_date or "").astimezone(UTC).strftime("%Y-%m-%d")
        assert await h.xcom(run_id, "query") == (
            f"SELECT count(*) FROM events WHERE day = '{ds}' LIMIT 3")


async def test_xcom_any_key_and_skipping_subclasses(airflow_folder: Settings,
                                                    start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("xcom_and_skip_v2")
        assert state == S
        assert await own_states(h, run_id) == {
            "push": S, "push_by_returning": S, "puller": S, "grandchild": S,
            "skip_1": K, "always_1": S, "all_success": K, "final_1": K,
            "skip_2": K, "always_2": S, "one_success": S, "final_2": S,
        }
        assert await h.xcom(run_id, "puller") == {
            "any_key": [3], "first": [1, 2], "returned": {"a": "b"},
            "both": [[3], {"a": "b"}], "nothing": None,
        }
        assert await h.xcom(run_id, "grandchild") == [[1, 2], [1, 2]]
        assert "AirflowSkipException: skipping skip_1" in (
            await h.attempts(run_id, "skip_1"))[0].error


async def test_bash_pushes_from_its_template_and_pulls_through_an_xcomarg(
        airflow_folder: Settings, start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("bash_xcom_v2")
        assert state == S
        assert await h.xcom(run_id, "bash_push") == {"__airflow_xcom__": {
            "manually_pushed_value": "manually_pushed_value",
            "return_value": "value_by_return"}}
        assert await h.xcom(run_id, "bash_pull") == (
            "manual=manually_pushed_value returned=value_by_return")
        assert await h.xcom(run_id, "pull_value_from_bash_push") == {
            "returned": "value_by_return", "manual": "manually_pushed_value",
            "quiet": [None, "kept"]}  # do_xcom_push=False drops the output, not the key
        log = await log_of(h, run_id, "bash_pull")
        assert "task_instance.xcom_pull" not in log  # rendered, not echoed
        assert await h.xcom(run_id, "from_context") == "run_type=manual"
        left, _, shout = (await h.xcom(run_id, "filters")).partition(" ")
        day, _, ds_nodash = left.partition("=")
        assert day == ds_nodash and len(day) == 8  # Airflow's | ds_nodash filter
        assert shout == "A; B"  # user_defined_filters; the value is still one word


async def test_a_base_branch_operator_subclass_chooses_the_path(
        airflow_folder: Settings, start_engine: StartEngine) -> None:
    async with start_engine(airflow_folder) as h:
        run_id, state = await h.run("branch_class_v3", {"fast": True})
        assert state == S
        assert await own_states(h, run_id) == {
            "pick": S, "fast": S, "slow_1": K, "slow_2": K, "join": S}
        run_id, state = await h.run("branch_class_v3", {})
        assert state == S
        assert await own_states(h, run_id) == {
            "pick": S, "fast": K, "slow_1": S, "slow_2": S, "join": S}


TEST_MODE = """
    from airflow.sdk import DAG
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import PythonOperator

    with DAG("test_mode") as dag:
        PythonOperator(task_id="py", python_callable=lambda test_mode: test_mode)
        BashOperator(task_id="sh", bash_command="echo mode={{ test_mode }}")
"""


async def test_test_mode_is_false_in_the_daemon(start_engine: StartEngine,
                                                write_dag: Any) -> None:
    """(`dagd test` and `dagd tasks test` make it True: tests/acceptance/test_airflow_cli.)"""
    write_dag("test_mode.py", TEST_MODE)
    async with start_engine() as h:
        run_id, state = await h.run("test_mode")
        assert state == S
        assert await h.xcom(run_id, "py") is False
        assert await h.xcom(run_id, "sh") == "mode=False"


HABITS = """
import os

import airflow
import pendulum
from airflow import DAG
from airflow.models.baseoperator import BaseOperator
from airflow.operators.python import PythonOperator

HOME = os.path.dirname(airflow.__file__)  # a DAG file may ask where airflow lives


class Greets(BaseOperator):
    def execute(self, context):
        self.log.info("greeting from %s", self.task_id)
        return "greeted"


def when(**context):
    return {"at": pendulum.datetime(2024, 1, 2, tz="UTC"), "ld": context["logical_date"]}


with DAG("habits", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), schedule=None):
    Greets(task_id="greets") >> PythonOperator(task_id="when", python_callable=when)
"""


async def test_self_log_a_returned_pendulum_date_and_airflow_file(
    settings: Settings, start_engine: StartEngine,
) -> None:
    (settings.dags_folder / "habits.py").write_text(HABITS)
    async with start_engine() as h:
        run_id, state = await h.run("habits")
        log = await log_of(h, run_id, "greets")
        value = await h.xcom(run_id, "when")
        greeted = await h.xcom(run_id, "greets")
    assert state == "success"
    assert "greeting from greets" in log
    assert greeted == "greeted"
    assert value["at"] == "2024-01-02T00:00:00+00:00"
    assert isinstance(value["ld"], str)
