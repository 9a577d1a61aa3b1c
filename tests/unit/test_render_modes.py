"""The render modes that keep a value data: a shell command refers to its values (never
holds them as shell text), a command without a shell keeps each value inside its
argument, a URL percent-encodes values in its path and query, SQL text takes only names
and numbers; `| raw` splices as is."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from dagd.authoring.context import Context
from dagd.templating import (
    TemplateRenderError,
    modes_with,
    render,
    render_shell,
    render_sql,
    render_url,
    render_words,
)


def context(**conf: Any) -> Context:
    return Context(dag_id="etl", task_id="load", run_id=7, try_number=1, attempt_id=1,
                   conf=conf)


EVIL = "x'\"; touch pwned `id` $(id) $HOME\n*"


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("echo {{ conf.v }}", 'echo "${DAGD_ARG_1}"'),
        ('echo "a {{ conf.v }} b"', 'echo "a ${DAGD_ARG_1} b"'),
        ("echo 'a {{ conf.v }} b'", "echo 'a '\"${DAGD_ARG_1}\"' b'"),
        ('echo "$(cat {{ conf.v }})"', 'echo "$(cat "${DAGD_ARG_1}")"'),
        ("echo `cat {{ conf.v }}`", 'echo `cat "${DAGD_ARG_1}"`'),
        ("echo \\' {{ conf.v }}", "echo \\' \"${DAGD_ARG_1}\""),  # an escaped quote
        ("# it's\necho {{ conf.v }}", "# it's\necho \"${DAGD_ARG_1}\""),  # a comment
        ("cat <<EOF\nit's {{ conf.v }}\nEOF\necho {{ conf.v }}",
         "cat <<EOF\nit's ${DAGD_ARG_1}\nEOF\necho \"${DAGD_ARG_2}\""),
        ("cat <<-'END'\n\tit's\n\tEND\necho {{ conf.v }}",
         "cat <<-'END'\n\tit's\n\tEND\necho \"${DAGD_ARG_1}\""),
        ("cat <<< {{ conf.v }}", 'cat <<< "${DAGD_ARG_1}"'),
    ],
    ids=["bare", "double", "single", "nested", "backquotes", "escaped", "comment",
         "heredoc", "quoted_heredoc_before", "herestring"],
)
def test_a_shell_command_refers_to_each_value_quoted_for_where_it_stands(
    template: str, text: str
) -> None:
    rendered = render_shell(template, context(v=EVIL), field="command")
    assert rendered.text == text
    assert set(rendered.env.values()) == {EVIL}
    assert EVIL not in rendered.text


def test_raw_values_are_shell_text_and_everything_else_stays_out_of_it() -> None:
    ctx = context(pre="trap '' TERM; ", v="a b", n=3)
    rendered = render_shell("{{ conf.pre | raw }}echo {{ conf.v }} {{ conf.n + 1 }} "
                            "{{ conf.v | upper }}", ctx, field="command")
    assert rendered.text == ("trap '' TERM; echo \"${DAGD_ARG_1}\" \"${DAGD_ARG_2}\" "
                             "\"${DAGD_ARG_3}\"")
    assert rendered.env == {"DAGD_ARG_1": "a b", "DAGD_ARG_2": "4", "DAGD_ARG_3": "A B"}
    # A filter after raw makes a new value: data again.
    assert render_shell("{{ conf.pre | raw | upper }}", ctx, field="c").env == {
        "DAGD_ARG_1": "TRAP '' TERM; "}
    # In other settings, raw changes nothing.
    assert render("{{ conf.pre | raw }}", ctx, field="env") == "trap '' TERM; "


def test_a_macro_or_a_set_block_is_one_value() -> None:
    ctx = context(v="a;b")
    template = ("{% macro m(x) %}[{{ x }}]{% endmacro %}{% set s %}<{{ conf.v }}>{% endset %}"
                "echo {{ m(conf.v) }} {{ s }}")
    rendered = render_shell(template, ctx, field="command")
    assert rendered.text == 'echo "${DAGD_ARG_1}" "${DAGD_ARG_2}"'
    assert rendered.env == {"DAGD_ARG_1": "[a;b]", "DAGD_ARG_2": "<a;b>"}


def test_shell_refusals_name_the_task_and_field() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render_shell("cat <<'EOF'\n{{ conf.v }}\nEOF", context(v="x"), field="command")
    assert str(caught.value).startswith("DAG 'etl', task 'load', field 'command': a value in "
                                        "a quoted here-document")
    with pytest.raises(TemplateRenderError) as missing:
        render_shell("echo {{ conf.nope }}", context(), field="command")
    assert "'dict object' has no attribute 'nope'" in str(missing.value)


def test_a_command_without_a_shell_keeps_each_value_inside_its_argument() -> None:
    ctx = context(v="hello world", evil=EVIL, opt="--all")
    assert render_words("printf '%s|' {{ conf.v }} 'x {{ conf.evil }}' {{ conf.opt | raw }}",
                        ctx, field="command") == ["printf", "%s|", "hello world",
                                                  f"x {EVIL}", "--all"]
    assert render_words("echo {{ conf.empty }}", context(empty=""), field="c") == ["echo", ""]


@pytest.mark.parametrize(
    ("template", "url"),
    [
        ("https://x/items/{{ conf.id }}", "https://x/items/..%2Fadmin%3Fx%3D1"),
        ("https://x/s?q={{ conf.q }}&n=1", "https://x/s?q=a%26b%3Dc%20%23d&n=1"),
        ("https://x/{{ conf.dots }}/{{ conf.dot }}", "https://x/%2E%2E/%2E"),
        ("{{ conf.base }}/items/{{ conf.id }}", "http://127.0.0.1:8080/v1/items/..%2Fadmin%3Fx%3D1"),
        ("https://{{ conf.host }}:{{ conf.port }}/a b", "https://api.example.com:8443/a%20b"),
        ("items/{{ conf.id }}", "items/..%2Fadmin%3Fx%3D1"),
        ("{{ conf.id }}", "..%2Fadmin%3Fx%3D1"),  # not an http(s) URL: not a base
        ("https://x/{{ conf.path | raw }}", "https://x/a/b?c=1"),
        ("https://x/{{ conf.word }}", "https://x/caf%C3%A9"),
    ],
)
def test_values_in_a_url_are_percent_encoded(template: str, url: str) -> None:
    ctx = context(id="../admin?x=1", q="a&b=c #d", dots="..", dot=".",
                  base="http://127.0.0.1:8080/v1", host="api.example.com", port=8443,
                  path="a/b?c=1", word="café")
    assert render_url(template, ctx, field="url") == url


def test_a_value_that_would_move_the_host_is_refused() -> None:
    for value in ("evil.example@", "x/y", "x?y", "x#y"):
        with pytest.raises(TemplateRenderError) as caught:
            render_url("https://api.example.com{{ conf.v }}/x", context(v=value), field="url")
        assert "a value in the url's host or port must be a host name or a port" in str(
            caught.value)


def test_shlex_agrees_on_what_the_shell_text_holds() -> None:
    """The rendered command lexes the same whatever the value: only references."""
    for value in (EVIL, "", "-n", "a\nb"):
        rendered = render_shell("echo A={{ conf.v }} 'q {{ conf.v }}'", context(v=value),
                                field="command")
        assert shlex.split(rendered.text) == ["echo", "A=${DAGD_ARG_1}", "q ${DAGD_ARG_2}"]


def test_sql_text_takes_names_and_numbers_and_refuses_anything_else() -> None:
    ctx = context(table="public.sales_2024", n=3, x=1.5)
    assert render_sql("SELECT * FROM {{ conf.table }} LIMIT {{ conf.n }} -- {{ conf.x }}",
                      ctx, field="sql") == "SELECT * FROM public.sales_2024 LIMIT 3 -- 1.5"
    for bad in ("x; DROP TABLE y", "x -- y", "'x'", "-1", "a b", "", "x.", "1e5"):
        with pytest.raises(TemplateRenderError) as caught:
            render_sql("SELECT * FROM {{ conf.t }}", context(t=bad), field="sql")
        assert "must be a name, a number or an ISO date" in str(caught.value), bad
    assert render_sql("WHERE d = '{{ conf.d }}' AND t < '{{ conf.t }}'",
                      context(d="2026-11-01", t="2026-11-01T02:00:00+01:00"),
                      field="sql") == "WHERE d = '2026-11-01' AND t < '2026-11-01T02:00:00+01:00'"
    for bad in ("2026-11-01' OR '1'='1", "2026-11-01--", "2026-11-01T02:00:00+01:00;"):
        with pytest.raises(TemplateRenderError):
            render_sql("WHERE d = '{{ conf.d }}'", context(d=bad), field="sql")
    assert render_sql("SELECT {{ conf.t | raw }}", context(t="1; SELECT 2"),
                      field="sql") == "SELECT 1; SELECT 2"


def test_a_shift_in_arithmetic_is_not_a_here_document() -> None:
    """`1 << 2` must not make the scanner think a here-document follows, or the next
    reference would go in unquoted (split and globbed)."""
    rendered = render_shell("n=$(( 1 << 2 ))\nls -d {{ conf.v }}", context(v="*"),
                            field="command")
    assert rendered.text == 'n=$(( 1 << 2 ))\nls -d "${DAGD_ARG_1}"'
    rendered = render_shell("(( n = 1 << 2 )); ls -d {{ conf.v }}", context(v="*"),
                            field="command")
    assert rendered.text.endswith('ls -d "${DAGD_ARG_1}"')


@pytest.mark.parametrize("template", [
    "echo $(( {{ conf.v }} + 1 ))",
    "(( x = {{ conf.v }} ))",
    "echo $(( ({{ conf.v }}) * 2 ))",
    "[[ {{ conf.v }} -gt 5 ]]",
    "[ 5 -lt \"{{ conf.v }}\" ]",
])
def test_a_value_in_arithmetic_must_be_a_whole_number(template: str) -> None:
    """bash evaluates what arithmetic expands (`a[$(touch pwned)]` runs the command)."""
    with pytest.raises(TemplateRenderError, match="must be a whole number"):
        render_shell(template, context(v="a[$(touch pwned)]"), field="command")
    rendered = render_shell(template, context(v=42), field="command")
    assert "42" in rendered.text or rendered.env == {"DAGD_ARG_1": "42"}


def test_a_task_keeps_the_proxy_settings_it_needs_and_none_of_the_secrets() -> None:
    from dagd.executors.env import task_environment

    env = task_environment({"PATH": "/bin", "https_proxy": "http://proxy:3128",
                            "NO_PROXY": "localhost", "WAREHOUSE_PASSWORD": "pw"})
    assert env == {"PATH": "/bin", "https_proxy": "http://proxy:3128",
                   "NO_PROXY": "localhost"}


def test_more_filters_keep_a_value_by_reference_and_stay_in_their_environment() -> None:
    jinja = modes_with({"shout": lambda v: str(v).upper()})
    rendered = render_shell("echo {{ conf.v | shout }} {{ conf.v | raw }}", context(v="a;b"),
                            field="command", jinja=jinja)
    assert rendered.text == 'echo "${DAGD_ARG_1}" a;b'  # still `| raw` only is text
    assert rendered.env == {"DAGD_ARG_1": "A;B"}
    with pytest.raises(TemplateRenderError, match="shout"):  # not added to the plain one
        render_shell("echo {{ conf.v | shout }}", context(v="x"), field="command")
