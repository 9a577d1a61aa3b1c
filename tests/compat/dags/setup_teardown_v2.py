"""Setup and teardown in Airflow 2.7+'s idiom: as_teardown(setups=...), @setup and
@teardown linked by `with s >> t:`, a group's own teardown; a templates_dict read from a
.sql file (templates_exts); a virtualenv branch skipped by is_venv_installed()."""

import pendulum
from airflow.decorators import setup, task, task_group, teardown
from airflow.models.dag import DAG
from airflow.operators.python import is_venv_installed

with DAG(
    dag_id="setup_teardown_v2",
    start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),
    catchup=False,
    schedule=None,
    template_searchpath="sql",
) as dag:

    @task
    def create():
        return "cluster-1"

    @task
    def work(cluster):
        raise RuntimeError(f"work on {cluster} fails")

    @task
    def delete(cluster):
        return f"deleted {cluster}"

    made = create()
    work(made) >> delete(made).as_teardown(setups=made)

    @setup
    def outer_setup():
        return "outer"

    @teardown
    def outer_teardown():
        return "outer gone"

    @task
    def inside():
        return "inside"

    s = outer_setup()
    t = outer_teardown()
    with s >> t:
        inside()

    @task_group
    def section():
        @task
        def inner_setup():
            return "inner"

        @task
        def inner_work(value):
            return value.upper()

        @task
        def inner_teardown(value):
            return f"{value} gone"

        inner_work(v := inner_setup()) >> inner_teardown(v).as_teardown()

    s >> section() >> t

    @task(templates_dict={"query": "count.sql"}, templates_exts=[".sql"],
          params={"limit": 3})
    def query(**kwargs):
        return kwargs["templates_dict"]["query"].strip()

    query()

    if is_venv_installed():
        @task.virtualenv(requirements=["colorama"])
        def in_venv():
            return 1

        in_venv()
