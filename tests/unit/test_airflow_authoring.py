"""Airflow DAG files as dagd builds them: each DAG argument mapped (schedules and their
defaults per generation, timezones, catchup, default_args, params, limits), operator
arguments honoured or ignored, trigger rules, Labels, groups, setup and teardown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dagd.authoring.loader import load_file
from dagd.triggers.timers import Cron, Interval

WriteDag = Callable[[str, str], Path]


def load(write_dag: WriteDag, body: str, *, header: str = "from airflow import DAG") -> Any:
    source = (f"{header}\nimport pendulum\nfrom datetime import datetime, timedelta\n"
              "from airflow.operators.empty import EmptyOperator\n" + body)
    dags, failure = load_file(write_dag("d.py", source))
    assert failure is None, failure.message
    return dags[0]


def one_dag(write_dag: WriteDag, args: str, header: str = "from airflow import DAG") -> Any:
    return load(write_dag, f"with DAG('d', {args}) as d:\n    EmptyOperator(task_id='a')\n",
                header=header)


def test_airflow_2_defaults_daily_with_catchup(write_dag: WriteDag) -> None:
    d = one_dag(write_dag, "start_date=datetime(2024, 1, 1)")
    assert d.triggers == [Interval(days=1, start=d.triggers[0].start)]
    assert d.catchup is True


def test_airflow_3_defaults_no_schedule_no_catchup(write_dag: WriteDag) -> None:
    d = one_dag(write_dag, "start_date=datetime(2024, 1, 1)", header="from airflow.sdk import DAG")
    assert d.triggers == [] and d.catchup is False


@pytest.mark.parametrize(("schedule", "expected"), [
    ("'@daily'", Cron("@daily")),
    ("'@hourly'", Cron("@hourly")),
    ("'@weekly'", Cron("@weekly")),
    ("'@monthly'", Cron("@monthly")),
    ("'@yearly'", Cron("@yearly")),
    ("'@quarterly'", Cron("0 0 1 */3 *")),
    ("'5 4 * * 1-5'", Cron("5 4 * * 1-5")),
    ("None", None),
    ("'@once'", None),
])
def test_schedules_and_presets(write_dag: WriteDag, schedule: str, expected: Any) -> None:
    for key in ("schedule", "schedule_interval"):
        d = one_dag(write_dag, f"{key}={schedule}, start_date=datetime(2024, 1, 1)")
        assert d.triggers == ([expected] if expected else [])


def test_a_timedelta_schedule_counts_from_start_date(write_dag: WriteDag) -> None:
    d = one_dag(write_dag, "schedule=timedelta(hours=6), "
                           "start_date=pendulum.datetime(2024, 1, 1, 3, tz='UTC')")
    (timer,) = d.triggers
    assert isinstance(timer, Interval) and timer.start is not None
    assert timer.start.hour == 3 and timer.seconds == timedelta(hours=6).total_seconds()


def test_a_cron_schedule_runs_in_start_dates_timezone(write_dag: WriteDag) -> None:
    d = one_dag(write_dag, "schedule='0 2 * * *', "
                           "start_date=pendulum.datetime(2024, 1, 1, tz='Europe/Paris')")
    assert d.triggers == [Cron("0 2 * * *", timezone="Europe/Paris")]
    d = one_dag(write_dag, "schedule='@daily', start_date=datetime(2024, 1, 1)")
    assert d.triggers == [Cron("@daily", timezone="UTC")]


def test_continuous_is_refused(write_dag: WriteDag) -> None:
    _, failure = load_file(write_dag("c.py", (
        "from airflow.sdk import DAG\nDAG('c', schedule='@continuous')\n")))
    assert failure is not None and "@continuous" in failure.message and failure.line == 2


def test_dag_arguments(write_dag: WriteDag) -> None:
    d = one_dag(write_dag, (
        "description='desc', tags=['a', 'b'], doc_md='# Doc', max_active_runs=2, "
        "max_active_tasks=3, dagrun_timeout=timedelta(hours=1), catchup=False, "
        "params={'n': 5}, template_searchpath='/srv/sql', "
        "user_defined_macros={'m': 1}, render_template_as_native_obj=True, "
        "end_date=datetime(2030, 1, 1), is_paused_upon_creation=False, "
        "sla_miss_callback=None, default_view='grid', orientation='TB', "
        "start_date=datetime(2024, 1, 1)"))
    assert (d.description, d.tags, d.doc, d.max_active_runs, d.max_active_tasks) == (
        "desc", ["a", "b"], "# Doc", 2, 3)
    assert d.params == {"n": 5} and d.catchup is False
    assert d.template_searchpath == ["/srv/sql"] and d.user_defined_macros == {"m": 1}
    assert d.render_template_as_native_obj is True
    assert d.describe()["doc_md"] == "# Doc"


def test_concurrency_is_max_active_tasks(write_dag: WriteDag) -> None:
    assert one_dag(write_dag, "concurrency=4").max_active_tasks == 4


def test_params_with_param_objects(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.models.param import Param\n"
        "with DAG('d', params={'x': Param(3, type='integer', minimum=0), 'y': 'z'}) as d:\n"
        "    EmptyOperator(task_id='a')\n"))
    assert d.params == {"x": 3, "y": "z"}


def test_default_args_honoured_or_ignored(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "args = {'owner': 'me', 'depends_on_past': True, 'retries': 3,\n"
        "        'retry_delay': timedelta(seconds=30), 'retry_exponential_backoff': True,\n"
        "        'max_retry_delay': timedelta(minutes=5), 'execution_timeout': 60,\n"
        "        'email': 'a@example.com', 'email_on_failure': True, 'email_on_retry': False,\n"
        "        'start_date': datetime(2024, 1, 1), 'end_date': datetime(2030, 1, 1),\n"
        "        'trigger_rule': 'none_failed_or_skipped', 'pool': 'p', 'queue': 'q',\n"
        "        'priority_weight': 3, 'sla': timedelta(hours=1), 'wait_for_downstream': True,\n"
        "        'on_failure_callback': lambda context: None, 'something_else': 1}\n"
        "with DAG('d', default_args=args, schedule='@daily') as d:\n"
        "    EmptyOperator(task_id='a')\n"))
    task = d.tasks["a"]
    policy = task.retry_policy
    assert (policy.retries, policy.retry_delay, policy.retry_exponential_backoff,
            policy.max_retry_delay) == (3, 30.0, True, 300.0)
    assert task.execution_timeout == 60.0 and task.email == ("a@example.com",)
    assert task.email_on_retry is False and task.trigger_rule == "none_failed_min_one_success"
    assert "on_failure_callback" in task.callbacks
    assert d.start_date.year == 2024  # from default_args


def test_trigger_rules_map_onto_dagd(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.utils.trigger_rule import TriggerRule as TR\n"
        "with DAG('d') as d:\n"
        "    for i, rule in enumerate([TR.ALL_DONE, TR.ONE_FAILED, TR.NONE_SKIPPED,\n"
        "                              TR.ALWAYS, TR.ALL_DONE_SETUP_SUCCESS, 'all_failed',\n"
        "                              TR.ONE_DONE, TR.ALL_SKIPPED, TR.DUMMY,\n"
        "                              TR.NONE_FAILED_OR_SKIPPED,\n"
        "                              TR.ALL_DONE_MIN_ONE_SUCCESS]):\n"
        "        EmptyOperator(task_id=f't{i}', trigger_rule=rule)\n"))
    assert [t.trigger_rule for t in d.tasks.values()] == [
        "all_done", "one_failed", "none_skipped", "always", "all_done", "all_failed",
        "one_done", "all_skipped", "always", "none_failed_min_one_success",
        "all_done_min_one_success"]
    _, failure = load_file(write_dag("r.py", (
        "from airflow.sdk import DAG\nfrom airflow.operators.empty import EmptyOperator\n"
        "with DAG('r'):\n    EmptyOperator(task_id='a', trigger_rule='sometimes')\n")))
    assert failure is not None and "sometimes" in failure.message and failure.line == 4


def test_every_airflow_trigger_rule_runs_as_a_rule_the_planner_decides() -> None:
    from dagd.compat.airflow.links import TriggerRule, dagd_rule
    from dagd.scheduler.planner import RULES

    assert {dagd_rule(rule) for rule in TriggerRule} <= set(RULES)


def test_an_unknown_operator_argument_is_refused(write_dag: WriteDag) -> None:
    _, failure = load_file(write_dag("u.py", (
        "from airflow.sdk import DAG\nfrom airflow.operators.empty import EmptyOperator\n"
        "with DAG('u'):\n    EmptyOperator(task_id='a', colour='red')\n")))
    assert failure is not None and "colour" in failure.message


def test_dag_passed_explicitly_and_bitshift_with_labels(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.utils.edgemodifier import Label\n"
        "from airflow.models.baseoperator import chain, cross_downstream\n"
        "d = DAG('d', schedule=None)\n"
        "a, b, c, e, f, g = (EmptyOperator(task_id=x, dag=d) for x in 'abcefg')\n"
        "a >> Label('yes') >> b\n"
        "[b, c] >> Label('both') >> e\n"
        "cross_downstream([a], [f, g])\n"
        "chain(e, [f, g])\n"))
    ups = {t: sorted(x.upstream_ids) for t, x in d.tasks.items()}
    assert ups == {"a": [], "b": ["a"], "c": [], "e": ["b", "c"], "f": ["a", "e"],
                   "g": ["a", "e"]}
    described = {t["task_id"]: t.get("edge_labels") for t in d.describe()["tasks"]}
    assert described == {"a": None, "b": {"a": "yes"}, "c": None,
                         "e": {"b": "both", "c": "both"}, "f": None, "g": None}


def test_groups_prefix_ids_and_link_as_a_whole(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.utils.task_group import TaskGroup\n"
        "from airflow.decorators import task_group, task\n"
        "@task_group\n"
        "def tg():\n"
        "    @task\n"
        "    def inner():\n"
        "        return 1\n"
        "    inner()\n"
        "with DAG('d') as d:\n"
        "    start = EmptyOperator(task_id='start')\n"
        "    with TaskGroup('group1', tooltip='t') as g:\n"
        "        x = EmptyOperator(task_id='x')\n"
        "        y = EmptyOperator(task_id='y')\n"
        "        x >> y\n"
        "    start >> g >> tg() >> tg()\n"))
    ups = {t: sorted(x.upstream_ids) for t, x in d.tasks.items()}
    assert ups == {"start": [], "group1.x": ["start"], "group1.y": ["group1.x"],
                   "tg.inner": ["group1.y"], "tg__1.inner": ["tg.inner"]}


def test_setup_and_teardown(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.decorators import setup, task, teardown\n"
        "with DAG('d') as d:\n"
        "    @setup\n"
        "    def create():\n"
        "        return 1\n"
        "    @teardown\n"
        "    def delete():\n"
        "        return 1\n"
        "    @task\n"
        "    def work():\n"
        "        return 1\n"
        "    made = create()\n"
        "    made >> work() >> delete()\n"
        "    other = EmptyOperator(task_id='other')\n"
        "    other.as_teardown(setups=made)\n"), header="from airflow import DAG")
    assert d.tasks["delete"].trigger_rule == "all_done"
    assert d.tasks["other"].trigger_rule == "all_done"
    assert d.tasks["other"].upstream_ids == {"create"}
    assert d.tasks["create"].is_setup and d.tasks["delete"].is_teardown


def test_taskflow_ids_overrides_and_mapping(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.sdk import dag, task\n"
        "@dag(schedule=None, start_date=datetime(2024, 1, 1), tags=['t'])\n"
        "def flow(size: int = 3):\n"
        "    '''Docs of the flow.'''\n"
        "    @task(retries=2, multiple_outputs=True)\n"
        "    def make():\n"
        "        return {'x': [1]}\n"
        "    @task\n"
        "    def use(x, y=0):\n"
        "        return x\n"
        "    m = make()\n"
        "    use(m['x'])\n"
        "    use.override(task_id='renamed', retries=4)(m['x'])\n"
        "    use.partial(y=1).expand(x=m['x'])\n"
        "flow()\n"), header="")
    assert d.dag_id == "flow" and d.params == {"size": 3} and d.doc == "Docs of the flow."
    assert sorted(d.tasks) == ["make", "renamed", "use", "use__1"]
    assert d.tasks["make"].retry_policy.retries == 2
    assert d.tasks["renamed"].retry_policy.retries == 4
    assert d.tasks["use__1"].mapped is not None and d.tasks["use__1"].op_kwargs == {"y": 1}
    assert d.catchup is False and d.triggers == []


def test_branch_and_short_circuit_modes(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.operators.python import BranchPythonOperator, ShortCircuitOperator\n"
        "from airflow.decorators import task\n"
        "with DAG('d') as d:\n"
        "    BranchPythonOperator(task_id='b', python_callable=lambda: 'x')\n"
        "    ShortCircuitOperator(task_id='s', python_callable=lambda: True)\n"
        "    ShortCircuitOperator(task_id='s2', python_callable=lambda: True,\n"
        "                         ignore_downstream_trigger_rules=False)\n"
        "    task.branch(lambda: 'x', task_id='tb')()\n"
        "    task.short_circuit(lambda: 1, task_id='ts')()\n"))
    modes = {t: (x.mode, getattr(x, "skip_all_downstream", None)) for t, x in d.tasks.items()}
    assert modes == {"b": ("branch", None), "s": ("short_circuit", True),
                     "s2": ("short_circuit", False), "tb": ("branch", None),
                     "ts": ("short_circuit", True)}


def test_other_task_kinds_are_refused(write_dag: WriteDag) -> None:
    _, failure = load_file(write_dag("v.py", (
        "from airflow.decorators import task\n"
        "@task.virtualenv(requirements=['x'])\n"
        "def f():\n"
        "    pass\n")))
    assert failure is not None and failure.line == 2
    assert "airflow.decorators.task.virtualenv" in failure.message


def test_doc_md_gives_the_description_the_ui_shows(write_dag: WriteDag) -> None:
    d = one_dag(write_dag, "doc_md='\\n# Daily sales\\n\\nLoads the sales.'")
    assert d.description == "Daily sales" and d.doc.startswith("\n# Daily sales")
    assert one_dag(write_dag, "description='mine', doc_md='# Other'").description == "mine"


def test_xcomarg_map_is_refused_with_what_instead(write_dag: WriteDag) -> None:
    _, failure = load_file(write_dag("m.py", (
        "from airflow.sdk import DAG, task\n"
        "with DAG('m'):\n"
        "    @task\n"
        "    def items():\n"
        "        return [1]\n"
        "    items().map(lambda x: x)\n")))
    assert failure is not None and failure.line == 6
    assert "XComArg.map is not supported" in failure.message and "expand()" in failure.message


def test_a_dag_functions_docstring_is_its_doc_md(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.decorators import dag\n"
        "@dag(schedule=None)\n"
        "def documented():\n"
        "    '''### The title\n\n    More words.'''\n"
        "    EmptyOperator(task_id='a')\n"
        "documented()\n"))
    assert d.doc == "### The title\n\nMore words." and d.description == "The title"


def test_a_branch_may_name_a_task_group(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.operators.python import BranchPythonOperator\n"
        "from airflow.utils.task_group import TaskGroup\n"
        "with DAG('d') as d:\n"
        "    pick = BranchPythonOperator(task_id='pick', python_callable=lambda: 'g')\n"
        "    with TaskGroup('g') as g:\n"
        "        EmptyOperator(task_id='one') >> EmptyOperator(task_id='two')\n"
        "        EmptyOperator(task_id='three')\n"
        "    other = EmptyOperator(task_id='other')\n"
        "    pick >> [g, other]\n"))
    pick = d.tasks["pick"]
    assert pick.result("g", {}) == ["g.one", "g.three"]
    assert pick.result("other", {}) == "other"
    assert pick.result(["g", "other"], {}) == ["g.one", "g.three", "other"]


def test_classic_operator_mapping_is_refused(write_dag: WriteDag) -> None:
    _, failure = load_file(write_dag("p.py", (
        "from airflow.sdk import DAG\n"
        "from airflow.operators.bash import BashOperator\n"
        "with DAG('p'):\n"
        "    BashOperator.partial(task_id='b').expand(bash_command=['a'])\n")))
    assert failure is not None and failure.line == 4
    assert "BashOperator.partial(...).expand(...)" in failure.message
    assert "@task.bash" in failure.message


def test_a_custom_operator_may_set_its_own_attributes(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.models.baseoperator import BaseOperator\n"
        "class Mine(BaseOperator):\n"
        "    template_fields = ('path',)\n"
        "    def __init__(self, path, **kwargs):\n"
        "        super().__init__(**kwargs)\n"
        "        self.path = path\n"
        "        self.params = {'p': 1}\n"
        "    def execute(self, context):\n"
        "        return self.path\n"
        "with DAG('d') as d:\n"
        "    Mine(task_id='m', path='{{ ds }}', retries=2, owner='me', pool='p') >> \\\n"
        "        EmptyOperator(task_id='e')\n"))
    mine = d.tasks["m"]
    assert mine.params == {"p": 1} and mine.retry_policy.retries == 2
    assert mine.runs_in_loop is False and d.tasks["e"].upstream_ids == {"m"}
    assert mine.describe()["operator"] == "Mine"


def test_doc_md_set_after_the_fact(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.operators.bash import BashOperator\n"
        "with DAG('d', schedule=timedelta(days=1), start_date=datetime(2021, 1, 1)) as d:\n"
        "    t1 = BashOperator(task_id='print_date', bash_command='date')\n"
        "    t1.doc_md = '#### Task docs'\n"
        "    d.doc_md = '### The DAG\\nmore'\n"))
    assert d.tasks["print_date"].doc == "#### Task docs"
    assert d.doc == "### The DAG\nmore" and d.description == "The DAG"
    assert d.describe()["doc_md"] == "### The DAG\nmore"


def test_each_task_is_handed_the_xcoms_of_all_tasks_before_it(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "with DAG('d') as d:\n"
        "    a, b, c, e = (EmptyOperator(task_id=x) for x in 'abce')\n"
        "    a >> b >> c\n"
        "    e >> c\n"))
    assert {t: x.xcom_sources for t, x in d.tasks.items()} == {
        "a": (), "b": ("a",), "c": ("a", "b", "e"), "e": ()}


def test_dagrun_timeout_bounds_the_run_as_in_airflow(write_dag: WriteDag) -> None:
    d = one_dag(write_dag, "schedule=None, dagrun_timeout=timedelta(minutes=5)")
    assert d.dagrun_timeout == 300.0


def test_an_xcomarg_as_text_is_airflows_pull_template(write_dag: WriteDag) -> None:
    d = load(write_dag, (
        "from airflow.models.xcom_arg import XComArg\n"
        "with DAG('d') as d:\n"
        "    a = EmptyOperator(task_id='a')\n"
        "    d.texts = [str(a.output), f'{XComArg(a, key=\"k\")}', str(a.output['x'])]\n"))
    pull = "task_instance.xcom_pull(task_ids='a', dag_id='d', key="
    assert d.texts == ["{{ " + pull + "'return_value') }}", "{{ " + pull + "'k') }}",
                       "{{ (" + pull + "'return_value'))['x'] }}"]
