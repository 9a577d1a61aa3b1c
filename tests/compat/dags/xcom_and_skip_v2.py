"""Airflow 2's XCom and skip idioms: pushes without a return value pulled with key=None,
a list of task ids, a pull from a task two steps up, `import airflow` then
airflow.utils.dates, and a DummyOperator subclass whose execute raises
AirflowSkipException, joined by all_success and one_success."""

import airflow
from airflow import DAG
from airflow.exceptions import AirflowSkipException
from airflow.operators.dummy_operator import DummyOperator
from airflow.operators.python_operator import PythonOperator

args = {"owner": "airflow", "start_date": airflow.utils.dates.days_ago(2)}
dag = DAG("xcom_and_skip_v2", schedule_interval="@once", default_args=args)


def push(**kwargs):
    kwargs["ti"].xcom_push(key="first", value=[1, 2])
    kwargs["ti"].xcom_push(key="second", value=[3])


def push_by_returning():
    return {"a": "b"}


def puller(**kwargs):
    ti = kwargs["ti"]
    return {
        "any_key": ti.xcom_pull(key=None, task_ids="push"),
        "first": ti.xcom_pull(key="first", task_ids="push"),
        "returned": ti.xcom_pull(task_ids="push_by_returning"),
        "both": ti.xcom_pull(key=None, task_ids=["push", "push_by_returning"]),
        "nothing": ti.xcom_pull(task_ids="push"),
    }


def grandchild(ti):
    """Two steps after `push`: Airflow's xcom_pull reads any task before this one."""
    return [ti.xcom_pull(task_ids="push", key="first"), ti.xcom_pull(task_ids="puller")["first"]]


pusher = PythonOperator(task_id="push", dag=dag, python_callable=push)
returner = PythonOperator(task_id="push_by_returning", dag=dag, python_callable=push_by_returning)
pull = PythonOperator(task_id="puller", dag=dag, python_callable=puller)
pull << [pusher, returner]
pull >> PythonOperator(task_id="grandchild", dag=dag, python_callable=grandchild)


class SkipOperator(DummyOperator):
    ui_color = "#e8b7e4"

    def execute(self, context):
        raise AirflowSkipException(f"skipping {context['ti'].task_id}")


def pipeline(suffix, trigger_rule, dag_):
    skip = SkipOperator(task_id=f"skip_{suffix}", dag=dag_)
    always = DummyOperator(task_id=f"always_{suffix}", dag=dag_)
    join = DummyOperator(task_id=trigger_rule, dag=dag_, trigger_rule=trigger_rule)
    final = DummyOperator(task_id=f"final_{suffix}", dag=dag_)
    skip >> join
    always >> join
    join >> final


pipeline("1", "all_success", dag)
pipeline("2", "one_success", dag)
