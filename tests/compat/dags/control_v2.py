"""Skips, failures and branches in Airflow 2's idiom: BranchPythonOperator,
ShortCircuitOperator (both ignore_downstream_trigger_rules settings), LatestOnlyOperator,
AirflowSkipException, AirflowFailException (no retry), a bash exit code 99, a join."""

import pendulum
from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.models.dag import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.operators.latest_only import LatestOnlyOperator
from airflow.operators.python import (
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from airflow.utils.trigger_rule import TriggerRule


def skip_me():
    raise AirflowSkipException("nothing to do today")


def fail_now():
    raise AirflowFailException("bad input: do not retry")


def flaky(ti):
    if ti.try_number < 2:
        raise AirflowException("first try fails")
    return ti.try_number


with DAG(
    dag_id="control_v2",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": 0},
) as dag:
    branch = BranchPythonOperator(
        task_id="branch",
        python_callable=lambda **context: "left"
        if context["dag_run"].conf.get("go") == "left" else ["right"],
    )
    left = EmptyOperator(task_id="left")
    right = EmptyOperator(task_id="right")
    join = EmptyOperator(task_id="join", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    branch >> [left, right] >> join

    sc_all = ShortCircuitOperator(task_id="sc_all", python_callable=lambda: False)
    sc_all_next = EmptyOperator(task_id="sc_all_next")
    sc_all_done = EmptyOperator(task_id="sc_all_done", trigger_rule="all_done")
    sc_all >> sc_all_next >> sc_all_done

    sc_direct = ShortCircuitOperator(task_id="sc_direct", python_callable=lambda: 0,
                                     ignore_downstream_trigger_rules=False)
    sc_direct_next = EmptyOperator(task_id="sc_direct_next")
    sc_direct_done = EmptyOperator(task_id="sc_direct_done", trigger_rule="all_done")
    sc_direct >> sc_direct_next >> sc_direct_done

    latest = LatestOnlyOperator(task_id="latest_only")
    after_latest = BashOperator(task_id="after_latest", bash_command="echo latest")
    latest >> after_latest

    skipped = PythonOperator(task_id="skip_me", python_callable=skip_me)
    after_skip = EmptyOperator(task_id="after_skip")
    skipped >> after_skip

    failed = PythonOperator(task_id="fail_now", python_callable=fail_now)
    retried = PythonOperator(task_id="flaky", python_callable=flaky)
    exit99 = BashOperator(task_id="exit99", bash_command="echo before; exit 99")
    exit1 = BashOperator(task_id="exit1", bash_command="exit 3", retries=0)
