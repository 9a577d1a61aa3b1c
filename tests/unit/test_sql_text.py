"""The pure side of SqlTask: statements, placeholders, URLs and named connections, values."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from dagd.kinds.connections import ConnectionNotFound, set_connections
from dagd.kinds.sqltext import (
    bind,
    pg_args,
    resolve_target,
    split_statements,
    status_count,
    to_json_value,
)


def texts(sql: str, dialect: str = "sqlite") -> list[str]:
    return [s.text.strip() for s in split_statements(sql, dialect)]


def test_split_ignores_semicolons_in_quotes_and_comments() -> None:
    sql = """
        INSERT INTO t VALUES ('a;b', "c;d"); -- one; comment
        /* block; comment */ SELECT 1;
        -- only a comment;
    """
    assert texts(sql) == [
        """INSERT INTO t VALUES ('a;b', "c;d")""",
        "-- one; comment\n        /* block; comment */ SELECT 1",
    ]


def test_split_keeps_a_sqlite_trigger_body_whole() -> None:
    sql = ("CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); "
           "UPDATE c SET n = n + 1; END; SELECT 2")
    assert texts(sql) == [
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); "
        "UPDATE c SET n = n + 1; END",
        "SELECT 2",
    ]


def test_split_keeps_a_postgres_dollar_quoted_body_whole() -> None:
    sql = ("CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ "
           "LANGUAGE plpgsql; SELECT $$a;b$$")
    assert texts(sql, "postgresql") == [
        "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ "
        "LANGUAGE plpgsql",
        "SELECT $$a;b$$",
    ]


def one(sql: str, dialect: str) -> Any:
    [stmt] = split_statements(sql, dialect)
    return stmt


def test_named_parameters_for_sqlite_are_passed_as_a_dict_of_the_names_used() -> None:
    stmt = one("SELECT :a, ':b', :a -- :c", "sqlite")
    assert bind(stmt, {"a": 1, "b": 2, "c": 3}, "sqlite") == ("SELECT :a, ':b', :a -- :c",
                                                              {"a": 1})


def test_named_parameters_for_postgres_become_numbered_and_casts_stay() -> None:
    stmt = one("SELECT :b::text, :a, :b, '{\"k\": 1}'::jsonb ? 'k'", "postgresql")
    assert bind(stmt, {"a": 1, "b": "x"}, "postgresql") == (
        "SELECT $1::text, $2, $1, '{\"k\": 1}'::jsonb ? 'k'", ["x", 1])


def test_positional_parameters() -> None:
    # $n is PostgreSQL's spelling; for SQLite it becomes ?n; a bare ? takes the next number.
    stmt = one("SELECT ?, $3, ?", "sqlite")
    assert bind(stmt, [1, 2, 3, 4, 5], "sqlite") == ("SELECT ?, ?3, ?", (1, 2, 3, 4))
    assert bind(one("SELECT $2", "postgresql"), [1, 2, 3], "postgresql") == ("SELECT $2",
                                                                             [1, 2])


@pytest.mark.parametrize(
    ("sql", "parameters", "words"),
    [
        ("SELECT :a", {"b": 1}, "uses :a but parameters has no 'a'"),
        ("SELECT :a", [1], "parameters is a list"),
        ("SELECT ?", {"a": 1}, "parameters is a dict"),
        ("SELECT ?, ?", [1], "needs 2 parameter(s), parameters has 1"),
        ("SELECT :a", None, "parameters= is not given"),
    ],
)
def test_binding_mistakes_are_explained(sql: str, parameters: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        bind(one(sql, "sqlite"), parameters, "sqlite")


def test_values_become_json() -> None:
    moment = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert to_json_value({
        "d": Decimal("1.10"), "t": moment, "day": date(2024, 5, 1), "at": time(8, 15),
        "span": timedelta(minutes=90), "id": uuid.UUID(int=1), "raw": b"\x01\x02\xff",
        "nums": (1, 2.5, None), "inf": float("inf"), "flag": False,
    }) == {
        "d": "1.10", "t": "2024-05-01T12:30:00+00:00", "day": "2024-05-01", "at": "08:15:00",
        "span": 5400.0, "id": "00000000-0000-0000-0000-000000000001", "raw": "AQL/",
        "nums": [1, 2.5, None], "inf": "inf", "flag": False,
    }


class PgType:
    def __init__(self, name: str) -> None:
        self.name = name


def test_text_parameters_are_read_as_the_types_postgres_expects() -> None:
    types = [PgType(n) for n in ("date", "int4", "numeric", "bool", "text", "jsonb")]
    assert pg_args(["2024-05-17", "3", "2.25", "yes", "7", '{"a": 1}'], types) == [
        date(2024, 5, 17), 3, Decimal("2.25"), True, "7", {"a": 1}]
    assert pg_args([5], [PgType("int4")]) == [5]  # only text is converted
    with pytest.raises(ValueError, match=r"parameter \$1: cannot read 'soon' as date"):
        pg_args(["soon"], [PgType("date")])


def test_status_count() -> None:
    assert [status_count(s) for s in ("INSERT 0 5", "UPDATE 3", "CREATE TABLE", None)] == [
        5, 3, 0, 0]


def test_named_connections_give_url_user_and_password_from_the_environment() -> None:
    set_connections({
        "wh": {"url": "postgresql://127.0.0.1:5433/wh", "username": "etl",
               "password_env": "WH_PASSWORD"},
        "local": {"url": "sqlite:///data/wh.db"},
        "leaky": {"url": "postgresql://etl:hunter2@db/wh"},
    })
    try:
        target = resolve_target("wh", {"WH_PASSWORD": "s3cret"})
        assert (target.dialect, target.url, target.password) == (
            "postgresql", "postgresql://etl@127.0.0.1:5433/wh", "s3cret")
        assert resolve_target("local", {}).sqlite_path == "data/wh.db"
        assert resolve_target("sqlite:////abs/x.db", {}).sqlite_path == "/abs/x.db"
        with pytest.raises(ValueError, match="WH_PASSWORD \\(password_env\\) is not set"):
            resolve_target("wh", {})
        with pytest.raises(ValueError, match="connection 'leaky': the URL holds a password"):
            resolve_target("leaky", {})
        with pytest.raises(ConnectionNotFound, match="known: leaky, local, wh"):
            resolve_target("nope", {})
    finally:
        set_connections({})
