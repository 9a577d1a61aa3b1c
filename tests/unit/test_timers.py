"""Timer maths: cron and interval fire times, data intervals, what is due, and DST."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dagd.errors import DagDefinitionError
from dagd.triggers.timers import Cron, Interval, Timer, schedule_to_trigger

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def at(text: str) -> datetime:
    """An aware instant from ISO text with its offset: at("2026-03-29T03:00+02:00")."""
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, text
    return value


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def fires(timer: Timer, start: str, end: str, limit: int = 1000) -> list[datetime]:
    result = timer.fires_between(at(start), at(end), limit)
    assert all(f.tzinfo is UTC for f in result), "fire times come out in UTC"
    return result


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "timezone", "words"),
    [
        ("61 * * * *", "UTC", ["invalid cron expression '61 * * * *'", "out of range"]),
        ("*/0 * * * *", "UTC", ["invalid cron expression '*/0 * * * *'"]),
        ("a b c d e", "UTC", ["invalid cron expression 'a b c d e'"]),
        ("* * *", "UTC", ["'* * *' has 3 fields", "expected 5"]),
        ("* * * * * * *", "UTC", ["has 7 fields"]),
        ("", "UTC", ["'' has 0 fields"]),
        ("@reboot", "UTC", ["unknown cron alias '@reboot'", "@daily"]),
        ("H * * * *", "UTC", ["'H * * * *'", "hashed (H) or random (R)"]),
        ("R 2 * * *", "UTC", ["'R 2 * * *'", "random (R)"]),
        ("0 0 30 2 *", "UTC", ["'0 0 30 2 *' never fires"]),
        ("0 2 * * *", "Mars/Olympus", ["unknown timezone 'Mars/Olympus'"]),
        ("0 2 * * *", "Europe", ["unknown timezone 'Europe'"]),  # a folder of zones
        ("0 2 * * *", "../etc/passwd", ["unknown timezone '../etc/passwd'"]),
        ("0 2 * * *", "", ["timezone must be an IANA name"]),
    ],
)
def test_a_bad_cron_is_refused_at_construction_naming_it(
    expression: str, timezone: str, words: list[str]
) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        Cron(expression, timezone=timezone)
    assert caught.value.field == "schedule"
    for word in words:
        assert word in caught.value.message


def test_a_cron_must_be_a_string() -> None:
    with pytest.raises(DagDefinitionError, match="must be a string, got int"):
        Cron(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("expression", ["0 9 * MAR THU", "0 9 * * FRI", "0 9 * * SAT,SUN"])
def test_names_with_h_or_r_in_them_are_not_mistaken_for_hashed_fields(expression: str) -> None:
    Cron(expression)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "interval must be longer than zero"),
        ({"seconds": 0, "days": 0}, "interval must be longer than zero"),
        ({"seconds": -5}, "interval seconds must be a number >= 0, got -5"),
        ({"hours": 1, "minutes": -30}, "interval minutes must be a number >= 0"),
        ({"minutes": float("nan")}, "interval minutes must be a number >= 0, got nan"),
        ({"hours": True}, "interval hours must be a number >= 0, got True"),
        ({"hours": "1"}, "interval hours must be a number >= 0, got '1'"),
        ({"days": 10**12}, "interval is too long"),
        ({"hours": 1, "start": datetime(2026, 1, 1)}, "start must be a timezone-aware datetime"),
    ],
)
def test_a_bad_interval_is_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        Interval(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == "schedule"
    assert words in caught.value.message


def test_naive_instants_are_refused_rather_than_guessed() -> None:
    naive = datetime(2026, 5, 13, 10, 0)
    for timer in (Cron("0 * * * *"), Interval(hours=1)):
        with pytest.raises(ValueError, match="after must be timezone-aware"):
            timer.next_fire(naive)
        with pytest.raises(ValueError, match="end must be timezone-aware"):
            timer.fires_between(utc(2026, 5, 13), naive, 10)
        with pytest.raises(ValueError, match="fire must be timezone-aware"):
            timer.data_interval(naive)
        with pytest.raises(ValueError, match="limit must be >= 0"):
            timer.fires_between(utc(2026, 5, 13), utc(2026, 5, 14), -1)


# -- cron: aliases, fields, seconds -------------------------------------------------------

WEDNESDAY = "2026-05-13T10:20:00+00:00"


@pytest.mark.parametrize(
    ("expression", "first", "same_as"),
    [
        ("@hourly", "2026-05-13T11:00:00+00:00", "0 * * * *"),
        ("@daily", "2026-05-14T00:00:00+00:00", "0 0 * * *"),
        ("@midnight", "2026-05-14T00:00:00+00:00", "0 0 * * *"),
        ("@weekly", "2026-05-17T00:00:00+00:00", "0 0 * * 0"),  # the next Sunday
        ("@monthly", "2026-06-01T00:00:00+00:00", "0 0 1 * *"),
        ("@yearly", "2027-01-01T00:00:00+00:00", "0 0 1 1 *"),
        ("@annually", "2027-01-01T00:00:00+00:00", "0 0 1 1 *"),
        ("  @Daily ", "2026-05-14T00:00:00+00:00", "0 0 * * *"),
    ],
)
def test_aliases(expression: str, first: str, same_as: str) -> None:
    cron = Cron(expression)
    assert cron.next_fire(at(WEDNESDAY)) == at(first)
    years = (WEDNESDAY, "2031-01-01T00:00:00+00:00")
    assert fires(cron, *years, limit=5) == fires(Cron(same_as), *years, limit=5)


@pytest.mark.parametrize(
    ("expression", "start", "end", "expected"),
    [
        # Six fields: seconds FIRST.
        (
            "*/2 * * * * *",
            "2026-05-13T10:00:00+00:00",
            "2026-05-13T10:00:07+00:00",
            ["2026-05-13T10:00:02+00:00", "2026-05-13T10:00:04+00:00",
             "2026-05-13T10:00:06+00:00"],
        ),
        (
            "15 * * * * *",
            "2026-05-13T10:00:00+00:00",
            "2026-05-13T10:02:59+00:00",
            ["2026-05-13T10:00:15+00:00", "2026-05-13T10:01:15+00:00",
             "2026-05-13T10:02:15+00:00"],
        ),
        (
            "0 */2 * * * *",  # every 2 minutes at second 0, not every second of even minutes
            "2026-05-13T10:00:00+00:00",
            "2026-05-13T10:06:00+00:00",
            ["2026-05-13T10:02:00+00:00", "2026-05-13T10:04:00+00:00",
             "2026-05-13T10:06:00+00:00"],
        ),
        (
            "0 30 9 * * MON-FRI",
            "2026-05-15T00:00:00+00:00",  # a Friday
            "2026-05-19T23:00:00+00:00",
            ["2026-05-15T09:30:00+00:00", "2026-05-18T09:30:00+00:00",
             "2026-05-19T09:30:00+00:00"],
        ),
        (
            "0,30 9 * * *",
            "2026-05-13T09:00:00+00:00",  # start is exclusive
            "2026-05-14T09:00:00+00:00",  # end is inclusive
            ["2026-05-13T09:30:00+00:00", "2026-05-14T09:00:00+00:00"],
        ),
        (
            "0 9 * * *",
            "2026-05-13T08:00:00+00:00",
            "2026-05-14T08:00:00+00:00",
            ["2026-05-13T09:00:00+00:00"],
        ),
        (
            "0 9 * * *",  # 09:00 in Paris is 07:00 UTC in summer
            "2026-05-13T00:00:00+02:00",
            "2026-05-14T00:00:00+02:00",
            ["2026-05-13T07:00:00+00:00"],
        ),
    ],
)
def test_cron_fire_times(expression: str, start: str, end: str, expected: list[str]) -> None:
    zone = PARIS if start.endswith("+02:00") else "UTC"
    assert fires(Cron(expression, zone), start, end) == [at(e) for e in expected]


def test_a_cron_is_a_frozen_hashable_value() -> None:
    cron = Cron(" 0  2 * * * ", PARIS)
    assert cron.expression == "0 2 * * *"
    assert cron == Cron("0 2 * * *", timezone=PARIS)
    assert cron != Cron("0 2 * * *")
    assert len({cron, Cron("0 2 * * *", PARIS)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cron.timezone = "UTC"  # type: ignore[misc]


def test_next_fire_is_strictly_after_even_by_a_microsecond() -> None:
    cron = Cron("* * * * * *")
    assert cron.next_fire(utc(2026, 5, 13, 10, 0, 0)) == utc(2026, 5, 13, 10, 0, 1)
    just_after = utc(2026, 5, 13, 10, 0, 0) + timedelta(microseconds=1)
    assert cron.next_fire(just_after) == utc(2026, 5, 13, 10, 0, 1)
    just_before = utc(2026, 5, 13, 10, 0, 1) - timedelta(microseconds=1)
    assert cron.next_fire(just_before) == utc(2026, 5, 13, 10, 0, 1)


def test_input_in_any_timezone_output_in_utc() -> None:
    cron = Cron("0 9 * * *", "Asia/Tokyo")
    after = datetime(2026, 5, 13, 8, 0, tzinfo=ZoneInfo(NEW_YORK))  # 21:00 in Tokyo
    fire = cron.next_fire(after)
    assert fire == at("2026-05-14T09:00:00+09:00")
    assert fire.tzinfo is UTC


# -- interval -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "after", "expected"),
    [
        (Interval(hours=1), "2026-05-13T10:20:30+00:00", "2026-05-13T11:00:00+00:00"),
        (Interval(hours=1), "2026-05-13T10:00:00+00:00", "2026-05-13T11:00:00+00:00"),
        (Interval(hours=1), "2026-05-13T12:20:30+02:00", "2026-05-13T11:00:00+00:00"),
        (Interval(minutes=15), "2026-05-13T10:44:59+00:00", "2026-05-13T10:45:00+00:00"),
        (Interval(seconds=1), "2026-05-13T10:00:00.5+00:00", "2026-05-13T10:00:01+00:00"),
        (Interval(seconds=7), "1970-01-01T00:00:20+00:00", "1970-01-01T00:00:21+00:00"),
        (Interval(seconds=7), "1969-12-31T23:59:55+00:00", "1970-01-01T00:00:00+00:00"),
        # 2026-01-01 is 327264 periods of 90 minutes after the epoch.
        (Interval(minutes=90), "2026-01-01T00:00:00+00:00", "2026-01-01T01:30:00+00:00"),
        (Interval(days=1, hours=2, minutes=3, seconds=4), "1970-01-01T00:00:00+00:00",
         "1970-01-02T02:03:04+00:00"),
        # The anchor sets the phase; fire times exist before it too.
        (Interval(hours=6, start=at("2026-01-01T01:30:00+00:00")),
         "2025-12-31T18:00:00+00:00", "2025-12-31T19:30:00+00:00"),
        # Elapsed time: the daily 06:00 (CET) fire is at 07:00 CEST after spring forward.
        (Interval(days=1, start=at("2026-01-01T06:00:00+01:00")),
         "2026-03-30T00:00:00+00:00", "2026-03-30T07:00:00+02:00"),
    ],
)
def test_interval_fires_on_a_lattice_anchored_at_start(
    interval: Interval, after: str, expected: str
) -> None:
    fire = interval.next_fire(at(after))
    assert fire == at(expected)
    assert fire.tzinfo is UTC


def test_interval_fire_times_are_stable_across_restarts() -> None:
    # Two processes started at different moments agree on the fire times.
    window = ("2026-05-13T10:00:00+00:00", "2026-05-13T10:05:00+00:00")
    first = fires(Interval(minutes=2), *window)
    again = Interval(minutes=2).fires_between(at("2026-05-13T10:01:17+00:00"),
                                              at(window[1]), 10)
    assert first == [utc(2026, 5, 13, 10, 2), utc(2026, 5, 13, 10, 4)]
    assert again == first


def test_intervals_compare_by_period_and_anchor() -> None:
    assert Interval(hours=1) == Interval(minutes=60) == Interval(seconds=3600)
    assert hash(Interval(hours=1)) == hash(Interval(minutes=60))
    assert Interval(hours=1) != Interval(hours=1, start=at("2026-01-01T00:30:00+00:00"))
    same_instant = at("2026-01-01T01:30:00+01:00")
    assert Interval(hours=1, start=same_instant) == Interval(
        hours=1, start=at("2026-01-01T00:30:00+00:00")
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        Interval(hours=1).hours = 2  # type: ignore[misc]


# -- data intervals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timer", "fire", "start"),
    [
        (Cron("@daily"), "2026-05-14T00:00:00+00:00", "2026-05-13T00:00:00+00:00"),
        (Cron("0 * * * *"), "2026-05-14T00:00:00+00:00", "2026-05-13T23:00:00+00:00"),
        (Cron("0 9 * * MON-FRI"), "2026-05-18T09:00:00+00:00", "2026-05-15T09:00:00+00:00"),
        (Cron("*/2 * * * * *"), "2026-05-14T00:00:00+00:00", "2026-05-13T23:59:58+00:00"),
        (Cron("@monthly"), "2026-03-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"),
        # A fire time between two others: the interval starts at the previous one.
        (Cron("0 9 * * *"), "2026-05-14T09:00:00+00:00", "2026-05-13T09:00:00+00:00"),
        # Not a fire time (a manual run): from the last fire before it.
        (Cron("0 * * * *"), "2026-05-14T10:20:00+00:00", "2026-05-14T10:00:00+00:00"),
        # Across spring forward the Paris day is 23 hours long, and the interval too.
        (Cron("0 0 * * *", PARIS), "2026-03-30T00:00:00+02:00", "2026-03-29T00:00:00+01:00"),
        (Cron("0 2 * * *", PARIS), "2026-03-29T03:00:00+02:00", "2026-03-28T02:00:00+01:00"),
        (Cron("0 2 * * *", PARIS), "2026-03-30T02:00:00+02:00", "2026-03-29T03:00:00+02:00"),
        # Across fall back: the second 02:30 covers the hour since the first one.
        (Cron("30 * * * *", PARIS), "2026-10-25T02:30:00+01:00", "2026-10-25T02:30:00+02:00"),
        (Cron("30 * * * *", PARIS), "2026-10-25T03:30:00+01:00", "2026-10-25T02:30:00+01:00"),
        (Cron("0 2 * * *", PARIS), "2026-10-26T02:00:00+01:00", "2026-10-25T02:00:00+02:00"),
        (Interval(hours=1), "2026-05-14T00:00:00+00:00", "2026-05-13T23:00:00+00:00"),
        (Interval(days=1), "2026-05-14T00:00:00+00:00", "2026-05-13T00:00:00+00:00"),
        (Interval(seconds=1), "2026-05-14T00:00:00+00:00", "2026-05-13T23:59:59+00:00"),
        (Interval(hours=1), "2026-05-14T00:20:00+00:00", "2026-05-14T00:00:00+00:00"),
    ],
)
def test_data_interval_runs_from_the_previous_fire(timer: Timer, fire: str, start: str) -> None:
    begin, end = timer.data_interval(at(fire))
    assert (begin, end) == (at(start), at(fire))
    assert begin.tzinfo is UTC and end.tzinfo is UTC


# -- DST ----------------------------------------------------------------------------------

DST_CASES = [
    pytest.param(
        "0 2 * * *", PARIS, "2026-03-27T12:00:00+01:00", "2026-03-30T12:00:00+02:00",
        # 02:00 does not exist on the 29th: the run happens once, when the gap ends.
        ["2026-03-28T02:00:00+01:00", "2026-03-29T03:00:00+02:00",
         "2026-03-30T02:00:00+02:00"],
        id="paris-spring-daily-0200-once-at-0300",
    ),
    pytest.param(
        "30 2 * * *", PARIS, "2026-03-28T12:00:00+01:00", "2026-03-30T12:00:00+02:00",
        # Not 03:30 (shifted by the gap): 03:00, the first instant after it (as croniter).
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        id="paris-spring-daily-0230-once-at-0300",
    ),
    pytest.param(
        "*/15 2 * * *", PARIS, "2026-03-29T00:00:00+01:00", "2026-03-29T23:00:00+02:00",
        # Four skipped times fold into a single fire.
        ["2026-03-29T03:00:00+02:00"],
        id="paris-spring-fixed-hour-every-15-min-once",
    ),
    pytest.param(
        "30 * * * *", PARIS, "2026-03-29T00:00:00+01:00", "2026-03-29T04:00:00+02:00",
        # An hourly schedule has nothing in the hour that did not happen.
        ["2026-03-29T00:30:00+01:00", "2026-03-29T01:30:00+01:00",
         "2026-03-29T03:30:00+02:00"],
        id="paris-spring-hourly-skips-missing-hour",
    ),
    pytest.param(
        "0 2 * * *", PARIS, "2026-10-24T12:00:00+02:00", "2026-10-26T12:00:00+01:00",
        # 02:00 happens twice on the 25th: the run happens once, at the first.
        ["2026-10-25T02:00:00+02:00", "2026-10-26T02:00:00+01:00"],
        id="paris-fall-daily-0200-once",
    ),
    pytest.param(
        "*/30 2 * * *", PARIS, "2026-10-25T00:00:00+02:00", "2026-10-25T12:00:00+01:00",
        ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00"],
        id="paris-fall-fixed-hour-first-pass-only",
    ),
    pytest.param(
        "30 * * * *", PARIS, "2026-10-25T01:00:00+02:00", "2026-10-25T04:00:00+01:00",
        # The two 02:30s are different instants, an hour apart: both fire.
        ["2026-10-25T01:30:00+02:00", "2026-10-25T02:30:00+02:00",
         "2026-10-25T02:30:00+01:00", "2026-10-25T03:30:00+01:00"],
        id="paris-fall-hourly-fires-both-0230",
    ),
    pytest.param(
        "*/20 * * * *", PARIS, "2026-10-25T01:50:00+02:00", "2026-10-25T03:00:00+01:00",
        ["2026-10-25T02:00:00+02:00", "2026-10-25T02:20:00+02:00",
         "2026-10-25T02:40:00+02:00", "2026-10-25T02:00:00+01:00",
         "2026-10-25T02:20:00+01:00", "2026-10-25T02:40:00+01:00",
         "2026-10-25T03:00:00+01:00"],
        id="paris-fall-every-20-min-keeps-real-spacing",
    ),
    pytest.param(
        "0 2 * * *", NEW_YORK, "2026-03-07T12:00:00-05:00", "2026-03-09T12:00:00-04:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"],
        id="new-york-spring-daily-0200-once-at-0300",
    ),
    pytest.param(
        "0 * * * *", NEW_YORK, "2026-03-08T00:30:00-05:00", "2026-03-08T04:00:00-04:00",
        ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00",
         "2026-03-08T04:00:00-04:00"],
        id="new-york-spring-hourly-skips-missing-hour",
    ),
    pytest.param(
        "30 1 * * *", NEW_YORK, "2026-10-31T12:00:00-04:00", "2026-11-02T12:00:00-05:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        id="new-york-fall-daily-0130-once",
    ),
    pytest.param(
        "0 * * * *", NEW_YORK, "2026-11-01T00:30:00-04:00", "2026-11-01T03:00:00-05:00",
        ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00",
         "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"],
        id="new-york-fall-hourly-fires-both-0100",
    ),
    pytest.param(
        "*/2 * * * * *", PARIS, "2026-10-25T02:59:56+02:00", "2026-10-25T02:00:04+01:00",
        ["2026-10-25T02:59:58+02:00", "2026-10-25T02:00:00+01:00",
         "2026-10-25T02:00:02+01:00", "2026-10-25T02:00:04+01:00"],
        id="paris-fall-every-2-seconds-through-the-jump",
    ),
    pytest.param(
        "*/2 * * * * *", PARIS, "2026-03-29T01:59:56+01:00", "2026-03-29T03:00:02+02:00",
        ["2026-03-29T01:59:58+01:00", "2026-03-29T03:00:00+02:00",
         "2026-03-29T03:00:02+02:00"],
        id="paris-spring-every-2-seconds-through-the-jump",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "start", "end", "expected"), DST_CASES)
def test_dst(expression: str, zone: str, start: str, end: str, expected: list[str]) -> None:
    cron = Cron(expression, zone)
    got = fires(cron, start, end)
    assert got == [at(e) for e in expected]
    # Walking backwards gives the same fire times.
    assert [cron.prev_fire(b) for b in got[1:]] == got[:-1]


@pytest.mark.parametrize(
    ("expression", "zone", "day", "count"),
    [
        ("0 2 * * *", PARIS, "2026-03-29", 1),
        ("0 2 * * *", PARIS, "2026-10-25", 1),
        ("30 2 * * *", NEW_YORK, "2026-03-08", 1),
        ("30 1 * * *", NEW_YORK, "2026-11-01", 1),
        ("30 * * * *", PARIS, "2026-03-29", 23),  # the day has 23 hours
        ("30 * * * *", PARIS, "2026-10-25", 25),  # and this one 25
        ("0 * * * *", NEW_YORK, "2026-03-08", 23),
        ("0 * * * *", NEW_YORK, "2026-11-01", 25),
    ],
)
def test_runs_per_local_day_on_dst_days(expression: str, zone: str, day: str, count: int) -> None:
    tz = ZoneInfo(zone)
    midnight = datetime.fromisoformat(day).replace(tzinfo=tz)
    next_midnight = (midnight.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
    tiny = timedelta(microseconds=1)
    # Fire times in [midnight, next midnight) local.
    got = Cron(expression, zone).fires_between(midnight - tiny, next_midnight - tiny, 100)
    assert len(got) == len(set(got)) == count


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # From inside the second 02:00-03:00 of 2026-10-25: 02:00 has fired already.
        ("0 2 * * *", "2026-10-25T02:30:00+01:00", "2026-10-26T02:00:00+01:00"),
        ("0 2 * * *", "2026-10-25T02:00:00+02:00", "2026-10-26T02:00:00+01:00"),
        ("0 2 * * *", "2026-10-25T01:59:59+02:00", "2026-10-25T02:00:00+02:00"),
        ("30 * * * *", "2026-10-25T02:45:00+02:00", "2026-10-25T02:30:00+01:00"),
        ("30 * * * *", "2026-10-25T02:15:00+01:00", "2026-10-25T02:30:00+01:00"),
        ("30 * * * *", "2026-10-25T02:45:00+01:00", "2026-10-25T03:30:00+01:00"),
        ("0 * * * *", "2026-10-25T02:10:00+02:00", "2026-10-25T03:00:00+02:00"),
        ("0 * * * *", "2026-10-25T02:10:00+01:00", "2026-10-25T03:00:00+01:00"),
        # Spring forward, from just before the gap.
        ("0 2 * * *", "2026-03-29T01:59:59+01:00", "2026-03-29T03:00:00+02:00"),
        ("30 * * * *", "2026-03-29T01:45:00+01:00", "2026-03-29T03:30:00+02:00"),
    ],
)
def test_next_fire_from_around_the_jumps(expression: str, after: str, expected: str) -> None:
    assert Cron(expression, PARIS).next_fire(at(after)) == at(expected)


# -- fires_between and due ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "limit", "expected"),
    [
        ("10:00:00", "10:03:00", 10, ["10:01:00", "10:02:00", "10:03:00"]),  # (start, end]
        ("09:59:59", "10:02:00", 10, ["10:00:00", "10:01:00", "10:02:00"]),
        ("10:00:00", "10:02:59", 10, ["10:01:00", "10:02:00"]),
        ("10:00:00", "10:10:00", 2, ["10:01:00", "10:02:00"]),  # capped, oldest first
        ("10:00:00", "10:10:00", 0, []),
        ("10:00:00", "10:00:00", 10, []),
        ("10:00:00", "10:00:59", 10, []),
        ("10:05:00", "10:00:00", 10, []),  # end before start
    ],
)
def test_fires_between_bounds_and_limit(
    start: str, end: str, limit: int, expected: list[str]
) -> None:
    def day(clock: str) -> datetime:
        return at(f"2026-05-13T{clock}+00:00")

    for timer in (Cron("* * * * *"), Interval(minutes=1)):
        assert timer.fires_between(day(start), day(end), limit) == [day(e) for e in expected]


@pytest.mark.parametrize(
    ("timer", "start", "end"),
    [
        (Cron("*/2 * * * * *", PARIS), "2026-10-25T02:50:00+02:00", "2026-10-25T02:10:00+01:00"),
        (Interval(seconds=1), "2026-10-25T00:50:00+00:00", "2026-10-25T01:10:00+00:00"),
        (Cron("30 * * * *", PARIS), "2026-10-25T00:00:00+02:00", "2026-10-25T06:00:00+01:00"),
        (Cron("0 2 * * *", NEW_YORK), "2026-03-01T00:00:00-05:00", "2026-03-15T00:00:00-04:00"),
    ],
    ids=repr,
)
def test_due_never_repeats_or_skips_a_fire(timer: Timer, start: str, end: str) -> None:
    # A caller that stores the last fire it acted on, polled at uneven moments (one of
    # them after the clock was set back), with a small cap, sees each fire exactly once.
    first, last_poll = at(start), at(end)
    expected = timer.fires_between(first, last_poll, 100_000)
    span = last_poll - first
    polls = [first + span * f for f in (0, 0.01, 0.01, 0.005, 0.2, 0.5, 0.45, 0.9, 1, 1)]
    last = first
    seen: list[datetime] = []
    for now in polls:
        while batch := timer.due(last, now, 3):
            assert all(last < f <= now for f in batch)
            seen.extend(batch)
            last = batch[-1]
    assert seen == expected
    assert len(expected) >= 4


def test_due_with_no_last_fire_starts_from_now() -> None:
    cron = Cron("0 * * * *")
    now = utc(2026, 5, 13, 10, 20)
    assert cron.due(None, now, 10) == []
    assert cron.due(utc(2026, 5, 13, 7, 30), now, 10) == [
        utc(2026, 5, 13, 8), utc(2026, 5, 13, 9), utc(2026, 5, 13, 10)
    ]
    assert cron.due(utc(2026, 5, 13, 7, 30), now, 2) == [utc(2026, 5, 13, 8),
                                                         utc(2026, 5, 13, 9)]
    # The clock was set back behind the last fire: nothing, rather than a repeat.
    assert cron.due(utc(2026, 5, 13, 10), utc(2026, 5, 13, 9, 30), 10) == []


# -- describe and schedule_to_trigger -----------------------------------------------------


@pytest.mark.parametrize(
    ("timer", "expected"),
    [
        (Cron("0 2 * * *", PARIS),
         {"kind": "cron", "expression": "0 2 * * *", "timezone": PARIS}),
        (Cron("@daily"), {"kind": "cron", "expression": "@daily", "timezone": "UTC"}),
        (Interval(hours=1),
         {"kind": "interval", "period": "PT1H", "seconds": 3600,
          "start": "1970-01-01T00:00:00+00:00", "timezone": "UTC"}),
        (Interval(days=1, minutes=30, start=at("2026-01-01T06:00:00+01:00")),
         {"kind": "interval", "period": "P1DT30M", "seconds": 88200,
          "start": "2026-01-01T05:00:00+00:00", "timezone": "UTC"}),
        (Interval(seconds=1.5),
         {"kind": "interval", "period": "PT1.5S", "seconds": 1.5,
          "start": "1970-01-01T00:00:00+00:00", "timezone": "UTC"}),
    ],
)
def test_describe_is_json_ready(timer: Timer, expected: dict[str, object]) -> None:
    described = timer.describe()
    assert described == expected
    assert json.loads(json.dumps(described)) == expected


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("@daily", Cron("@daily")),
        ("0 2 * * *", Cron("0 2 * * *")),
        ("*/2 * * * * *", Cron("*/2 * * * * *")),
        (timedelta(hours=1), Interval(hours=1)),
        (timedelta(days=2, seconds=30), Interval(days=2, seconds=30)),
        (timedelta(milliseconds=1500), Interval(seconds=1.5)),
        (Cron("0 2 * * *", PARIS), Cron("0 2 * * *", PARIS)),
        (Interval(minutes=5), Interval(minutes=5)),
        (None, None),
    ],
)
def test_schedule_to_trigger(schedule: object, expected: Timer | None) -> None:
    got = schedule_to_trigger(schedule)  # type: ignore[arg-type]
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ("not a cron", "'not a cron' has 3 fields"),
        ("@fortnightly", "unknown cron alias '@fortnightly'"),
        (timedelta(0), "schedule interval must be longer than zero"),
        (timedelta(hours=-1), "schedule interval must be longer than zero"),
        (42, "schedule must be a cron string"),
    ],
)
def test_schedule_to_trigger_refuses(schedule: object, words: str) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        schedule_to_trigger(schedule)  # type: ignore[arg-type]
    assert caught.value.field == "schedule"
    assert words in caught.value.message


def test_a_pendulum_start_and_pendulum_instants_give_plain_fire_times() -> None:
    # pendulum's DateTime minus DateTime is an Interval whose `//` refuses a timedelta:
    # Airflow DAG files give start_date (and days_ago) as pendulum values.
    pendulum = pytest.importorskip("pendulum")
    timer = Interval(days=1, start=pendulum.datetime(2024, 1, 1, 3, tz="UTC"))
    got = timer.fires_between(pendulum.datetime(2024, 1, 1, tz="UTC"),
                              pendulum.datetime(2024, 1, 4, tz="UTC"), 10)
    assert got == [utc(2024, 1, 1, 3), utc(2024, 1, 2, 3), utc(2024, 1, 3, 3)]
    assert all(type(fire) is datetime for fire in got)
    assert timer.prev_fire(pendulum.datetime(2024, 1, 3, 12, tz="Europe/Paris")) == utc(
        2024, 1, 3, 3)
    cron = Cron("0 2 * * *", timezone=PARIS)
    assert cron.fires_between(pendulum.datetime(2024, 1, 1, tz="UTC"),
                              pendulum.datetime(2024, 1, 3, tz="UTC"), 10) == [
        utc(2024, 1, 1, 1), utc(2024, 1, 2, 1)]
