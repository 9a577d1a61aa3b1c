"""A run's conf checked against the DAG's Airflow `Param` schemas: each keyword's
decisions, a param without a default, a schema refused when the DAG is defined, and
what the Airflow layer hands the check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dagd.authoring.loader import load_file
from dagd.authoring.params import ParamSchema, check_conf, problem
from dagd.errors import InvalidInput

# (schema, value, accepted?)
TABLE: list[tuple[dict[str, Any], Any, bool]] = [
    ({"type": "integer"}, 3, True),
    ({"type": "integer"}, 3.0, True),  # JSON Schema: an integer-valued number
    ({"type": "integer"}, 3.5, False),
    ({"type": "integer"}, "3", False),
    ({"type": "integer"}, True, False),  # a bool is not a number
    ({"type": "number"}, 0.5, True),
    ({"type": "number"}, False, False),
    ({"type": "string"}, "x", True),
    ({"type": "string"}, None, False),
    ({"type": ["null", "string"]}, None, True),
    ({"type": "boolean"}, False, True),
    ({"type": "boolean"}, 0, False),
    ({"type": "array"}, [1], True),
    ({"type": "object"}, {"a": 1}, True),
    ({"type": "object"}, [], False),
    ({"enum": ["eu", "us"]}, "eu", True),
    ({"enum": ["eu", "us"]}, "asia", False),
    ({"const": 1}, 2, False),
    ({"minimum": 0}, 0, True),
    ({"minimum": 0}, -1, False),
    ({"maximum": 10}, 10, True),
    ({"maximum": 10}, 11, False),
    ({"exclusiveMinimum": 0}, 0, False),
    ({"exclusiveMaximum": 1}, 0.99, True),
    ({"multipleOf": 5}, 15, True),
    ({"multipleOf": 5}, 16, False),
    ({"minimum": 0}, "not a number", True),  # bounds concern numbers only
    ({"minLength": 2}, "ab", True),
    ({"minLength": 2}, "a", False),
    ({"maxLength": 3}, "abcd", False),
    ({"pattern": "^[a-z]+$"}, "abc", True),
    ({"pattern": "^[a-z]+$"}, "ab1", False),
    ({"pattern": "[0-9]"}, "ab1", True),  # searched, not matched whole
    ({"format": "date"}, "2026-12-02", True),
    ({"format": "date"}, "2026-13-02", False),
    ({"format": "date"}, "02/12/2026", False),
    ({"format": "date-time"}, "2026-12-02T04:30:00Z", True),
    ({"format": "date-time"}, "2026-12-02", False),
    ({"format": "time"}, "04:30:00", True),
    ({"format": "time"}, "25:00", False),
    ({"format": "email"}, "ops@example.com", True),
    ({"format": "email"}, "ops at example", False),
    ({"format": "hostname"}, "anything", True),  # not a format dagd checks
    ({"minItems": 1}, [], False),
    ({"maxItems": 1}, [1, 2], False),
    ({"type": "integer", "minimum": 1, "maximum": 5}, 3, True),
]


@pytest.mark.parametrize(("schema", "value", "accepted"), TABLE,
                         ids=[f"{s}-{v!r}" for s, v, _ in TABLE])
def test_each_keyword_accepts_or_says_why_not(schema: dict[str, Any], value: Any,
                                              accepted: bool) -> None:
    found = problem(value, schema)
    assert (found is None) is accepted, found
    if not accepted:
        assert repr(value) in found or str(len(value)) in found  # type: ignore[arg-type]


def dag(**schemas: ParamSchema) -> Any:
    return SimpleNamespace(dag_id="d", param_schemas=schemas)


def test_check_conf_names_the_param_and_field() -> None:
    d = dag(n=ParamSchema({"type": "integer", "minimum": 1}))
    check_conf(d, {"n": 2})
    check_conf(d, {})  # absent: its default stands
    with pytest.raises(InvalidInput, match=r"param 'n' must be >= 1, got 0") as e:
        check_conf(d, {"n": 0})
    assert e.value.status == 422 and e.value.field == "params.n" and e.value.dag_id == "d"


def test_a_param_without_a_default_must_be_in_the_conf() -> None:
    d = dag(who=ParamSchema({"type": "string"}, required=True))
    check_conf(d, {"who": "ada"})
    with pytest.raises(InvalidInput, match="param 'who' has no default: the conf must give"):
        check_conf(d, {"other": 1})


def test_a_dag_without_schemas_takes_any_conf() -> None:
    check_conf(SimpleNamespace(dag_id="d"), {"anything": object()})


WriteDag = Callable[[str, str], Path]


def test_airflow_params_become_schemas_from_the_dag_and_default_args(
    write_dag: WriteDag,
) -> None:
    dags, failure = load_file(write_dag("p.py", (
        "from airflow.sdk import DAG, Param\n"
        "from airflow.operators.empty import EmptyOperator\n"
        "with DAG('p', params={'n': Param(3, type='integer', minimum=0), 'plain': 'x',\n"
        "                      'who': Param(type='string'), 'free': Param('y')},\n"
        "         default_args={'params': {'region': Param('eu', enum=['eu', 'us'])}}):\n"
        "    EmptyOperator(task_id='a')\n")))
    assert failure is None, failure.message
    [d] = dags
    assert d.params == {"region": "eu", "n": 3, "plain": "x", "who": None, "free": "y"}
    assert d.param_schemas == {
        "region": ParamSchema({"enum": ["eu", "us"]}),
        "n": ParamSchema({"type": "integer", "minimum": 0}),
        "who": ParamSchema({"type": "string"}, required=True)}


@pytest.mark.parametrize(("param", "words"), [
    ("Param(1, type='int')", "unknown type 'int'"),
    ("Param('a', pattern='[')", "pattern is not a regular expression"),
])
def test_a_schema_that_cannot_be_checked_is_refused_at_load(write_dag: WriteDag, param: str,
                                                            words: str) -> None:
    _, failure = load_file(write_dag("bad.py", (
        "from airflow.sdk import DAG, Param\n"
        "from airflow.operators.empty import EmptyOperator\n"
        f"with DAG('bad', params={{'x': {param}}}):\n"
        "    EmptyOperator(task_id='a')\n")))
    assert failure is not None and words in failure.message and "'x'" in failure.message
