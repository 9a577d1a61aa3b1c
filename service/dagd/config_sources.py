"""Where a setting comes from: the lines of the config file, `DAGD_SECTION__KEY`
environment variables, and the text of an environment value turned into its type.

Pure functions over text and mappings, used by `dagd.config`; no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

# `[section]`, `[connections.name]` or `[connections."name"]`, and `key = ...` lines.
_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=")
ENV_PREFIX = "DAGD_"
# The short names the daemon has always read; each is the same key as its long form.
ALIASES = {"DAGD_DAGS_FOLDER": ("core", "dags_folder"), "DAGD_DATA_DIR": ("core", "data_dir")}
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _bare(name: str) -> str:
    return name[1:-1] if name[:1] in "\"'" and name[-1:] == name[:1] else name


def key_lines(text: str) -> dict[str, int]:
    """{"server.port": 12, "connections.crm": 30, "connections.crm.base_url": 31}: the
    line (from 1) where each key of a config file's text, and each table, is written.

    A key inside an inline table or a multi-line value is not found: its table's line
    is then the nearest place to show."""
    lines: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header is not None:
            table = ".".join(_bare(part.strip()) for part in header[1].split("."))
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key is not None:
            lines.setdefault(f"{table}.{_bare(key[1])}" if table else _bare(key[1]), number)
    return lines


def line_of(lines: Mapping[str, int], key: str) -> int | None:
    """The line of `key`, else of the nearest table holding it."""
    while key:
        if key in lines:
            return lines[key]
        key = key.rpartition(".")[0]
    return None


def environment_keys(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """[(variable, section, key)] of every `DAGD_SECTION__KEY` variable (and the short
    aliases), sorted by name: DAGD_SERVER__PORT -> ("DAGD_SERVER__PORT", "server", "port").
    DAGD_CONNECTIONS__CRM__BASE_URL -> (..., "connections", "crm.base_url")."""
    found = []
    for variable in sorted(environ):
        if not environ[variable]:  # `Environment=DAGD_X=` unsets, as an absent one
            continue
        if variable in ALIASES:
            found.append((variable, *ALIASES[variable]))
            continue
        if not variable.startswith(ENV_PREFIX) or "__" not in variable:
            continue
        section, _, rest = variable[len(ENV_PREFIX):].partition("__")
        found.append((variable, section.lower(), rest.lower().replace("__", ".")))
    return found


def brief(text: object) -> str:
    """`text` as repr shows it, cut to a length an error line can hold."""
    shown = repr(text)
    return shown if len(shown) <= 80 else f"{shown[:60]}... ({len(shown)} characters)"


def parse_text(text: str, kind: str) -> object:
    """An environment variable's text as a value of `kind` ("int", "float", "bool",
    "str"); ValueError says what was expected."""
    value = text.strip()
    if kind == "int":
        # [0-9], not \d: "١٢" is not a number an operator means; at most 4300 digits,
        # past which int() raises its own ValueError.
        if not re.fullmatch(r"[+-]?[0-9]{1,4300}", value):
            raise ValueError(f"must be a whole number, got {brief(text)}")
        return int(value)
    if kind == "float":
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {brief(text)}") from None
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {brief(text)}")
        return number
    if kind == "bool":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ValueError(f"must be true or false (or 1/0, yes/no, on/off), got {brief(text)}")
    return text
