"""The CLI's tables, fitted to the terminal: `runs list`, `tasks list`, `dags show`, and
the live table of `dagd test`.

Ids (DAG, task, run) are never cut. A table wider than the terminal first shows its
times short (HH:MM:SS today, MM-DD HH:MM this year, the date before), then drops its
least important columns, one at a time, until it fits. Rich reads the width from the
terminal, or from `COLUMNS`; a pipe gets 80.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # the store's rows only as types: `dagd dags check` never loads the store
    from dagd.store.rows import TaskInstanceRow

STYLE = {
    "success": "green",
    "failed": "red",
    "upstream_failed": "dark_orange",
    "up_for_retry": "yellow",
    "running": "cyan",
    "queued": "blue",
    "skipped": "magenta",
    "scheduled": "dim",
}


def state_text(state: str) -> str:
    """A state in its colour, as rich markup."""
    return f"[{STYLE.get(state, 'white')}]{state}[/]"


def state_cell(state: str) -> Text:
    return Text(state, style=STYLE.get(state, "white"))


def when(ts: float | None, *, short: bool = False, now: datetime | None = None) -> str:
    """A local time: in full, or short for a narrow terminal (the date only when it is
    not today's)."""
    if not ts:
        return ""
    moment = datetime.fromtimestamp(ts)
    if not short:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    today = now or datetime.now()
    if moment.date() == today.date():
        return moment.strftime("%H:%M:%S")
    if moment.year == today.year:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def seconds(start: float | None, end: float | None) -> str:
    return f"{end - start:.2f}s" if start and end else ""


@dataclass
class Column:
    """One column: its cells, a shorter rendering of them if it has one, and how soon it
    goes when space runs out (`drop`: 0 never, a higher number sooner). A `wrap` column
    (free text) may wrap between words; every other column stays on one line, whole."""

    header: str
    cells: list[str | Text]
    short: list[str | Text] | None = None
    drop: int = 0
    wrap: bool = False
    justify: JustifyMethod = "left"
    texts: list[str | Text] = field(init=False)

    def __post_init__(self) -> None:
        self.texts = self.cells

    def need(self) -> int:
        """The width this column needs: its widest cell, or for a wrap column its
        longest word."""
        widths = [len(self.header)]
        for cell in self.texts:
            plain = cell.plain if isinstance(cell, Text) else cell
            if self.wrap:
                widths.extend(len(word) for word in plain.split())
            else:
                widths.append(len(plain))
        return max(widths)


# A rich table's frame: one border per column and one more, and a space either side of
# each cell.
def width_of(columns: Sequence[Column]) -> int:
    return sum(c.need() + 3 for c in columns) + 1


def fitted(title: str | Text | None, columns: list[Column], width: int) -> Table:
    """A table of `columns` that fits in `width` columns, or as near as the ids allow."""
    shown = list(columns)
    if width_of(shown) > width:
        for column in shown:
            if column.short is not None:
                column.texts = column.short
    for victim in sorted((c for c in columns if c.drop), key=lambda c: -c.drop):
        if width_of(shown) <= width:
            break
        shown.remove(victim)
    table = Table(title=title)
    for column in shown:
        table.add_column(column.header, justify=column.justify, no_wrap=not column.wrap,
                         min_width=None if column.wrap else column.need())
    rows = len(columns[0].cells) if columns else 0
    for i in range(rows):
        table.add_row(*(column.texts[i] for column in shown))
    return table


def ti_table(
    title: str | Text, tis: list[TaskInstanceRow], *, width: int, times: bool = False
) -> Table:
    """The task instances of one run; with `times`, when each started and ended."""
    columns = [
        Column("task", [ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
                        for ti in tis]),
        Column("state", [state_cell(ti.state) for ti in tis]),
        Column("try", [f"{ti.try_number}/{ti.max_tries}" for ti in tis], drop=1,
               justify="right"),
        Column("duration", [seconds(ti.started_at, ti.ended_at) for ti in tis], drop=2,
               justify="right"),
    ]
    if times:
        for header, drop, stamps in (("started", 3, [ti.started_at for ti in tis]),
                                     ("ended", 4, [ti.ended_at for ti in tis])):
            columns.append(Column(header, [when(ts) for ts in stamps],
                                  short=[when(ts, short=True) for ts in stamps], drop=drop))
    return fitted(title, columns, width)
