"""Dates as Airflow DAG files build them: `days_ago`, `airflow.utils.timezone`, and
pendulum DateTimes for the context (a plain aware datetime when pendulum is absent)."""

from __future__ import annotations

import datetime as dt
from typing import Any

try:
    import pendulum
except ImportError:  # pragma: no cover - the `airflow` extra brings it
    pendulum = None  # type: ignore[assignment]

utc: dt.tzinfo = pendulum.UTC if pendulum is not None else dt.UTC


def to_pendulum(value: dt.datetime | None) -> Any:
    """An aware datetime as a pendulum DateTime (UTC when naive); None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if pendulum is None:
        return value
    return pendulum.instance(value)


def utcnow() -> Any:
    return to_pendulum(dt.datetime.now(dt.UTC))


def datetime(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
             second: int = 0, microsecond: int = 0, tzinfo: dt.tzinfo | None = None) -> Any:
    """An aware datetime (UTC unless `tzinfo`), as airflow.utils.timezone.datetime."""
    return to_pendulum(dt.datetime(year, month, day, hour, minute, second, microsecond,
                                   tzinfo=tzinfo or dt.UTC))


def make_aware(value: dt.datetime, timezone: dt.tzinfo | None = None) -> Any:
    if value.tzinfo is not None:
        return to_pendulum(value)
    return to_pendulum(value.replace(tzinfo=timezone or dt.UTC))


def convert_to_utc(value: dt.datetime) -> Any:
    return to_pendulum(make_aware(value).astimezone(dt.UTC))


def parse(text: str) -> Any:
    if pendulum is not None:
        return pendulum.parse(text)
    return make_aware(dt.datetime.fromisoformat(text))


def days_ago(n: int, hour: int = 0, minute: int = 0, second: int = 0,
             microsecond: int = 0) -> Any:
    """Midnight UTC (or the time given) `n` days ago, as Airflow 2's days_ago."""
    today = dt.datetime.now(dt.UTC).replace(hour=hour, minute=minute, second=second,
                                            microsecond=microsecond)
    return to_pendulum(today - dt.timedelta(days=n))


def zone_name(value: dt.datetime | None) -> str:
    """The IANA name of a datetime's timezone, for a cron schedule; "UTC" otherwise."""
    tz = value.tzinfo if value is not None else None
    name = getattr(tz, "key", None) or getattr(tz, "name", None)
    if not isinstance(name, str) or ("/" not in name and name != "UTC"):
        return "UTC"
    return name
