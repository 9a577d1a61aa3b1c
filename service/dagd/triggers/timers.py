"""Timer maths for the `Cron` and `Interval` triggers: when a schedule fires.

Owns: checking a schedule when a DAG is defined (croniter parses cron), the next fire
time after an instant, the fire times in a window and what is due since the last fire
acted on, the data interval a fire covers, and the rules for local clock changes (DST).
Pure: no I/O, no clock. Every "now" is passed in; instants in must be timezone-aware,
instants out are always aware and in UTC.

Cron fields are wall-clock times in the trigger's timezone. Where the local clock jumps,
dagd follows the rule of Vixie cron, which is what people who run cron expect:

- Spring forward (Europe/Paris 2026-03-29 02:00 -> 03:00): a local time that does not
  exist. A schedule with fixed hours (`0 2 * * *`, `30 2 * * *`, `*/15 2 * * *`) fires
  once, at the first instant after the gap (03:00 local, as croniter does); several
  skipped times fold into that one fire. A schedule that runs every hour (hour field
  `*`: `30 * * * *`, `*/2 * * * * *`) simply has no fire in the missing hour, as it
  did not happen: 01:30 then 03:30, one real hour apart.
- Fall back (Europe/Paris 2026-10-25 03:00 -> 02:00): a local time that happens twice.
  A schedule with fixed hours fires at the first occurrence only (`0 2 * * *` fires once
  that day; croniter alone would fire twice). A schedule that runs every hour fires at
  both occurrences, which are different instants (`30 * * * *`: 02:30 CEST and 02:30
  CET, 00:30 and 01:30 UTC), so it keeps firing every real hour.

`Interval` counts elapsed time from an anchor and ignores local clocks entirely.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from dagd.errors import DagDefinitionError

__all__ = ["ALIASES", "EPOCH", "Cron", "Interval", "Timer", "fire_conf", "logical_fires",
           "past_end", "resume_from", "schedule_to_trigger", "timers_of"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# croniter's hashed (H) and random (R) fields: fire times that are not the same on every
# machine and every restart, so a stored last fire time could not be compared with them.
_CHANCE_FIELD = re.compile(r"(?<![A-Z])[HR](?![A-Z])", re.IGNORECASE)
_REFERENCE = datetime(2026, 1, 1, tzinfo=UTC)  # where validation asks for a first fire
_ONE_DAY = timedelta(days=1)
_SECOND = timedelta(seconds=1)
_TINY = timedelta(microseconds=1)


def _schedule_error(message: str) -> DagDefinitionError:
    return DagDefinitionError(message, field="schedule")


def _utc(value: datetime, name: str) -> datetime:
    """`value` in UTC; a naive datetime is a caller's bug, not a guess to make."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return _plain(value.astimezone(UTC))


def _plain(value: datetime) -> datetime:
    """`value` as a stdlib datetime: a subclass's arithmetic (pendulum's DateTime minus
    DateTime is an Interval whose `//` refuses a timedelta) must not reach the maths."""
    if type(value) is datetime:
        return value
    return datetime(value.year, value.month, value.day, value.hour, value.minute,
                    value.second, value.microsecond, tzinfo=value.tzinfo, fold=value.fold)


