"""A DAG's param schemas, and the check of a manual run's conf against them. Pure.

A schema is a dict of JSON Schema keywords, what an Airflow `Param` carries. Checked:
`type` (one or a list), `enum`, `const`, `minimum`, `maximum`, `exclusiveMinimum`,
`exclusiveMaximum`, `multipleOf`, `minLength`, `maxLength`, `pattern` (searched, as JSON
Schema does), `format` (`date`, `date-time`, `time`, `email`), `minItems`, `maxItems`.
Other keywords are kept and not checked. A param without a default must be given in the
conf; a default is the DAG author's and is not checked again at each run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from dagd.errors import DagDefinitionError, InvalidInput

TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _parses(parse: Callable[[str], Any]) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            parse(text)
        except ValueError:
            return False
        return True

    return check


FORMATS: dict[str, Callable[[str], bool]] = {
    "date": lambda t: bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", t)) and _parses(
        date.fromisoformat)(t),
    "date-time": lambda t: bool(re.match(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", t)) and
    _parses(datetime.fromisoformat)(t.replace("Z", "+00:00").replace("z", "+00:00")),
    "time": lambda t: bool(re.match(r"\d{2}:\d{2}", t)) and _parses(time.fromisoformat)(
        t.replace("Z", "+00:00")),
    "email": lambda t: bool(_EMAIL.match(t)),
}


@dataclass(frozen=True)
class ParamSchema:
    """One param's JSON Schema keywords, and whether the conf must give it."""

    schema: Mapping[str, Any] = field(default_factory=dict)
    required: bool = False


def check_schema(name: str, schema: Mapping[str, Any]) -> None:
    """Refuse, when the DAG is defined, a schema that could never be checked."""
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list | tuple) else [kinds] if kinds else []:
        if kind not in TYPES:
            raise DagDefinitionError(f"param {name!r}: unknown type {kind!r}; known: "
                                     f"{', '.join(TYPES)}", field=f"params.{name}")
    if "pattern" in schema:
        try:
            re.compile(str(schema["pattern"]))
        except re.error as exc:
            raise DagDefinitionError(f"param {name!r}: pattern is not a regular expression: "
                                     f"{exc}", field=f"params.{name}") from None


def _type_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    kinds = schema.get("type")
    if kinds is None:
        return None
    names = list(kinds) if isinstance(kinds, list | tuple) else [kinds]
    if any(TYPES[k](value) for k in names):
        return None
    return f"must be of type {' or '.join(names)}, got {value!r}"


def _choice_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    if "enum" in schema and value not in list(schema["enum"]):
        return f"must be one of {list(schema['enum'])!r}, got {value!r}"
    if "const" in schema and value != schema["const"]:
        return f"must be {schema['const']!r}, got {value!r}"
    return None


def _number_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    if not TYPES["number"](value):
        return None
    bounds = (("minimum", lambda b: value >= b, ">="), ("maximum", lambda b: value <= b, "<="),
              ("exclusiveMinimum", lambda b: value > b, ">"),
              ("exclusiveMaximum", lambda b: value < b, "<"))
    for key, holds, sign in bounds:
        if key in schema and not holds(schema[key]):
            return f"must be {sign} {schema[key]!r}, got {value!r}"
    step = schema.get("multipleOf")
    if step and not math.isclose(value / step, round(value / step)):
        return f"must be a multiple of {step!r}, got {value!r}"
    return None


def _string_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    if not isinstance(value, str):
        return None
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"must be at least {schema['minLength']} characters long, got {value!r}"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"must be at most {schema['maxLength']} characters long, got {value!r}"
    if "pattern" in schema and not re.search(str(schema["pattern"]), value):
        return f"must match the pattern {schema['pattern']!r}, got {value!r}"
    check = FORMATS.get(str(schema.get("format")))
    if check is not None and not check(value):
        return f"must be a {schema['format']} (format), got {value!r}"
    return None


def _array_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    if not isinstance(value, list):
        return None
    if "minItems" in schema and len(value) < schema["minItems"]:
        return f"must have at least {schema['minItems']} items, got {len(value)}"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"must have at most {schema['maxItems']} items, got {len(value)}"
    return None


def problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """What is wrong with `value` by `schema`, in words; None when nothing is."""
    for check in (_type_problem, _choice_problem, _number_problem, _string_problem,
                  _array_problem):
        found = check(value, schema)
        if found is not None:
            return found
    return None


def check_conf(dag: Any, conf: Mapping[str, Any]) -> None:
    """Refuse a manual run's conf that a param of the DAG does not accept (422, naming
    the param): a value the schema refuses, or no value for a param without a default."""
    schemas: Mapping[str, ParamSchema] = getattr(dag, "param_schemas", None) or {}
    for name, spec in schemas.items():
        where = {"dag_id": dag.dag_id, "field": f"params.{name}"}
        if name not in conf:
            if spec.required:
                raise InvalidInput(f"param {name!r} has no default: the conf must give it",
                                   **where)
            continue
        found = problem(conf[name], spec.schema)
        if found is not None:
            raise InvalidInput(f"param {name!r} {found}", **where)


def _json_type_ok(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    for kind in (str, list, dict):
        if isinstance(default, kind):
            return isinstance(value, kind)
    return True


def check_default_types(dag: Any, body: Mapping[str, Any]) -> None:
    """Keys of a run's conf (a webhook's body, a manual run's conf) that the DAG declares
    in `params` must have the type of the param's default (422, naming the key)."""
    for key, default in dag.params.items():
        if key in body and not _json_type_ok(default, body[key]):
            raise InvalidInput(
                f"{key!r} must be {type(default).__name__} like the DAG's default "
                f"{default!r}, got {body[key]!r}",
                dag_id=dag.dag_id, field=key,
            )
