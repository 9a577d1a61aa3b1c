"""RetryPolicy: delays with backoff, cap and injected jitter; which failures are retried."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from dagd import DagDefinitionError, RetryPolicy
from dagd.retry import INFRASTRUCTURE_REASONS, MAX_INTERRUPTIONS, exception_names


class SourceUnavailable(ConnectionError):
    pass


class RateLimited(SourceUnavailable):
    pass


def delays(policy: RetryPolicy, tries: int) -> list[float]:
    return [policy.delay(n, rand=lambda: 0.5) for n in range(1, tries + 1)]


# -- delays ------------------------------------------------------------------------


def test_fixed_delay_without_backoff() -> None:
    policy = RetryPolicy.build(retries=4, retry_delay=10)
    assert delays(policy, 4) == [10.0, 10.0, 10.0, 10.0]


def test_exponential_backoff_doubles_each_try() -> None:
    policy = RetryPolicy.build(retries=5, retry_delay=1, retry_exponential_backoff=True)
    assert delays(policy, 5) == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_max_retry_delay_caps_the_backoff() -> None:
    policy = RetryPolicy.build(
        retries=6, retry_delay=1, retry_exponential_backoff=True, max_retry_delay=5
    )
    assert delays(policy, 6) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_max_retry_delay_caps_a_fixed_delay_too() -> None:
    policy = RetryPolicy.build(retries=1, retry_delay=600, max_retry_delay=60)
    assert policy.delay(1) == 60.0


def test_timedeltas_are_taken_as_seconds() -> None:
    policy = RetryPolicy.build(
        retries=1, retry_delay=timedelta(minutes=2), max_retry_delay=timedelta(hours=1)
    )
    assert (policy.retry_delay, policy.max_retry_delay) == (120.0, 3600.0)


def test_default_delay_is_five_minutes() -> None:
    assert RetryPolicy.build(retries=1).delay(1) == 300.0


def test_zero_delay_retries_at_once() -> None:
    policy = RetryPolicy.build(retries=2, retry_delay=0, retry_exponential_backoff=True)
    assert delays(policy, 2) == [0.0, 0.0]


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 5.0), (0.5, 10.0), (1.0, 15.0)])
def test_jitter_spreads_the_delay_by_the_fraction(rand: float, expected: float) -> None:
    policy = RetryPolicy.build(retries=1, retry_delay=10, jitter=0.5)
    assert policy.delay(1, rand=lambda: rand) == pytest.approx(expected)


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 20.0), (0.5, 40.0), (1.0, 60.0)])
def test_jitter_applies_after_backoff(rand: float, expected: float) -> None:
    policy = RetryPolicy.build(
        retries=3, retry_delay=10, retry_exponential_backoff=True, jitter=0.5
    )
    assert policy.delay(3, rand=lambda: rand) == pytest.approx(expected)


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 5.0), (0.5, 10.0), (1.0, 12.0)])
def test_jitter_never_exceeds_the_cap(rand: float, expected: float) -> None:
    policy = RetryPolicy.build(retries=1, retry_delay=10, jitter=0.5, max_retry_delay=12)
    assert policy.delay(1, rand=lambda: rand) == pytest.approx(expected)


def test_full_jitter_can_reach_zero_but_not_below() -> None:
    policy = RetryPolicy.build(retries=1, retry_delay=10, jitter=1.0)
    assert policy.delay(1, rand=lambda: 0.0) == 0.0
    assert policy.delay(1, rand=lambda: 1.0) == 20.0


def test_jittered_delays_stay_within_bounds_for_any_draw() -> None:
    rng = random.Random(1234)
    policy = RetryPolicy.build(retries=1, retry_delay=100, jitter=0.2)
    seen = [policy.delay(1, rand=rng.random) for _ in range(200)]
    assert all(80.0 <= s <= 120.0 for s in seen)
    assert len(set(seen)) > 1  # jitter actually varies the delay


def test_without_jitter_rand_is_not_consulted() -> None:
    def boom() -> float:
        raise AssertionError("rand called without jitter")

    assert RetryPolicy.build(retries=1, retry_delay=7).delay(1, rand=boom) == 7.0


# -- should_retry ----------------------------------------------------------------


def test_retries_count_extra_tries_after_the_first() -> None:
    policy = RetryPolicy.build(retries=2)
    assert policy.max_tries == 3
    assert [policy.should_retry(n, ["builtins.ValueError"]) for n in (1, 2, 3, 4)] == [
        True,
        True,
        False,
        False,
    ]


def test_no_retries_means_the_first_failure_is_final() -> None:
    policy = RetryPolicy.build()
    assert policy.max_tries == 1
    assert policy.should_retry(1, ["builtins.ValueError"]) is False
    # An interruption by dagd is not the task's failure: retried past its own tries.
    assert policy.should_retry(1, [], reason="daemon restarted") is True
    assert policy.should_retry(1 + MAX_INTERRUPTIONS, [], reason="daemon restarted") is False


def test_exception_names_list_the_class_and_its_bases() -> None:
    names = exception_names(RateLimited)
    assert names[0] == f"{__name__}.RateLimited"
    assert f"{__name__}.SourceUnavailable" in names
    assert "builtins.ConnectionError" in names
    assert "builtins.OSError" in names
    assert names[-1] == "builtins.object"


def test_retry_on_matches_the_listed_exception() -> None:
    policy = RetryPolicy.build(retries=3, retry_on=[SourceUnavailable])
    assert policy.retry_on == (f"{__name__}.SourceUnavailable",)
    assert policy.should_retry(1, exception_names(SourceUnavailable)) is True


def test_retry_on_matches_subclasses() -> None:
    policy = RetryPolicy.build(retries=3, retry_on=[SourceUnavailable])
    assert policy.should_retry(1, exception_names(RateLimited)) is True


def test_retry_on_refuses_other_exceptions_and_base_classes() -> None:
    policy = RetryPolicy.build(retries=3, retry_on=[SourceUnavailable])
    assert policy.should_retry(1, exception_names(ValueError)) is False
    # A base class of the listed one is not a match.
    assert policy.should_retry(1, exception_names(ConnectionError)) is False
    assert policy.should_retry(1, []) is False


def test_retry_on_accepts_one_class_or_several() -> None:
    single = RetryPolicy.build(retries=1, retry_on=KeyError)
    assert single.retry_on == ("builtins.KeyError",)
    several = RetryPolicy.build(retries=1, retry_on=(KeyError, TimeoutError))
    assert several.should_retry(1, exception_names(TimeoutError)) is True
    assert several.should_retry(1, exception_names(IndexError)) is False


def test_retry_on_still_respects_the_try_count() -> None:
    policy = RetryPolicy.build(retries=1, retry_on=[SourceUnavailable])
    assert policy.should_retry(2, exception_names(SourceUnavailable)) is False


def test_without_retry_on_every_exception_is_retried() -> None:
    policy = RetryPolicy.build(retries=1)
    assert policy.should_retry(1, exception_names(ZeroDivisionError)) is True
    assert policy.should_retry(1, []) is True


@pytest.mark.parametrize("reason", sorted(INFRASTRUCTURE_REASONS))
def test_infrastructure_reasons_are_retried_whatever_retry_on_says(reason: str) -> None:
    policy = RetryPolicy.build(retries=2, retry_on=[SourceUnavailable])
    assert policy.should_retry(1, [], reason=reason) is True
    assert policy.should_retry(2, exception_names(ValueError), reason=reason) is True
    assert policy.should_retry(3, [], reason=reason) is True
    assert policy.should_retry(3 + MAX_INTERRUPTIONS - 1, [], reason=reason) is True
    assert policy.should_retry(3 + MAX_INTERRUPTIONS, [], reason=reason) is False


def test_daemon_restarted_is_an_infrastructure_reason() -> None:
    assert "daemon restarted" in INFRASTRUCTURE_REASONS


def test_other_reasons_follow_retry_on() -> None:
    policy = RetryPolicy.build(retries=2, retry_on=[SourceUnavailable])
    assert policy.should_retry(1, [], reason="timed out") is False


# -- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": "3"}, "retries"),
        ({"retry_delay": -0.5}, "retry_delay"),
        ({"max_retry_delay": -1}, "max_retry_delay"),
        ({"jitter": 2}, "jitter"),
        ({"jitter": -0.5}, "jitter"),
        ({"retry_on": [int]}, "retry_on"),
        ({"retry_on": "ValueError"}, "retry_on"),
    ],
)
def test_build_refuses_bad_settings_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(DagDefinitionError) as info:
        RetryPolicy.build(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in info.value.message