class _Timer:
    """What `Cron` and `Interval` share, all derived from `next_fire` and `prev_fire`."""

    def next_fire(self, after: datetime) -> datetime:
        """The first fire time strictly after `after`."""
        raise NotImplementedError

    def prev_fire(self, before: datetime) -> datetime:
        """The last fire time strictly before `before`."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def zone(self) -> tzinfo:
        """The timezone its wall-clock times are read in (UTC for an Interval)."""
        return UTC

    @property
    def kind(self) -> str:
        """"cron" or "interval": the kind of the events this timer fires."""
        return str(self.describe()["kind"])

    @property
    def source(self) -> str:
        """Names the timer in the event ledger: "cron:0 2 * * * Europe/Paris"."""
        d = self.describe()
        what = d.get("expression") or d.get("period")
        tz = d.get("timezone")
        return f"{self.kind}:{what}" + (f" {tz}" if tz and tz != "UTC" else "")

    def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fire times t with start < t <= end, oldest first, at most `limit` of them."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        moment, end = _utc(start, "start"), _utc(end, "end")
        fires: list[datetime] = []
        while len(fires) < limit:
            moment = self.next_fire(moment)
            if moment > end:
                break
            fires.append(moment)
        return fires

    def due(self, last_fire: datetime | None, now: datetime, limit: int) -> list[datetime]:
        """Fire times to act on now, oldest first, given the last one acted on.

        Every fire time in (last_fire, now] is returned, capped by `limit` (the caller
        stores the last one it acted on and asks again for the rest), and none at or
        before `last_fire`: so a restart, a repeated tick or a clock set back can neither
        skip a fire nor repeat one. `last_fire` None means the timer has never fired:
        nothing is due yet, it starts from now (its first fire is `next_fire(now)`).
        """
        if last_fire is None:
            _utc(now, "now")
            return []
        return self.fires_between(last_fire, now, limit)

    def data_interval(self, fire: datetime) -> tuple[datetime, datetime]:
        """The data interval of the run that fires at `fire`: [previous fire, fire].

        Airflow's semantics: the run's logical date is the start of the interval, so the
        daily run that fires at midnight on the 2nd covers, and is dated, the 1st. For an
        instant that is not a fire time, the interval runs from the last fire before it.
        """
        end = _utc(fire, "fire")
        return self.prev_fire(end), end


# -- cron ---------------------------------------------------------------------------------


def _cron_fields(expression: object) -> str:
    """The expression in the 5- or 6-field form croniter reads; refuses what dagd cannot."""
    if not isinstance(expression, str):
        raise _schedule_error(
            f"a cron schedule must be a string, got {type(expression).__name__}"
        )
    text = " ".join(expression.split())
    if text.startswith("@"):
        try:
            return ALIASES[text.lower()]
        except KeyError:
            raise _schedule_error(
                f"unknown cron alias {text!r}; known: {', '.join(ALIASES)}"
            ) from None
    count = len(text.split(" ")) if text else 0
    if count not in (5, 6):
        raise _schedule_error(
            f"cron expression {text!r} has {count} fields; expected 5 "
            "(minute hour day month weekday) or 6 (second minute hour day month weekday)"
        )
    if _CHANCE_FIELD.search(text):
        raise _schedule_error(
            f"cron expression {text!r} uses a hashed (H) or random (R) field; dagd needs "
            "fire times that are the same on every restart"
        )
    return text


def _load_zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise _schedule_error(f"timezone must be an IANA name like 'Europe/Paris', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _schedule_error(
            f"unknown timezone {name!r}; use an IANA name like 'Europe/Paris' or 'UTC'"
        ) from None


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _transition(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The instant in (low, high] where the zone's UTC offset changes (there is one).

    Time zone transitions fall on whole seconds, so a bisection over seconds finds it.
    """
    target = _offset(zone, high)
    lo = (low - EPOCH) // _SECOND  # offset(lo) is low's
    hi = -((EPOCH - high) // _SECOND)  # offset(hi) is high's
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, EPOCH + mid * _SECOND) == target:
            hi = mid
        else:
            lo = mid
    return EPOCH + hi * _SECOND


@dataclass(frozen=True)
class _Fold:
    """A fall-back: local wall-clock times in [first, last) happen twice.

    `at` is the instant the clock is set back (where the second pass starts) and
    `offset` the UTC offset of the second pass.
    """

    at: datetime
    offset: timedelta
    first: datetime
    last: datetime


