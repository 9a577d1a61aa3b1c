"""A DAG's `end_date`, Airflow's meaning: its timers fire no run whose logical date (the
start of the run's data interval) is after it. The timer maths with instants passed in,
the DAG argument (dagd's and Airflow's, in default_args too) and the trigger service's
view of a timer that has ended."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dagd.authoring.dag import DAG
from dagd.authoring.loader import load_file
from dagd.errors import DagDefinitionError
from dagd.triggers.service import TimerSpec, timer_specs
from dagd.triggers.timers import Cron, Interval, past_end

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
END = T0 + timedelta(minutes=30)


@pytest.mark.parametrize(("fire", "expected"), [
    (T0 + timedelta(minutes=15), False),  # dated T0
    (T0 + timedelta(minutes=45), False),  # dated END itself: still a run
    (T0 + timedelta(minutes=60), True),   # dated after END
])
def test_an_interval_fires_no_run_dated_after_the_end_date(fire: datetime,
                                                           expected: bool) -> None:
    assert past_end(Interval(minutes=15), fire, END) is expected


def test_a_cron_run_is_dated_by_its_interval_start_not_its_fire_time() -> None:
    nightly = Cron("0 2 * * *", timezone="Europe/Paris")
    end = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)  # Nov 3, 02:00 Paris
    assert past_end(nightly, datetime(2026, 11, 4, 1, 0, tzinfo=UTC), end) is False
    assert past_end(nightly, datetime(2026, 11, 5, 1, 0, tzinfo=UTC), end) is True


def test_no_end_date_ends_nothing() -> None:
    assert past_end(Interval(minutes=15), datetime(9000, 1, 1, tzinfo=UTC), None) is False


def test_a_naive_end_date_is_refused_by_the_timer_maths() -> None:
    with pytest.raises(ValueError, match="end_date must be timezone-aware"):
        past_end(Interval(minutes=15), T0, datetime(2026, 1, 1))


def test_a_dagd_dag_takes_an_aware_end_date_and_describes_it() -> None:
    d = DAG("ending", schedule=timedelta(minutes=15), end_date=END)
    assert d.end_date == END
    assert d.describe()["end_date"] == END.isoformat()
    assert DAG("open").describe()["end_date"] is None


@pytest.mark.parametrize("bad", [datetime(2026, 1, 1), "2026-01-01", 5])
def test_a_dagd_dag_refuses_an_end_date_that_is_not_an_aware_datetime(bad: object) -> None:
    with pytest.raises(DagDefinitionError, match="end_date must be a timezone-aware") as e:
        DAG("ending", end_date=bad)  # type: ignore[arg-type]
    assert e.value.field == "end_date"


def test_the_trigger_service_sees_a_timer_end_with_its_dag() -> None:
    d = DAG("ending", schedule=timedelta(minutes=15), end_date=END)
    [spec] = timer_specs({"ending": d})
    assert spec.end_date == END
    assert spec.next_fire(T0 + timedelta(minutes=30)) == T0 + timedelta(minutes=45)
    assert spec.next_fire(T0 + timedelta(minutes=45)) is None  # ended: sleep, not poll
    assert TimerSpec("x", Interval(minutes=15), catchup=False).next_fire(T0) == T0 + \
        timedelta(minutes=15)


@pytest.mark.parametrize("where", [
    "DAG('d', schedule='@daily', start_date=datetime(2026, 1, 1), end_date={end})",
    "DAG('d', schedule='@daily', default_args={{'start_date': datetime(2026, 1, 1), "
    "'end_date': {end}}})",
])
def test_an_airflow_end_date_maps_naive_as_utc_and_from_default_args(
    write_dag: Callable[[str, str], Path], where: str,
) -> None:
    source = ("from datetime import datetime\nfrom airflow import DAG\n"
              "from airflow.operators.empty import EmptyOperator\n"
              f"with {where.format(end='datetime(2026, 3, 1)')}:\n"
              "    EmptyOperator(task_id='a')\n")
    dags, failure = load_file(write_dag("d.py", source))
    assert failure is None, failure.message
    assert dags[0].end_date == datetime(2026, 3, 1, tzinfo=UTC)
