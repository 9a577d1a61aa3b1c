"""The CLI's tables fit the terminal: short times first, then the least important
columns go; ids are never cut."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console

from dagd.tables import Column, fitted, when

NOW = datetime(2026, 12, 1, 15, 30, 0)


def ts(*parts: int) -> float:
    return datetime(*parts).timestamp()  # type: ignore[arg-type]


def test_short_times_say_no_more_than_needed() -> None:
    assert when(ts(2026, 12, 1, 9, 5, 7), short=True, now=NOW) == "09:05:07"
    assert when(ts(2026, 11, 30, 23, 59, 1), short=True, now=NOW) == "11-30 23:59"
    assert when(ts(2025, 12, 1, 9, 5, 7), short=True, now=NOW) == "2025-12-01"
    assert when(ts(2026, 12, 1, 9, 5, 7), now=NOW) == "2026-12-01 09:05:07"
    assert when(None, short=True) == ""


def render(columns: list[Column], width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as captured:
        console.print(fitted("t", columns, width))
    return captured.get()


def header(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.split("┃")[1:-1]]


def columns() -> list[Column]:
    stamps = [ts(2026, 12, 1, 9, 5, 7)]
    return [
        Column("dag", ["a_dag_id_that_is_rather_long_indeed"]),
        Column("kept", ["x" * 10], drop=1),
        Column("first to go", ["y" * 10], drop=3),
        Column("second to go", ["z" * 10], drop=2),
        Column("at", [when(t) for t in stamps], short=[when(t, short=True, now=NOW)
                                                      for t in stamps]),
    ]


def test_a_wide_terminal_shows_everything_in_full() -> None:
    text = render(columns(), 200)
    assert header(text) == ["dag", "kept", "first to go", "second to go", "at"]
    assert "2026-12-01 09:05:07" in text


def test_a_narrow_terminal_gets_short_times_then_loses_columns_in_order() -> None:
    # Everything but the full time fits in 96 columns.
    text = render(columns(), 96)
    assert header(text) == ["dag", "kept", "first to go", "second to go", "at"]
    assert "09:05:07" in text and "2026-12-01" not in text
    assert header(render(columns(), 80)) == ["dag", "kept", "second to go", "at"]
    assert header(render(columns(), 70)) == ["dag", "kept", "at"]
    narrow = render(columns(), 52)
    assert header(narrow) == ["dag", "at"]
    assert "a_dag_id_that_is_rather_long_indeed" in narrow
    assert "…" not in narrow
    assert all(len(line) <= 52 for line in narrow.splitlines())
