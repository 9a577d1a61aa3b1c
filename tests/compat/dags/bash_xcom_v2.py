"""Airflow 2's example_xcom idiom for bash: a key pushed from inside a templated
bash_command (`{{ ti.xcom_push(...) }}`), kept beside the last line of output, and an
XComArg (`XComArg(task, key=...)`, `.output`) put in another bash_command by an f-string,
pulled when that command is rendered; a @task.bash function that reads
get_current_context(); Airflow's date filters and the DAG's user_defined_filters in a
bash_command."""

import pendulum
from airflow.decorators import task
from airflow.models.dag import DAG
from airflow.models.xcom_arg import XComArg
from airflow.operators.bash import BashOperator
from airflow.operators.python import get_current_context

with DAG(
    "bash_xcom_v2",
    schedule="@once",
    start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),
    catchup=False,
    user_defined_filters={"shout": lambda value: str(value).upper()},
) as dag:
    bash_push = BashOperator(
        task_id="bash_push",
        bash_command='echo "bash_push demo" && '
        'echo "Manually set xcom value '
        '{{ ti.xcom_push(key="manually_pushed_value", value="manually_pushed_value") }}" && '
        'echo "value_by_return"',
    )

    bash_pull = BashOperator(
        task_id="bash_pull",
        bash_command=f'echo "manual={XComArg(bash_push, key="manually_pushed_value")} '
        f'returned={bash_push.output}"',
    )

    quiet = BashOperator(
        task_id="quiet",
        bash_command='echo "{{ ti.xcom_push(key="k", value="kept") }}"; echo dropped',
        do_xcom_push=False,
    )

    @task
    def pull_value_from_bash_push(ti=None):
        return {
            "returned": ti.xcom_pull(key="return_value", task_ids="bash_push"),
            "manual": ti.xcom_pull(key="manually_pushed_value", task_ids="bash_push"),
            "quiet": [ti.xcom_pull(task_ids="quiet"), ti.xcom_pull(task_ids="quiet", key="k")],
        }

    @task.bash
    def from_context():
        return f"echo run_type={get_current_context()['dag_run'].run_type}"

    filters = BashOperator(
        task_id="filters",
        bash_command='echo "{{ logical_date | ds_nodash }}={{ ds_nodash }} '
        '{{ dag_run.conf.get(\'word\', \'a; b\') | shout }}"',
    )

    [bash_pull, quiet >> pull_value_from_bash_push(), from_context(), filters] << bash_push
