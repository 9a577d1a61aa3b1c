"""`Param` and `ParamsDict`: a DAG's params with their defaults. The value (the default,
or the run's conf of the same name) reaches the task; the schema keywords (`type`,
`enum`, `minimum`, ...) are kept for the description and not checked."""

from __future__ import annotations

from typing import Any


class Param:
    """A param's default value and its JSON-schema keywords."""

    def __init__(self, default: Any = None, description: str | None = None,
                 **schema: Any) -> None:
        self.value = default
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
        super().__init__(plain_params({**(values or {}), **kwargs}))


def plain_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Params as dagd keeps them: each Param replaced by its default value."""
    return {k: (v.value if isinstance(v, Param) else v) for k, v in (params or {}).items()}