@dataclass(frozen=True)
class Cron(_Timer):
    """A cron schedule in a timezone: `Cron("0 2 * * *", timezone="Europe/Paris")`.

    Five fields (minute hour day month weekday), or six with seconds FIRST (second
    minute hour day month weekday), as in Quartz and Spring: `Cron("*/2 * * * * *")` fires
    every 2 seconds. (croniter's default puts seconds last; dagd passes it
    `second_at_beginning=True`.) Aliases: @hourly @daily @midnight @weekly @monthly
    @yearly @annually. When both day and weekday are restricted, either matches (Vixie
    cron, croniter's default). Checked when built: a bad expression, one that never fires
    (`0 0 30 2 *`) or an unknown timezone raises `DagDefinitionError(field="schedule")`.
    See the module docstring for what happens when the local clock jumps (DST).
    """

    expression: str
    timezone: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _every_hour: bool = field(init=False, repr=False, compare=False)
    _parsed: croniter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = _cron_fields(self.expression)
        zone = _load_zone(self.timezone)
        text = " ".join(self.expression.split())
        try:
            probe = croniter(fields, _REFERENCE, second_at_beginning=True)
            hours = probe.expanded[1]
            probe.get_next(datetime)
        except CroniterBadDateError:
            raise _schedule_error(f"cron expression {text!r} never fires") from None
        except ValueError as exc:  # croniter's parse errors are ValueErrors
            raise _schedule_error(f"invalid cron expression {text!r}: {exc}") from None
        object.__setattr__(self, "expression", text)
        object.__setattr__(self, "_parsed", probe)
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_every_hour", hours == ["*"] or set(hours) >= set(range(24)))

    def describe(self) -> dict[str, Any]:
        return {"kind": "cron", "expression": self.expression, "timezone": self.timezone}

    @property
    def zone(self) -> tzinfo:
        return self._zone

    # Matching is done on naive local wall-clock times (croniter is given them as UTC,
    # which has no jumps), then each wall time is mapped to the instants it fires at.

    def _walls(self, wall: datetime, *, forward: bool) -> Iterator[datetime]:
        """Matching wall-clock times strictly after (or before) `wall`, nearest first."""
        # A copy of the parsed expression: parsing costs more than a step, and the copy
        # keeps this value object immutable (croniter only reads what the copy shares).
        itr = copy.copy(self._parsed)
        itr.set_current(wall.replace(tzinfo=UTC), force=True)
        step = itr.get_next if forward else itr.get_prev
        while True:
            yield step(datetime).replace(tzinfo=None)

    def _resolve(self, wall: datetime) -> tuple[datetime | None, datetime | None]:
        """The instants (UTC) a matching wall time fires at: (first, second pass).

        first is None for a skipped time of an every-hour schedule; second is set only
        for a repeated time of an every-hour schedule.
        """
        early = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        late = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        if early == late:
            return early, None
        if early.astimezone(self._zone).replace(tzinfo=None) == wall:  # repeated
            return early, late if self._every_hour else None
        if self._every_hour:  # skipped: the hour did not happen
            return None, None
        # Skipped, fixed hours: fire once, at the end of the gap (late < gap <= early).
        return _transition(self._zone, late, early), None

    def _fold_around(self, instant: datetime) -> _Fold | None:
        """The fall-back whose two passes (of length d) satisfy at - d <= instant < at + d."""
        now = _offset(self._zone, instant)
        earlier = _offset(self._zone, instant - _ONE_DAY)
        later = _offset(self._zone, instant + _ONE_DAY)
        found: tuple[datetime, timedelta] | None = None
        if now > later and _offset(self._zone, instant + (now - later)) == later:
            found = _transition(self._zone, instant, instant + (now - later)), now - later
        elif earlier > now and _offset(self._zone, instant - (earlier - now)) == earlier:
            found = _transition(self._zone, instant - (earlier - now), instant), earlier - now
        if found is None:
            return None
        at, size = found
        first = at.astimezone(self._zone).replace(tzinfo=None)
        return _Fold(at=at, offset=_offset(self._zone, at), first=first, last=first + size)

    def next_fire(self, after: datetime) -> datetime:
        after = _utc(after, "after")
        local = after.astimezone(self._zone)
        wall = local.replace(tzinfo=None)
        fold = self._fold_around(after) if local.fold or self._every_hour else None
        if local.fold and fold is not None:
            # In the second pass: first-pass instants of the repeated hour are behind us.
            wall = max(wall, fold.last - _TINY)
        best = next(
            first for first, _ in map(self._resolve, self._walls(wall, forward=True))
            if first is not None and first > after
        )
        if self._every_hour and fold is not None:
            # A second-pass fire of the repeated hour may come before `best`.
            start = max(after.replace(tzinfo=None) + fold.offset, fold.first - _TINY)
            candidate = next(self._walls(start, forward=True))
            if candidate < fold.last:
                second = self._resolve(candidate)[1]
                if second is not None and after < second < best:
                    best = second
        return best

    def prev_fire(self, before: datetime) -> datetime:
        before = _utc(before, "before")
        local = before.astimezone(self._zone)
        wall = local.replace(tzinfo=None)
        if local.fold:
            fold = self._fold_around(before)
            if fold is not None:
                # In the second pass: all of the first pass is behind us.
                wall = fold.last
        best = next(
            first for first, _ in map(self._resolve, self._walls(wall, forward=False))
            if first is not None and first < before
        )
        fold = self._fold_around(best) if self._every_hour else None
        if fold is not None:
            # A second-pass fire of the repeated hour may come after `best`.
            end = min(before.replace(tzinfo=None) + fold.offset, fold.last)
            candidate = next(self._walls(end, forward=False))
            if candidate >= fold.first:
                second = self._resolve(candidate)[1]
                if second is not None and best < second < before:
                    best = second
        return best


