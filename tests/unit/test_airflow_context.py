"""The Airflow context built from dagd's: a scheduled run's dates, run id and conf, a
manual run's, `ti.xcom_pull` over keys and lists, XCom packing, macros, the latest-only
rule, and templates with Airflow's names (in the sandbox)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dagd import Context
from dagd.compat.airflow.context import build, ds_add, ds_format, macros
from dagd.compat.airflow.dag import DAG
from dagd.compat.airflow.operators import EmptyOperator, is_latest
from dagd.compat.airflow.templates import Renderer
from dagd.compat.airflow.xcom import MARK, pack, unpack
from dagd.templating import TemplateRenderError
from dagd.triggers.timers import Cron, fire_conf

FIRE = datetime(2024, 3, 2, 0, 0, tzinfo=UTC)


def scheduled(**extra: Any) -> Context:
    timer = Cron("@daily")
    conf = fire_conf(timer, FIRE)
    return Context(dag_id="d", task_id="t", run_id=7, try_number=2, attempt_id=9,
                   logical_date=datetime.fromisoformat(conf["logical_date"]),
                   conf={**conf, **extra}, params={"p": 1})


def a_task(**dag_args: Any) -> EmptyOperator:
    with DAG("d", schedule="@daily", **dag_args):
        return EmptyOperator(task_id="t", params={"own": "x"})


def test_a_scheduled_runs_context() -> None:
    ctx = build(scheduled(extra=1), a_task())
    assert (ctx["ds"], ctx["ds_nodash"], ctx["ts"]) == (
        "2024-03-01", "20240301", "2024-03-01T00:00:00+00:00")
    assert ctx["ts_nodash"] == "20240301T000000"
    assert ctx["data_interval_start"] == datetime(2024, 3, 1, tzinfo=UTC)
    assert ctx["data_interval_end"] == FIRE
    assert ctx["logical_date"] == ctx["execution_date"] == datetime(2024, 3, 1, tzinfo=UTC)
    assert ctx["run_id"] == "scheduled__2024-03-01T00:00:00+00:00"
    assert ctx["dag_run"].conf == {"extra": 1}  # the timer's keys are dagd's, not Airflow's
    assert ctx["dag_run"].run_type == "scheduled" and not ctx["dag_run"].external_trigger
    assert ctx["params"] == {"p": 1, "own": "x", "extra": 1}  # the conf's keys too
    assert ctx["task_instance_key_str"] == "d__t__20240301"
    assert ctx["ti"].try_number == 2 and ctx["ti"] is ctx["task_instance"]
    assert (ctx["yesterday_ds"], ctx["tomorrow_ds"]) == ("2024-02-29", "2024-03-02")
    assert (ctx["yesterday_ds_nodash"], ctx["tomorrow_ds_nodash"]) == ("20240229", "20240302")
    # Airflow 2's deprecated next_* names: the end of the data interval
    assert (ctx["next_ds"], ctx["next_ds_nodash"]) == (
        FIRE.strftime("%Y-%m-%d"), FIRE.strftime("%Y%m%d"))
    assert ctx["next_execution_date"] == FIRE
    assert (ctx["prev_ds"], ctx["prev_execution_date"]) == (
        "2024-02-29", datetime(2024, 2, 29, tzinfo=UTC))  # the schedule's fire before


def test_a_manual_runs_context() -> None:
    when = datetime(2024, 5, 6, 7, 8, tzinfo=UTC)
    ctx = build(Context(dag_id="d", task_id="t", run_id=1, try_number=1, attempt_id=1,
                        logical_date=when, conf={"own": "from conf"}, params={}), a_task())
    assert ctx["run_id"] == "manual__2024-05-06T07:08:00+00:00"
    # As Airflow infers it for a daily DAG run by hand: the last whole day before it.
    assert (ctx["data_interval_start"], ctx["data_interval_end"]) == (
        datetime(2024, 5, 5, tzinfo=UTC), datetime(2024, 5, 6, tzinfo=UTC))
    assert ctx["logical_date"] == when and ctx["next_ds"] == "2024-05-06"
    assert (ctx["prev_ds"], ctx["prev_ds_nodash"]) == ("2024-05-06", "20240506")
    assert ctx["dag_run"].conf == {"own": "from conf"}
    assert ctx["params"] == {"own": "from conf"}  # the conf overrides a task's param


@pytest.mark.parametrize(("schedule", "start"), [
    (None, datetime(2024, 5, 6, 7, 8, tzinfo=UTC)),
    (timedelta(hours=6), datetime(2024, 5, 6, 1, 8, tzinfo=UTC)),
    ("0 */4 * * *", datetime(2024, 5, 6, tzinfo=UTC)),
])
def test_a_manual_runs_data_interval_follows_the_schedule(schedule: Any,
                                                          start: datetime) -> None:
    when = datetime(2024, 5, 6, 7, 8, tzinfo=UTC)
    with DAG("d", schedule=schedule, start_date=datetime(2024, 1, 1, tzinfo=UTC)):
        task = EmptyOperator(task_id="t")
    ctx = build(Context(dag_id="d", task_id="t", run_id=1, try_number=1, attempt_id=1,
                        logical_date=when), task)
    end = {None: when, "0 */4 * * *": datetime(2024, 5, 6, 4, tzinfo=UTC)}.get(
        schedule, when)
    assert (ctx["data_interval_start"], ctx["data_interval_end"]) == (start, end)


def test_xcom_pull_by_key_list_and_default() -> None:
    upstream = {"a": {MARK: {"return_value": 1, "k": "v"}}, "b": [1, 2], "c": {"x": 3}}
    ctx = build(Context(dag_id="d", task_id="t", run_id=1, try_number=1, attempt_id=1,
                        upstream=upstream), a_task())
    ti = ctx["ti"]
    assert ti.xcom_pull(task_ids="a") == 1
    assert ti.xcom_pull(task_ids="a", key="return_value") == 1
    assert ti.xcom_pull(task_ids="a", key="k") == "v"
    assert ti.xcom_pull(task_ids=["a", "b", "nope"]) == [1, [1, 2], None]
    assert ti.xcom_pull(task_ids="c", key="x") == 3  # multiple_outputs' keys
    assert ti.xcom_pull(task_ids="nope", default="d") == "d"
    ti.xcom_push("mine", 5)
    assert ti.xcom_pull(key="mine") == 5 and ti.pushed == {"mine": 5}


def test_pack_and_unpack() -> None:
    assert pack({"a": 1}, {}) == {"a": 1}
    assert pack(None, {"return_value": 3}) == 3
    packed = pack(2, {"k": [1]})
    assert packed == {MARK: {"k": [1], "return_value": 2}}
    assert (unpack(packed), unpack(packed, "k"), unpack(packed, "nope")) == (2, [1], None)
    assert unpack(None, "k") is None and unpack("text", "k") is None


def test_macros() -> None:
    assert ds_add("2024-02-28", 2) == "2024-03-01" and ds_add("2024-01-01", 0) == "2024-01-01"
    assert ds_format("2024-01-02", "%Y-%m-%d", "%d/%m/%Y") == "02/01/2024"
    assert macros.timedelta(days=1) == timedelta(days=1)


def test_latest_only() -> None:
    timer = Cron("@daily")
    ctx = scheduled()
    assert is_latest([timer], ctx, FIRE + timedelta(hours=1))
    assert not is_latest([timer], ctx, FIRE + timedelta(days=2))
    manual = Context(dag_id="d", task_id="t", run_id=1, try_number=1, attempt_id=1)
    assert is_latest([timer], manual, FIRE + timedelta(days=9))


def test_templates_with_airflow_names_macros_and_filters() -> None:
    task = a_task(user_defined_macros={"region": "eu"},
                  user_defined_filters={"up": str.upper})
    ctx = scheduled()
    r = Renderer(task, build(ctx, task), ctx)
    assert r.render("{{ ds }}|{{ macros.ds_add(ds, 1) }}|{{ region | up }}", "f") == \
        "2024-03-01|2024-03-02|EU"
    assert r.render({"k": ["{{ dag_run.run_type }}", 3]}, "f") == {"k": ["scheduled", 3]}
    assert r.render("{{ data_interval_end | ds_nodash }}", "f") == "20240302"
    assert r.render("{{ ti.task_id }} {{ params.own }}", "f") == "t x"


def test_templates_stay_in_the_sandbox() -> None:
    task = a_task()
    ctx = scheduled()
    r = Renderer(task, build(ctx, task), ctx)
    with pytest.raises(TemplateRenderError, match="sandbox"):
        r.render("{{ dag.__class__.__mro__ }}", "f")
    with pytest.raises(TemplateRenderError, match="undefined"):
        r.render("{{ nothing_here }}", "f")


def test_a_backfilled_runs_context() -> None:
    ctx = build(scheduled(backfill=True), a_task())
    assert ctx["run_id"] == "backfill__2024-03-01T00:00:00+00:00"
    assert ctx["dag_run"].run_type == "backfill" and ctx["dag_run"].conf == {}


def test_key_none_is_any_key() -> None:
    assert unpack({MARK: {"a": 1, "b": 2}}, None) == 2
    assert unpack({MARK: {"a": 1, "return_value": 0}}, None) == 0
    assert unpack([1], None) == [1]
