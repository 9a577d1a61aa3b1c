"""Retention's rules, pure: what [retention] prunes, and how a pass is cut into
transactions of at most `batch_size` rows."""

from __future__ import annotations

import pytest

from dagd.config import Settings
from dagd.errors import NotFound
from dagd.scheduler.retention import DAY, Candidate, Holds, Policy, Report, prunable, transactions

NOW = 1_900_000_000.0


def run(id: int, state: str = "success", ended_at: float | None = NOW - 10 * DAY,
        rows: int = 10) -> Candidate:
    return Candidate(id, "etl", state, ended_at, rows)


def test_the_defaults_keep_everything() -> None:
    policy = Policy.of(Settings())
    assert not policy.enabled
    assert policy.cutoff(NOW) is None
    assert (policy.interval, policy.batch_size) == (300.0, 500)


def test_an_age_or_a_count_turns_it_on_and_the_age_gives_the_cutoff() -> None:
    assert Policy(max_runs_per_dag=5).enabled
    assert Policy(max_runs_per_dag=5).cutoff(NOW) is None
    aged = Policy(max_age_days=1.5)
    assert aged.enabled and aged.cutoff(NOW) == NOW - 1.5 * DAY


@pytest.mark.parametrize("state", ["queued", "running"])
def test_a_run_that_is_not_finished_is_never_pruned(state: str) -> None:
    assert not prunable(run(1, state), cutoff=NOW, beyond_count=True)
    assert not prunable(run(1, state), cutoff=NOW, beyond_count=False)


def test_a_finished_run_goes_when_it_is_old_or_beyond_its_dags_count() -> None:
    cutoff = NOW - 5 * DAY
    assert prunable(run(1, "success"), cutoff=cutoff, beyond_count=False)
    assert prunable(run(1, "failed"), cutoff=cutoff, beyond_count=False)
    young = run(1, ended_at=NOW - DAY)
    assert not prunable(young, cutoff=cutoff, beyond_count=False)
    assert prunable(young, cutoff=cutoff, beyond_count=True)  # past the newest N
    assert not prunable(run(1, ended_at=None), cutoff=cutoff, beyond_count=False)
    assert not prunable(run(1), cutoff=None, beyond_count=False)  # no age limit


def test_transactions_hold_at_most_batch_size_rows_and_a_big_run_goes_alone() -> None:
    runs = [run(1, rows=4), run(2, rows=4), run(3, rows=3), run(4, rows=12), run(5, rows=1)]
    groups = [[c.id for c in g] for g in transactions(runs, 10)]
    assert groups == [[1, 2], [3], [4], [5]]
    assert [[c.id for c in g] for g in transactions(runs, 1000)] == [[1, 2, 3, 4, 5]]
    assert list(transactions([], 10)) == []


def test_a_pass_reports_its_counts_in_one_line() -> None:
    report = Report()
    assert not report
    report.add({"runs": 3, "task_instances": 6, "xcoms": 0}, seconds=0.004, newest=NOW - 5)
    report.add({"events": 2}, seconds=0.002, newest=NOW - 9)
    report.seconds = 0.5
    assert report and report.transactions == 2
    assert (report.longest, report.newest) == (0.004, NOW - 5)
    assert report.line() == ("retention: pruned 3 runs, 6 task instances, 2 events in 2 "
                             "transaction(s), 0.50 s (longest 4.0 ms)")


def test_an_action_and_a_pruning_never_hold_the_same_run() -> None:
    holds = Holds()
    with holds.acting_on(7), holds.acting_on(7):
        with holds.pruning_runs([6, 7, 8]) as free:
            assert free == [6, 8]  # 7 is an action's: left for the next pass
            with pytest.raises(NotFound, match="run 6: it is being pruned"):
                with holds.acting_on(6):
                    pass
        assert holds.pruning == frozenset()
    assert not holds.acting
    with holds.pruning_runs([7]) as free:
        assert free == [7]
