"""`Param` and `ParamsDict`: a DAG's params with their defaults and schemas. The value
(the default, or the run's conf of the same name) reaches the task; the schema keywords
(`type`, `enum`, `minimum`, ...) check a manual run's conf when it is triggered
(dagd.authoring.params says which keywords), and a Param without a default must be
given in it."""

from __future__ import annotations

from typing import Any

from dagd.authoring.params import ParamSchema, check_schema

NOTSET: Any = type("ArgNotSet", (), {"__repr__": lambda self: "NOTSET"})()


class Param:
    """A param's default value and its JSON-schema keywords."""

    def __init__(self, default: Any = NOTSET, description: str | None = None,
                 **schema: Any) -> None:
        self.has_default = default is not NOTSET
        self.value = default if self.has_default else None
        self.description = description
        self.schema = dict(schema)

    def resolve(self, value: Any = None, suppress_exception: bool = False) -> Any:
        return self.value if value is None else value

    def dump(self) -> dict[str, Any]:
        return {"value": self.value, "description": self.description, "schema": self.schema}

    def __repr__(self) -> str:
        return f"Param({self.value!r})"


class ParamsDict(dict[str, Any]):
    """A dict of params whose Param values read as their defaults."""

    def __init__(self, values: dict[str, Any] | None = None, **kwargs: Any) -> None:
        merged = {**(values or {}), **kwargs}
        super().__init__(plain_params(merged))
        self.schemas = param_schemas(merged)


def plain_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Params as dagd keeps them: each Param replaced by its default value."""
    return {k: (v.value if isinstance(v, Param) else v) for k, v in (params or {}).items()}


def param_schemas(params: dict[str, Any] | None) -> dict[str, ParamSchema]:
    """The params that check a run's conf: each Param with a schema or without a default
    (a ParamsDict keeps those of its Params)."""
    found = dict(getattr(params, "schemas", None) or {})
    for name, value in (params or {}).items():
        if isinstance(value, Param) and (value.schema or not value.has_default):
            check_schema(name, value.schema)
            found[name] = ParamSchema(dict(value.schema), required=not value.has_default)
    return found
