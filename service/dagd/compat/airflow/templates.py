"""Airflow's templates: the templated fields of an operator rendered with the Airflow
context, the DAG's `user_defined_macros` and `user_defined_filters`, Airflow's date
filters, `render_template_as_native_obj`, and template files (`.sql`, `.sh`, a field's
`template_ext`) found in `template_searchpath` or the DAG file's folder.

Rendering is dagd's sandbox (`dagd.templating`): no attribute access to Python
internals, a refusal names the task and the field. A bash command is rendered by
`render_shell` (a value never becomes shell text) with these same names. A template
file's name must stay inside the folder it is found in (no `..`, no absolute path).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2.nativetypes import NativeEnvironment

from dagd.authoring.context import Context as DagdContext
from dagd.templating import (
    _OPTIONS,
    TemplateRenderError,
    _Environment,
    _from_string,
    _raw,
    modes_with,
)


class _NativeSandbox(NativeEnvironment, _Environment):
    """render_template_as_native_obj: a template of one expression gives its value."""


def _date_filter(fmt: str) -> Any:
    return lambda value: value.strftime(fmt) if value is not None else None


FILTERS = {
    "ds": _date_filter("%Y-%m-%d"),
    "ds_nodash": _date_filter("%Y%m%d"),
    "ts": lambda value: value.isoformat() if value is not None else None,
    "ts_nodash": _date_filter("%Y%m%dT%H%M%S"),
    "ts_nodash_with_tz": lambda value: value.isoformat().replace("-", "").replace(":", "")
    if value is not None else None,
    "raw": _raw,
}


def environment(dag: Any) -> _Environment:
    """The DAG's template environment (made once per DAG)."""
    env = getattr(dag, "jinja", None)
    if env is None:
        cls = _NativeSandbox if getattr(dag, "render_template_as_native_obj", False) \
            else _Environment
        env = cls(**_OPTIONS)
        env.filters.update(FILTERS)
        env.filters.update(getattr(dag, "user_defined_filters", None) or {})
        if hasattr(dag, "jinja"):
            dag.jinja = env
    return env


def shell_environment(dag: Any) -> _Environment:
    """The environment a bash_command renders in (dagd's shell rules), with the same
    filters as the DAG's other templates (made once per DAG)."""
    env = getattr(dag, "shell_jinja", None)
    if env is None:
        env = modes_with({**FILTERS, **(getattr(dag, "user_defined_filters", None) or {})})
        if hasattr(dag, "shell_jinja"):
            dag.shell_jinja = env
    return env


def names(context: dict[str, Any], dag: Any) -> dict[str, Any]:
    """What a template sees: the Airflow context and the DAG's user_defined_macros."""
    return {**(getattr(dag, "user_defined_macros", None) or {}), **context}


def search_path(dag: Any) -> list[Path]:
    """template_searchpath (a relative folder is the DAG file's folder's), then the DAG
    file's folder."""
    here = Path(dag.fileloc).parent if dag.fileloc else None
    folders = [here / p if here is not None else Path(p)
               for p in getattr(dag, "template_searchpath", None) or []]
    if here is not None:
        folders.append(here)
    return folders


def read_template(name: str, dag: Any, *, where: dict[str, Any]) -> str:
    """The text of the template file `name`, from the search path."""
    relative = Path(name.strip())
    if relative.is_absolute() or ".." in relative.parts:
        raise TemplateRenderError(
            f"template file {name!r} must be named relative to template_searchpath or the "
            "DAG's folder, without '..'", **where)
    for folder in search_path(dag):
        path = (folder / relative).resolve()
        if path.is_relative_to(folder.resolve()) and path.is_file():
            return path.read_text(encoding="utf-8")
    looked = ", ".join(str(f) for f in search_path(dag)) or "nowhere"
    raise TemplateRenderError(f"template file {name!r} not found (looked in {looked})",
                              **where)


def is_template_file(value: Any, exts: Sequence[str]) -> bool:
    return isinstance(value, str) and bool(exts) and value.endswith(tuple(exts))


class Renderer:
    """Renders values for one attempt of one task."""

    def __init__(self, task: Any, context: dict[str, Any], dagd_context: DagdContext) -> None:
        self.task = task
        self.dag = task.dag
        self.env = environment(self.dag)
        self.names = names(context, self.dag)
        self.dagd_context = dagd_context
        self.exts: Sequence[str] = tuple(getattr(task, "template_ext", ()) or ())

    def where(self, field: str) -> dict[str, Any]:
        return {"dag_id": self.dag.dag_id, "task_id": self.task.task_id, "field": field}

    def render(self, value: Any, field: str) -> Any:
        if isinstance(value, str):
            if is_template_file(value, self.exts):
                value = read_template(value, self.dag, where=self.where(field))
            if "{{" not in value and "{%" not in value:
                return value
            return _from_string(self.env, value, self.names, self.dagd_context, field)
        if isinstance(value, list):
            return [self.render(v, field) for v in value]
        if isinstance(value, tuple):
            return tuple(self.render(v, field) for v in value)
        if isinstance(value, dict):
            return {k: self.render(v, f"{field}.{k}") for k, v in value.items()}
        return value


@contextmanager
def rendered_fields(task: Any, context: dict[str, Any], dagd_context: DagdContext,
                    fields: Sequence[str] | None = None) -> Iterator[Renderer]:
    """For the time of an attempt: the task's template fields rendered in place, as
    `execute` reads them; put back afterwards (a warm worker runs the same task again)."""
    renderer = Renderer(task, context, dagd_context)
    chosen = tuple(getattr(task, "template_fields", ()) if fields is None else fields)
    saved = {name: getattr(task, name) for name in chosen if hasattr(task, name)}
    try:
        for name, value in saved.items():
            setattr(task, name, renderer.render(value, name))
        yield renderer
    finally:
        for name, value in saved.items():
            setattr(task, name, value)
