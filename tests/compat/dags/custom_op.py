"""A user's own operator (BaseOperator with execute(self, context) and template_fields,
a .sql template file through template_searchpath), user_defined_macros and filters,
render_template_as_native_obj, a .sh file found in the DAG's folder, cwd and env."""

import os

import pendulum
from airflow.models.baseoperator import BaseOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

HERE = os.path.dirname(__file__)


class ReportOperator(BaseOperator):
    template_fields = ("sql", "label", "extra")
    template_ext = (".sql",)
    ui_color = "#ededed"

    def __init__(self, *, sql: str, label: str, extra=None, **kwargs):
        super().__init__(**kwargs)
        self.sql = sql
        self.label = label
        self.extra = extra or {}

    def execute(self, context):
        context["ti"].xcom_push(key="label", value=self.label)
        return {"sql": self.sql.strip(), "label": self.label, "extra": self.extra,
                "task": context["task"].task_id}


with DAG(
    "custom_op",
    schedule="0 6 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="Europe/Paris"),
    template_searchpath=[os.path.join(HERE, "sql")],
    user_defined_macros={"table": "sales_eu", "shout": lambda s: s.upper()},
    user_defined_filters={"twice": lambda s: f"{s}{s}"},
    params={"limit": 5},
) as dag:
    report = ReportOperator(
        task_id="report",
        sql="report.sql",
        label="{{ shout('hi') | twice }}",
        extra={"when": "{{ ds_nodash }}", "n": "{{ params.limit }}"},
    )
    script = BashOperator(task_id="script", bash_command="scripts/hello.sh",
                          cwd=HERE, env={"ONLY": "me"})
    listing = BashOperator(task_id="listing",
                           bash_command='echo "$ONLY $(basename "$PWD") ${HOME:-nohome}"',
                           cwd=os.path.join(HERE, "sql"), env={"ONLY": "me"})
    reader = PythonOperator(
        task_id="reader",
        python_callable=lambda ti: ti.xcom_pull(task_ids="report", key="label"),
    )
    report >> [script, reader]


with DAG(
    "native_v3",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    render_template_as_native_obj=True,
) as native:

    def takes(numbers, conf_value):
        return {"sum": sum(numbers), "type": type(numbers).__name__, "conf": conf_value}

    PythonOperator(
        task_id="native",
        python_callable=takes,
        op_kwargs={"numbers": "{{ [1, 2, 3] }}", "conf_value": "{{ dag_run.conf['n'] }}"},
    )
