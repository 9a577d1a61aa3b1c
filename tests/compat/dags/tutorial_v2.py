"""Airflow 2's tutorial idiom: `from airflow import DAG`, the old *_operator modules,
days_ago, default_args with keys dagd ignores, templated bash, PythonOperator with
op_args, op_kwargs, templates_dict, the context by name and as **kwargs, XCom keys."""

from datetime import timedelta

from airflow import DAG
from airflow.operators.bash_operator import BashOperator
from airflow.operators.dummy_operator import DummyOperator
from airflow.operators.python_operator import PythonOperator
from airflow.utils.dates import days_ago

default_args = {
    "owner": "airflow",
    "depends_on_past": False,
    "email": ["airflow@example.com"],
    "email_on_failure": False,
    "email_on_retry": False,
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
    "queue": "bash_queue",
    "pool": "backfill",
    "priority_weight": 10,
    "execution_timeout": timedelta(seconds=60),
    "sla": timedelta(hours=2),
}


def push(ti, **kwargs):
    ti.xcom_push(key="rows", value=42)
    ti.xcom_push("source", kwargs["dag_run"].conf.get("source", "default"))
    return {"total": 7}


def pull(greeting, ti, ds, run_id, *, suffix="?", **kwargs):
    return {
        "greeting": greeting + suffix,
        "rows": ti.xcom_pull(task_ids="push", key="rows"),
        "source": ti.xcom_pull(task_ids="push", key="source"),
        "returned": ti.xcom_pull(task_ids="push"),
        "explicit": ti.xcom_pull(task_ids="push", key="return_value"),
        "both": ti.xcom_pull(task_ids=["push", "print_date"]),
        "ds_is_ds": ds == kwargs["logical_date"].strftime("%Y-%m-%d"),
        "run_id": run_id.split("__")[0],
        "templated": kwargs["templates_dict"]["day"] == ds.replace("-", ""),
        "params": kwargs["params"],
        "keys": sorted(k for k in ("dag", "task", "ti", "task_instance", "macros",
                                   "data_interval_start", "ts", "test_mode") if k in kwargs),
        "key_str": kwargs["task_instance_key_str"].startswith("tutorial_v2__pull__"),
    }


with DAG(
    "tutorial_v2",
    default_args=default_args,
    description="A simple tutorial DAG",
    schedule_interval=timedelta(days=1),
    start_date=days_ago(2),
    tags=["example"],
    params={"region": "eu"},
    max_active_runs=3,
    concurrency=4,
    dagrun_timeout=timedelta(minutes=60),
    doc_md="# Tutorial\nRuns the tutorial.",
) as dag:
    t1 = BashOperator(task_id="print_date", bash_command="echo date={{ ds }} p={{ params.region }}")
    t2 = BashOperator(
        task_id="templated",
        bash_command="""
{% for i in range(2) %}
    echo "{{ ds }} {{ macros.ds_add(ds, 7) }} {{ i }}"
{% endfor %}
    echo "{{ params.my_param }} $EXTRA"
""",
        params={"my_param": "Parameter I passed in"},
        env={"EXTRA": "x-{{ ds_nodash }}"},
        append_env=True,
    )
    t3 = PythonOperator(task_id="push", python_callable=push)
    t4 = PythonOperator(
        task_id="pull",
        python_callable=pull,
        op_args=["hello"],
        op_kwargs={"suffix": "!"},
        templates_dict={"day": "{{ ds_nodash }}"},
    )
    end = DummyOperator(task_id="end")
    t1 >> [t2, t3]
    [t1, t3] >> t4 >> end
