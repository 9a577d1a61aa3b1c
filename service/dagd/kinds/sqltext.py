"""SQL text and values for `SqlTask`, pure (no I/O): splitting text into statements,
binding parameters to placeholders, reading a database URL or a named connection, and
turning column values into JSON.

Placeholders: `:name` takes a dict of parameters; `$1`, `$2`, ... (and for SQLite `?` and
`?1`) take a list. For PostgreSQL, dagd rewrites `:name` to `$n`; for SQLite, `$n` to
`?n`. Values are always handed to the driver, never written into the SQL.
"""

from __future__ import annotations

import base64
import math
import re
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson

from dagd.dburl import check_url
from dagd.kinds.connections import get_connection

# -- statements and placeholders ---------------------------------------------------
# One pass over the text finds what matters outside quotes and comments: the `;` between
# statements and the placeholders (`:name`, `$1`, and for SQLite `?` / `?1`).
_TOKEN = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`)
    | (?P<dollar>\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$)
    | (?P<cast>::)
    | (?P<named>(?<![\w:]):[A-Za-z_]\w*)
    | (?P<numbered>\$\d+)
    | (?P<qmark>\?\d*)
    | (?P<semi>;)
    """,
    re.S | re.X,
)
_MARKS = ("named", "numbered", "qmark")


@dataclass(frozen=True)
class Statement:
    text: str
    marks: tuple[tuple[int, int, str, str], ...]  # (start, end, kind, token) in `text`

    @property
    def brief(self) -> str:
        """The statement on one line, cut short, for messages and the log."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= 120 else flat[:117] + "..."


def split_statements(sql: str, dialect: str) -> list[Statement]:
    """Split at each `;` outside quotes, comments and (PostgreSQL) dollar quotes; for
    SQLite, a `;` inside a trigger's BEGIN ... END does not end the statement."""
    found: list[Statement] = []
    start = 0
    marks: list[tuple[int, int, str, str]] = []

    def close(end: int) -> None:
        text = sql[start:end]
        if _TOKEN.sub(lambda m: "" if m.lastgroup == "comment" else m.group(), text).strip():
            found.append(Statement(text, tuple((a - start, b - start, k, t)
                                               for a, b, k, t in marks)))

    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or ""
        if kind in _MARKS and not (kind == "qmark" and dialect != "sqlite"):
            marks.append((m.start(), m.end(), kind, m.group()))
        elif kind == "semi":
            if dialect == "sqlite" and not sqlite3.complete_statement(sql[start:m.end()]):
                continue
            close(m.start())
            start, marks = m.end(), []
    close(len(sql))
    return found


def bind(stmt: Statement, parameters: Any, dialect: str) -> tuple[str, Any]:
    """The text for the driver and the values it binds. `:name` takes a dict; `$1` (and
    for SQLite `?`) take a list. Raises ValueError with a message for the user."""
    named = [t[1:] for _, _, k, t in stmt.marks if k == "named"]
    positional = [t for _, _, k, t in stmt.marks if k != "named"]
    if parameters is None:
        if stmt.marks:
            raise ValueError(f"uses the placeholder {stmt.marks[0][3]} but parameters= is "
                             "not given")
        return stmt.text, [] if dialect != "sqlite" else ()
    if isinstance(parameters, Mapping):
        if positional:
            raise ValueError(f"uses the positional placeholder {positional[0]} but parameters "
                             "is a dict: write :name placeholders")
        missing = sorted({n for n in named if n not in parameters})
        if missing:
            raise ValueError(f"uses :{missing[0]} but parameters has no {missing[0]!r}")
        if dialect == "sqlite":
            return stmt.text, {n: parameters[n] for n in named}
        order = list(dict.fromkeys(named))
        text = _replace(stmt, lambda token: f"${order.index(token[1:]) + 1}")
        return text, [parameters[n] for n in order]
    if named:
        raise ValueError(f"uses the placeholder :{named[0]} but parameters is a list: "
                         "write $1, $2, ... (or pass a dict)")
    needed = _positions_needed(positional)
    if needed > len(parameters):
        raise ValueError(f"needs {needed} parameter(s), parameters has {len(parameters)}")
    if dialect == "sqlite":  # `$1` is PostgreSQL's spelling; SQLite's is `?1`
        return _replace(stmt, lambda token: "?" + token[1:]), tuple(parameters[:needed])
    return stmt.text, list(parameters[:needed])


def _positions_needed(tokens: list[str]) -> int:
    # SQLite's rule: `?` takes the largest number used so far plus one.
    largest = 0
    for token in tokens:
        largest = max(largest, int(token[1:])) if len(token) > 1 else largest + 1
    return largest


def _replace(stmt: Statement, new: Callable[[str], str]) -> str:
    out, at = [], 0
    for start, end, kind, token in stmt.marks:
        if kind == "named" or token.startswith("$"):
            out += [stmt.text[at:start], new(token)]
            at = end
    return "".join([*out, stmt.text[at:]])


# -- values to JSON -----------------------------------------------------------------
def to_json_value(value: Any) -> Any:
    """A column value as JSON: Decimal and UUID as strings, dates and times as ISO 8601,
    intervals as seconds, bytes as base64, NaN/Infinity as strings; arrays and JSON kept."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    items = getattr(value, "items", None)
    if callable(items):  # a dict (JSON) or an asyncpg Record (a composite value)
        return {str(k): to_json_value(v) for k, v in items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return str(value)  # network addresses, geometric types, ranges: their text form


def _pg_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("t", "true", "y", "yes", "on", "1"):
        return True
    if lowered in ("f", "false", "n", "no", "off", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


# A rendered template is text; asyncpg wants the Python type of each parameter. These read
# text the way the server would read a literal.
_PG_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "int2": int, "int4": int, "int8": int, "oid": int, "float4": float, "float8": float,
    "numeric": Decimal, "bool": _pg_bool, "date": date.fromisoformat,
    "timestamp": datetime.fromisoformat, "timestamptz": datetime.fromisoformat,
    "time": time.fromisoformat, "uuid": uuid.UUID, "json": orjson.loads, "jsonb": orjson.loads,
}


# -- where to connect ----------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    dialect: str  # "sqlite" or "postgresql"
    url: str  # never holds a password
    password: str | None = None

    @property
    def sqlite_path(self) -> str:
        return self.url[len("sqlite:///"):]


def resolve_target(conn: str, environ: Mapping[str, str]) -> Target:
    """A URL as given, or the named connection's `url`, `username` and `password_env`."""
    if "://" in conn:
        parts = check_url(conn)
        dialect = "sqlite" if parts.scheme == "sqlite" else "postgresql"
        return Target(dialect, conn)
    entry = get_connection(conn)
    url = entry.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError(f"connection {conn!r} has no url (a sqlite:/// or postgresql:// URL)")
    try:
        parts = check_url(url)
    except ValueError as exc:
        raise ValueError(f"connection {conn!r}: {exc}") from None
    if parts.scheme == "sqlite":
        return Target("sqlite", url)
    username = entry.get("username")
    if username:
        host = parts.netloc.rsplit("@", 1)[-1]
        url = parts._replace(netloc=f"{quote(str(username), safe='')}@{host}").geturl()
    password = None
    if var := entry.get("password_env"):
        password = environ.get(str(var))
        if password is None:
            raise ValueError(f"connection {conn!r}: the environment variable {var} "
                             "(password_env) is not set")
    return Target("postgresql", url, password)


def pg_args(args: list[Any], types: Sequence[Any]) -> list[Any]:
    """Text values read as the types the server expects (asyncpg does not cast text)."""
    out = list(args)
    for i, (value, typ) in enumerate(zip(args, types, strict=False)):
        convert = _PG_FROM_TEXT.get(typ.name) if isinstance(value, str) else None
        if convert is not None:
            try:
                out[i] = convert(value)
            except (ValueError, ArithmeticError) as exc:
                raise ValueError(f"parameter ${i + 1}: cannot read {value!r} as {typ.name} "
                                 f"({exc})") from None
    return out


def status_count(status: str | None) -> int:
    """`INSERT 0 5` -> 5; `CREATE TABLE` -> 0."""
    last = (status or "").rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
