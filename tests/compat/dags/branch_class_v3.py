"""A user's own branch operator in Airflow 3's idiom: a BaseBranchOperator subclass
(the standard provider's path) whose choose_branch(self, context) reads the run's conf;
the path not taken is skipped, the join runs by none_failed_min_one_success."""

import pendulum
from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG


class PickByConf(BaseBranchOperator):
    def choose_branch(self, context):
        return "fast" if context["dag_run"].conf.get("fast") else ["slow_1", "slow_2"]


with DAG("branch_class_v3", start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    pick = PickByConf(task_id="pick")
    join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
    for name in ("fast", "slow_1", "slow_2"):
        pick >> EmptyOperator(task_id=name) >> join
