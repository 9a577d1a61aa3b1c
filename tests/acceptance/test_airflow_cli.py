"""Airflow's CLI habits on dagd, as subprocesses: `dagd test DAG --conf JSON` runs an
Airflow DAG like `airflow dags test`, `dagd tasks test DAG TASK` runs one task like
`airflow tasks test`, and `dagd dags errors` lists each Airflow name outside the subset
with its file and line; `dag.test()` in a DAG file's `__main__` does what `dagd test`
does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acceptance.harness import Dagd, table_rows

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parents[1] / "compat" / "dags"


@pytest.fixture
def airflow_dags(dagd: Dagd) -> Dagd:
    shutil.copytree(DAGS, dagd.dags_folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dagd


def states(stdout: str) -> dict[str, str]:
    return {row[0]: row[1] for row in table_rows(stdout) if len(row) >= 2}


def test_dagd_test_runs_an_airflow_dag_with_its_conf(airflow_dags: Dagd) -> None:
    result = airflow_dags.cli("test", "control_v2", "--conf", '{"go": "right"}')
    assert result.code == 1, result.stderr  # fail_now and exit1 fail on purpose
    found = states(result.stdout)
    assert (found["left"], found["right"], found["join"]) == ("skipped", "success", "success")
    assert found["fail_now"] == "failed" and found["skip_me"] == "skipped"
    assert "AirflowFailException: bad input: do not retry" in result.stdout
    assert "control_v2 run 1: failed" in result.stdout

    result = airflow_dags.cli("test", "tutorial_v2", "--conf", '{"source": "cli"}')
    assert result.code == 0, result.stdout + result.stderr
    assert set(states(result.stdout).values()) == {"success"}


def test_dagd_tasks_test_runs_one_task_alone(airflow_dags: Dagd) -> None:
    result = airflow_dags.cli("tasks", "test", "tutorial_v2", "templated")
    assert result.code == 0, result.stdout + result.stderr
    assert states(result.stdout) == {"templated": "success"}
    assert "Parameter I passed in x-" in result.stdout  # its log, shown
    assert 'templated XCom: "Parameter I passed in x-' in result.stdout

    # Alone, it runs without its upstream tasks: what it pulls from them is None.
    result = airflow_dags.cli("tasks", "test", "tutorial_v2", "pull", "--conf", "{}")
    assert result.code == 0, result.stdout + result.stderr
    assert states(result.stdout) == {"pull": "success"}
    assert '"rows":null' in result.stdout and '"greeting":"hello!"' in result.stdout

    result = airflow_dags.cli("tasks", "test", "tutorial_v2", "nope")
    assert result.code != 0
    assert "no such task" in result.stdout + result.stderr


def test_dags_errors_lists_the_unsupported_names(dagd: Dagd) -> None:
    (dagd.dags_folder / "sensor.py").write_text(
        "from airflow import DAG\n"
        "from airflow.sensors.filesystem import FileSensor\n")
    (dagd.dags_folder / "fine.py").write_text(
        "from airflow.sdk import DAG\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('fine'):\n"
        "    EmptyOperator(task_id='a')\n")
    result = dagd.cli("dags", "errors")
    assert result.code == 1
    text = " ".join(result.stdout.split())
    assert "sensor.py:2" in text
    assert "airflow.sensors.filesystem.FileSensor is not supported by dagd" in text
    assert "FileDrop" in text


def test_dag_test_in_a_dag_files_main(airflow_dags: Dagd) -> None:
    path = airflow_dags.dags_folder / "main_test.py"
    path.write_text(
        "from airflow.sdk import DAG\n"
        "from airflow.providers.standard.operators.bash import BashOperator\n"
        "with DAG('main_test') as dag:\n"
        "    BashOperator(task_id='hi', bash_command='echo hi {{ dag_run.conf.who }}')\n"
        "if __name__ == '__main__':\n"
        "    dag.test(run_conf={'who': 'there'})\n")
    runner = (
        "import runpy, sys\n"
        "from dagd.compat.hook import airflow_imports\n"
        "with airflow_imports():\n"
        "    runpy.run_path(sys.argv[1], run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", runner, str(path)], capture_output=True,
                          text=True, timeout=60, check=False, cwd=airflow_dags.root,
                          env=airflow_dags.env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "main_test run 1: success" in done.stdout


TEST_MODE_DAG = """\
from airflow.sdk import DAG
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator


def check(test_mode):
    if test_mode is not True:
        raise ValueError(f"test_mode is {test_mode!r}")
    return test_mode