# -- interval -----------------------------------------------------------------------------


def _iso_duration(period: timedelta) -> str:
    """ISO 8601 duration, e.g. PT1H30M, P1D, PT0.5S."""
    days, rest = period.days, period - timedelta(days=period.days)
    hours, rest = divmod(rest, timedelta(hours=1))
    minutes, rest = divmod(rest, timedelta(minutes=1))
    seconds = rest.total_seconds()
    clock = "".join(
        f"{value}{unit}" for value, unit in ((hours, "H"), (minutes, "M")) if value
    )
    if seconds:
        clock += f"{seconds:g}S"
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")


@dataclass(frozen=True, kw_only=True, eq=False)
class Interval(_Timer):
    """Fires every `period` of elapsed time, at `start + k * period` for every integer k.

    `start` is the phase anchor (default: the Unix epoch, UTC), not a not-before date:
    the fire times are the same on every restart, and `Interval(hours=1)` fires on the
    hour (UTC). The period is the sum of the parts and must be positive; no part may be
    negative. Local clocks and DST do not matter to it. Two intervals with the same
    period and anchor are equal (`Interval(hours=1) == Interval(minutes=60)`).
    """

    seconds: float = 0
    minutes: float = 0
    hours: float = 0
    days: float = 0
    start: datetime | None = None
    period: timedelta = field(init=False, repr=False)
    anchor: datetime = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = {"seconds": self.seconds, "minutes": self.minutes, "hours": self.hours,
                 "days": self.days}
        for name, value in parts.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise _schedule_error(
                    f"interval {name} must be a number >= 0, got {value!r}"
                )
        try:
            period = timedelta(**parts)
        except OverflowError:
            raise _schedule_error(f"interval is too long: {parts}") from None
        if period <= timedelta(0):
            raise _schedule_error(f"interval must be longer than zero, got {period}")
        if self.start is None:
            anchor = EPOCH
        elif not isinstance(self.start, datetime) or self.start.utcoffset() is None:
            raise _schedule_error(
                f"interval start must be a timezone-aware datetime, got {self.start!r}"
            )
        else:
            anchor = _plain(self.start.astimezone(UTC))
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "anchor", anchor)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Interval):
            return NotImplemented
        return (self.period, self.anchor) == (other.period, other.anchor)

    def __hash__(self) -> int:
        return hash((Interval, self.period, self.anchor))

    def next_fire(self, after: datetime) -> datetime:
        after = _utc(after, "after")
        return self.anchor + ((after - self.anchor) // self.period + 1) * self.period

    def prev_fire(self, before: datetime) -> datetime:
        before = _utc(before, "before")
        return self.anchor - ((self.anchor - before) // self.period + 1) * self.period

    def describe(self) -> dict[str, Any]:
        total = self.period.total_seconds()
        return {
            "kind": "interval",
            "period": _iso_duration(self.period),
            "seconds": int(total) if total.is_integer() else total,
            "start": self.anchor.isoformat(),
            "timezone": "UTC",
        }


Timer: TypeAlias = Cron | Interval


def timers_of(triggers: Iterable[Any]) -> list[Timer]:
    """The Cron and Interval triggers among a DAG's triggers."""
    return [t for t in triggers if isinstance(t, _Timer)]  # type: ignore[misc]


def resume_from(timer: Timer, stored: datetime | None, now: datetime, *,
                catchup: bool, limit: int) -> datetime:
    """The fire time a timer counts from when it starts: what `due` takes as `last_fire`.

    `stored` is the last fire time acted on (from the ledger). Never fired: from `now`
    on. Fires missed while the daemon was down are all due with `catchup`; without it,
    only the latest missed one is.
    """
    if stored is None:
        return _utc(now, "now")
    if not catchup:
        missed = timer.fires_between(stored, now, limit)
        if len(missed) > 1:
            return missed[-2]
    return stored


def logical_fires(timer: Timer, first: datetime, last: datetime, limit: int) -> list[datetime]:
    """The fire times of the runs whose logical date lies in [first, last], oldest first.

    What a backfill over that range queues, by Airflow's rule: a run is named by its
    logical date, the start of its data interval, which is the fire time before the one
    that starts it (the daily 02:00 run of Nov 1 fires on Nov 2 at 02:00).
    """
    starts = timer.fires_between(_utc(first, "first") - _TINY, last, limit)
    return [timer.next_fire(start) for start in starts]


def past_end(timer: Timer, fire: datetime, end_date: datetime | None) -> bool:
    """Whether the run a fire starts is past a DAG's `end_date` (Airflow's meaning: no
    run whose logical date, the start of its data interval, is after it). With an end
    date every later fire is past it too, so a timer whose next fire is past it is done."""
    return end_date is not None and timer.data_interval(fire)[0] > _utc(end_date, "end_date")


def fire_conf(timer: Timer, fire: datetime) -> dict[str, str]:
    """The conf of the run a fire starts: its logical date and data interval (ISO)."""
    start, end = timer.data_interval(fire)
    return {"logical_date": start.isoformat(), "data_interval_start": start.isoformat(),
            "data_interval_end": end.isoformat()}


def schedule_to_trigger(schedule: str | timedelta | Timer | None) -> Timer | None:
    """A DAG's `schedule=`: a cron string or alias -> Cron (UTC), a timedelta -> Interval.

    None means no timer; a Cron or Interval is taken as it is.
    """
    if schedule is None or isinstance(schedule, Cron | Interval):
        return schedule
    if isinstance(schedule, timedelta):
        if schedule <= timedelta(0):
            raise _schedule_error(f"schedule interval must be longer than zero, got {schedule}")
        return Interval(days=schedule.days,
                        seconds=schedule.seconds + schedule.microseconds / 1_000_000)
    if isinstance(schedule, str):
        return Cron(schedule)
    raise _schedule_error(
        "schedule must be a cron string (or @daily etc.), a timedelta, a Cron, an Interval "
        f"or None, got {type(schedule).__name__}"
    )
