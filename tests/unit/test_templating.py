"""Templates: a name in `upstream`, `conf` or `params` is found before a dict's method of
the same name, and the sandbox still refuses Python internals."""

from __future__ import annotations

from typing import Any

import pytest

from dagd.authoring.context import Context
from dagd.templating import TemplateRenderError, render

DICT_METHODS = ("get", "items", "keys", "values", "pop", "copy", "update")


def context(**fields: Any) -> Context:
    return Context(dag_id="etl", task_id="load", run_id=7, try_number=1, attempt_id=1,
                   **fields)


@pytest.mark.parametrize("name", DICT_METHODS)
def test_an_upstream_task_named_like_a_dict_method_gives_its_value(name: str) -> None:
    ctx = context(upstream={name: {"body": f"from {name}"}, "other": 1})
    assert render(f"{{{{ upstream.{name}.body }}}}", ctx, field="command") == f"from {name}"
    assert render(f"{{{{ upstream.{name} }}}}", ctx, field="command") == (
        f"{{'body': 'from {name}'}}"
    )


@pytest.mark.parametrize("name", DICT_METHODS)
def test_a_conf_key_named_like_a_dict_method_gives_its_value(name: str) -> None:
    ctx = context(conf={name: f"value of {name}"})
    assert render(f"{{{{ conf.{name} }}}}", ctx, field="url") == f"value of {name}"


def test_nested_dicts_and_params_find_the_value_first() -> None:
    ctx = context(conf={"meta": {"keys": ["a", "b"], "values": 3}},
                  params={"items": "params item"})
    assert render("{{ conf.meta.keys | join(',') }}", ctx, field="f") == "a,b"
    assert render("{{ conf.meta.values + 1 }}", ctx, field="f") == "4"
    assert render("{{ params.items }}", ctx, field="f") == "params item"
    assert render({"a": ["{{ conf.meta.keys[1] }}"]}, ctx, field="f") == {"a": ["b"]}


def test_a_dict_method_still_works_when_no_key_has_its_name() -> None:
    ctx = context(conf={"a": 1, "b": 2})
    assert render("{% for k, v in conf.items() %}{{ k }}={{ v }};{% endfor %}", ctx,
                  field="f") == "a=1;b=2;"
    assert render("{{ conf.get('a') }} {{ conf.get('z', 'none') }}", ctx, field="f") == "1 none"


def test_python_internals_are_still_refused() -> None:
    ctx = context(conf={"x": 1})
    for template in ("{{ conf.__class__ }}", "{{ conf.__class__.__mro__ }}",
                     "{{ conf.x.__class__.mro() }}", "{{ conf.get.__self__ }}"):
        with pytest.raises(TemplateRenderError) as caught:
            render(template, ctx, field="command")
        assert str(caught.value).startswith(
            "DAG 'etl', task 'load', field 'command': template "), template


def test_a_body_key_named_like_an_internal_is_only_data() -> None:
    # The item wins: a webhook body {"__class__": ...} gives that string, not the type.
    ctx = context(conf={"__class__": "just text"})
    assert render("{{ conf.__class__ }}", ctx, field="f") == "just text"


def test_a_missing_name_is_still_an_error() -> None:
    ctx = context(conf={"a": 1}, upstream={"get": {}})
    for template, missing in (("{{ conf.nope }}", "'dict object' has no attribute 'nope'"),
                              ("{{ upstream.get.body }}", "has no attribute 'body'"),
                              ("{{ nope }}", "'nope' is undefined")):
        with pytest.raises(TemplateRenderError, match="template error: ") as caught:
            render(template, ctx, field="command")
        assert missing in str(caught.value), template