with DAG("test_mode") as dag:
    py = PythonOperator(task_id="py", python_callable=check)
    sh = BashOperator(task_id="sh", bash_command="echo mode={{ test_mode }}")
    py >> sh
"""


def test_test_mode_is_true_under_dagd_test_and_dagd_tasks_test(dagd: Dagd) -> None:
    (dagd.dags_folder / "test_mode.py").write_text(TEST_MODE_DAG)
    whole = dagd.cli("test", "test_mode")
    assert whole.code == 0, whole.stdout + whole.stderr
    assert states(whole.stdout) == {"py": "success", "sh": "success"}
    for task, shown in (("py", "py XCom: true"), ("sh", 'sh XCom: "mode=True"')):
        alone = dagd.cli("tasks", "test", "test_mode", task)
        assert alone.code == 0, alone.stdout + alone.stderr
        assert shown in alone.stdout


def test_dagd_test_refuses_a_conf_its_params_do_not_accept(dagd: Dagd) -> None:
    (dagd.dags_folder / "rows.py").write_text(
        "from airflow.sdk import DAG, Param\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('rows', params={'rows': Param(10, type='integer', maximum=100)}):\n"
        "    EmptyOperator(task_id='a')\n")
    bad = dagd.cli("test", "rows", "--conf", '{"rows": 1000}')
    assert bad.code == 1
    assert "param 'rows' must be <= 100, got 1000" in " ".join(bad.stderr.split())
    assert "Traceback" not in bad.stderr
    good = dagd.cli("test", "rows", "--conf", '{"rows": 100}')
    assert good.code == 0, good.stdout + good.stderr


CALLBACKS_DAG = '''
import json
from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator


def note(context):
    ti = context.get("task_instance")
    row = {
        "run_id": context["run_id"], "ds_nodash": context["ds_nodash"],
        "state": context["dag_run"].state, "reason": context["reason"],
        "day": context["macros"].ds_add(context["ds"], 1),
        "exception": str(context["exception"]) if context["exception"] else None,
    }
    if ti is not None:
        row.update(task=ti.task_id, try_number=ti.try_number, ti_state=ti.state,
                   pushed=ti.xcom_pull(task_ids="push", key="rows"),
                   returned=ti.xcom_pull(task_ids="push"),
                   key_str=context["task_instance_key_str"])
    with open(context["dag_run"].conf["out"], "a") as out:
        out.write(json.dumps(row) + "\\n")


def push(ti):
    ti.xcom_push(key="rows", value=3)
    return "pushed"


def boom():
    raise ValueError("bad rows")


with DAG("callbacks_v2", schedule=None, start_date=pendulum.datetime(2024, 1, 1),
         on_failure_callback=note,
         default_args={"retries": 1, "retry_delay": timedelta(seconds=0),
                       "on_retry_callback": note, "on_failure_callback": note}):
    first = PythonOperator(task_id="push", python_callable=push, on_success_callback=note)
    second = PythonOperator(task_id="boom", python_callable=boom)
    first >> second
'''


def test_an_airflow_dags_callbacks_get_airflows_context(dagd: Dagd, tmp_path: Path) -> None:
    (dagd.dags_folder / "callbacks_v2.py").write_text(CALLBACKS_DAG)
    out = tmp_path / "callbacks.jsonl"
    result = dagd.cli("test", "callbacks_v2", "--conf", json.dumps({"out": str(out)}))
    assert result.code == 1, result.stdout + result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_kind = {(r.get("task"), r.get("ti_state")): r for r in rows}
    assert set(by_kind) == {("push", "success"), ("boom", "up_for_retry"),
                            ("boom", "failed"), (None, None)}, rows
    pushed = by_kind[("push", "success")]
    assert pushed["run_id"].startswith("manual__") and pushed["pushed"] == 3
    assert pushed["returned"] == "pushed" and pushed["exception"] is None
    assert pushed["key_str"] == f"callbacks_v2__push__{pushed['ds_nodash']}"
    retry, failed = by_kind[("boom", "up_for_retry")], by_kind[("boom", "failed")]
    assert (retry["try_number"], failed["try_number"]) == (1, 2)
    assert "ValueError: bad rows" in failed["exception"]
    assert failed["pushed"] == 3  # a key the upstream task pushed
    run = by_kind[(None, None)]
    assert run["state"] == "failed" and run["run_id"] == pushed["run_id"]
    assert len(run["ds_nodash"]) == 8 and len(run["day"]) == 10
