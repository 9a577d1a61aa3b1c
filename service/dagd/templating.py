"""Templates in task settings: `{{ ds }}`, `{{ conf.path }}`, `{{ params.x }}`.

Rendered by Jinja2's sandboxed environment, so a value that comes from outside (a
webhook's body in `conf`) can never reach Python internals: attribute access to
`__class__`, `__globals__`, `mro` and the like is refused, and a refusal is a clear
error naming the task and the setting. Attribute access finds a dict's value before
its method: `{{ upstream.get.body }}` reads the upstream task named `get`, and
`{{ conf.items }}` a body's key "items". Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from dagd.authoring.context import Context
from dagd.errors import DagdError


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with one change: `a.b` on a mapping that has the key "b" is that item.

    Jinja2 tries the attribute first, so a task named `get` or a body key `items` would
    give the dict's method. The item is data, so returning it cannot reach Python
    internals; everything else (the sandbox's checks, a missing name) is Jinja2's own.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and isinstance(attribute, str):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


_env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class TemplateRenderError(DagdError):
    code = "template"


def template_context(context: Context) -> dict[str, Any]:
    """The names a template sees."""
    logical = context.logical_date
    return {
        "ds": context.ds,
        "ds_nodash": context.ds.replace("-", "") if context.ds else None,
        "ts": logical.isoformat() if logical else None,
        "logical_date": logical,
        "run_id": context.run_id,
        "dag_id": context.dag_id,
        "task_id": context.task_id,
        "try_number": context.try_number,
        "map_index": context.map_index,
        "ti_key": context.ti_key,
        "conf": context.conf,
        "params": context.params,
        "upstream": context.upstream,
    }


def render(value: Any, context: Context, *, field: str) -> Any:
    """Render every string inside `value` (strings, lists, dicts) as a template."""
    names = template_context(context)
    return _render(value, names, context, field)


def _render(value: Any, names: dict[str, Any], context: Context, field: str) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            return _env.from_string(value).render(names)
        except SecurityError as exc:
            raise TemplateRenderError(f"template refused by the sandbox: {exc}",
                                      dag_id=context.dag_id, task_id=context.task_id,
                                      field=field) from None
        except TemplateError as exc:
            raise TemplateRenderError(f"template error: {exc}", dag_id=context.dag_id,
                                      task_id=context.task_id, field=field) from None
    if isinstance(value, list):
        return [_render(v, names, context, field) for v in value]
    if isinstance(value, tuple):
        return tuple(_render(v, names, context, field) for v in value)
    if isinstance(value, dict):
        return {k: _render(v, names, context, f"{field}.{k}") for k, v in value.items()}
    return value
