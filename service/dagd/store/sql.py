"""Loads the named SQL of `queries.sql` once: `Q.name` is the text of query `name`."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


class _Queries:
    def __init__(self, queries: dict[str, str]) -> None:
        self.__dict__.update(queries)

    def __getattr__(self, name: str) -> str:
        raise AttributeError(f"no named query {name!r} in queries.sql")


Q = _Queries(parse(resources.files("dagd.store").joinpath("queries.sql").read_text("utf-8")))


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for each numbered migration, in order."""
    folder = resources.files("dagd.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d{4})_\w+\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise RuntimeError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found
