"""Templates in task settings: `{{ ds }}`, `{{ conf.path }}`, `{{ params.x }}`.

Rendered by Jinja2's sandboxed environment, so a value that comes from outside (a
webhook's body in `conf`) can never reach Python internals: attribute access to
`__class__`, `__globals__`, `mro` and the like is refused, and a refusal is a clear
error naming the task and the setting. Attribute access finds a dict's value before
its method: `{{ upstream.get.body }}` reads the upstream task named `get`, and
`{{ conf.items }}` a body's key "items". Pure: no I/O.

Three render modes keep a value data where the text around it is code or structure:

- `render_shell`: a shell command. A value never becomes shell text: the command refers
  to it as `"${DAGD_ARG_1}"` and the value travels in the environment (a POSIX shell
  never reads an expanded variable as code; bash's arithmetic does, so in `$(( ))`,
  `(( ))` and beside `-eq`-style comparisons only a whole number is accepted). The
  reference is quoted for where it stands (bare, in double quotes, in single quotes), so
  a value is one argument, or part of the quoted word around it, whatever it holds.
- `render_words`: a command run without a shell, split into arguments like a shell would
  split the template's own text; each value lands verbatim inside its argument.
- `render_sql`: SQL text. A value must be a name (`sales`, `public.sales_2024`), a
  number or an ISO date or time (`'{{ ds }}'`, as Airflow's SQL writes it); anything
  else is refused: values belong in bound parameters.
- `render_html`: HTML (an email's HTML part). Every value is HTML-escaped, so a conf
  value shows as text and never becomes markup; `| raw` (or Jinja2's `| safe`) keeps it.
- `render_url`: a URL. A value in the path, query or fragment is percent-encoded, so it
  stays one path segment or one query value; a value the URL begins with (`{{ conf.base
  }}/items`, an http(s) URL) is its base, taken as is; a value in the host or port part
  must be a host name or a port.

`{{ value | raw }}` (the last filter of the expression) splices the value in as is, as
shell text or URL text: for the author who means it.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError, pass_context
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup
from yarl import URL

from dagd.authoring.context import Context
from dagd.errors import DagdError

ARG_PREFIX = "DAGD_ARG_"  # the environment variables a shell command's values travel in


class Raw(str):
    """A value marked `| raw`: spliced into a command or a URL as it is."""

    __slots__ = ()


def _raw(value: Any) -> Raw:
    return Raw(value)


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


@dataclass
class _Collected:
    """The values of one render in a mode: each `{{ }}` leaves a token in the text."""

    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    values: list[str] = field(default_factory=list)  # a Raw where `| raw` said so

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(f"dagd{self.nonce}v([0-9]+)z")

    def token(self, value: Any) -> str:
        # Text now, inside the render: a missing name raises as a template error.
        text = value if isinstance(value, Raw) else str(value)
        if self.nonce in text:
            # A macro's or a {% set %} block's output holds the tokens of its own values:
            # it is one value, with theirs in it.
            inner = self.pattern.sub(lambda m: self.values[int(m[1])], text)
            text = Raw(inner) if isinstance(value, Raw) else inner
        self.values.append(text)
        return f"dagd{self.nonce}v{len(self.values) - 1}z"


_collecting: ContextVar[_Collected | None] = ContextVar("dagd_template_values", default=None)


@pass_context  # also keeps Jinja2 from finalizing constants once, at compile time
def _collect(_: JinjaContext, value: Any) -> Any:
    collected = _collecting.get()
    return value if collected is None else collected.token(value)


_OPTIONS: dict[str, Any] = {"undefined": StrictUndefined, "autoescape": False,
                            "keep_trailing_newline": True}
_env = _Environment(**_OPTIONS)
_modes = _Environment(finalize=_collect, **_OPTIONS)
for _e in (_env, _modes):
    _e.filters["raw"] = _raw
_html = _Environment(**{**_OPTIONS, "autoescape": True})
_html.filters["raw"] = Markup


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
        return str(_from_string(_env, value, names, context, field))
    if isinstance(value, list):
        return [_render(v, names, context, field) for v in value]
    if isinstance(value, tuple):
        return tuple(_render(v, names, context, field) for v in value)
    if isinstance(value, dict):
        return {k: _render(v, names, context, f"{field}.{k}") for k, v in value.items()}
    return value


def _from_string(env: _Environment, source: str, names: dict[str, Any], context: Context,
                 field: str) -> str:
    try:
        return env.from_string(source).render(names)
    except SecurityError as exc:
        raise TemplateRenderError(f"template refused by the sandbox: {exc}",
                                  dag_id=context.dag_id, task_id=context.task_id,
                                  field=field) from None
    except TemplateError as exc:
        raise TemplateRenderError(f"template error: {exc}", dag_id=context.dag_id,
                                  task_id=context.task_id, field=field) from None


def modes_with(filters: Mapping[str, Any]) -> _Environment:
    """The environment of the modes (shell, words, SQL, URL) with more filters (an
    Airflow DAG's date filters and user_defined_filters); made once by its caller."""
    env = _modes.overlay()
    env.filters = {**_modes.filters, **filters, "raw": _raw}  # overlay shares the dict
    return env


def _tokens(source: str, context: Context, field: str,
            names: dict[str, Any] | None = None,
            env: _Environment | None = None) -> tuple[list[str], list[str]]:
    """The rendered text split at its values: [text, value, text, value, ..., text].
    `names`: the names the template sees, instead of `template_context(context)`;
    `env`: an environment from `modes_with`, instead of the plain one."""
    if "{{" not in source and "{%" not in source:
        return [source], []
    collected = _Collected()
    reset = _collecting.set(collected)
    try:
        text = _from_string(_modes if env is None else env, source,
                            template_context(context) if names is None else names,
                            context, field)
    finally:
        _collecting.reset(reset)
    parts = collected.pattern.split(text)
    texts = parts[0::2]
    values = [collected.values[int(i)] for i in parts[1::2]]
    return texts, values


# -- shell commands ---------------------------------------------------------------------
@dataclass(frozen=True)
class ShellText:
    """A rendered shell command: `text` refers to each value as `${DAGD_ARG_n}`; `env`
    holds them."""

    text: str
    env: dict[str, str]


def render_shell(source: str, context: Context, *, field: str,
                 names: dict[str, Any] | None = None,
                 jinja: _Environment | None = None) -> ShellText:
    """Render a command for `sh -c`: values by reference, `| raw` values as shell text.
    `names`: what the template sees, if not dagd's names (an Airflow task's context);
    `jinja`: an environment from `modes_with`, for more filters."""
    texts, values = _tokens(source, context, field, names, jinja)
    scan = _ShellQuotes()
    out = [texts[0]]
    scan.feed(texts[0])
    env: dict[str, str] = {}
    for before, value, after in zip(texts[:-1], values, texts[1:], strict=True):
        if isinstance(value, Raw):
            out.append(str(value))
            scan.feed(str(value))
        elif (_NUMERIC_BEFORE.search(before) or _NUMERIC_AFTER.match(after)) and not (
                _INTEGER.fullmatch(str(value))):
            # `[[ $x -gt 5 ]]`: bash evaluates the operands of these as arithmetic.
            raise TemplateRenderError(
                f"a value compared with -eq, -ne, -lt, -le, -gt or -ge must be a whole "
                f"number, got {str(value)[:100]!r}", dag_id=context.dag_id,
                task_id=context.task_id, field=field)
        elif scan.heredoc is not None and scan.heredoc[1]:
            raise TemplateRenderError(
                "a value in a quoted here-document (<<'EOF') stays as written: give it "
                "in env= and unquote the delimiter, or use | raw", dag_id=context.dag_id,
                task_id=context.task_id, field=field)
        elif scan.in_arithmetic:
            # `$(( ))` and `(( ))` evaluate what they expand (bash runs `a[$(cmd)]`), and
            # a quoted reference is no number there: only a whole number goes in, as is.
            text = str(value)
            if not _INTEGER.fullmatch(text):
                raise TemplateRenderError(
                    f"a value in shell arithmetic must be a whole number, got {text[:100]!r}",
                    dag_id=context.dag_id, task_id=context.task_id, field=field)
            out.append(text)
            scan.feed(text)
        else:
            name = f"{ARG_PREFIX}{len(env) + 1}"
            env[name] = str(value)
            out.append(scan.reference(name))
        out.append(after)
        scan.feed(after)
    return ShellText("".join(out), env)


_INTEGER = re.compile(r"-?[0-9]{1,18}")
_NUMERIC_OPERATOR = r"-(?:eq|ne|lt|le|gt|ge)"
_NUMERIC_BEFORE = re.compile(_NUMERIC_OPERATOR + r"[\s\"']*$")
_NUMERIC_AFTER = re.compile(r"[\s\"']*" + _NUMERIC_OPERATOR + r"\b")


class _ShellQuotes:
    """Follows POSIX sh quoting through a command's own text, to quote a reference for
    where it stands. Only correctness rests on this: a reference is an expansion in any
    context the guess could be wrong about, never code.

    Contexts: unquoted (also inside `$( )`, `( )` and backquotes), double quotes, single
    quotes, arithmetic (`$(( ))`, `(( ))`: there `<<` is a shift, not a here-document),
    a here-document's body (expanding, or quoted: literal), a comment.
    """

    _HEREDOC = re.compile(r"<<(-?)[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|([^\s;&|<>()]+))")

    def __init__(self) -> None:
        # U, D, S, P (inside $( ) or ( )), B (backquotes), A (arithmetic), a (its parens)
        self.stack: list[str] = ["U"]
        self.escaped = False
        self.comment = False
        self.prev = "\n"
        self.pending: list[tuple[str, bool, bool]] = []  # here-documents: delimiter, quoted, -
        self.heredoc: tuple[str, bool, bool] | None = None
        self.line = ""  # the here-document's line so far

    @property
    def in_arithmetic(self) -> bool:
        return self.heredoc is None and self.stack[-1] in ("A", "a")

    def reference(self, name: str) -> str:
        self.prev = "x"
        if self.heredoc is not None:
            self.line += "x"
            return "${" + name + "}"
        top = self.stack[-1]
        if top == "D":
            return "${" + name + "}"
        if top == "S":
            return "'\"${" + name + "}\"'"
        return '"${' + name + '}"'

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            c = text[i]
            if self.heredoc is not None:
                self._heredoc_char(c)
            elif self.escaped:
                self.escaped = False
            elif self.comment:
                self.comment = c != "\n"
                if c == "\n":
                    self._newline()
            else:
                i += self._char(text, i)
            self.prev = c
            i += 1

    def _char(self, text: str, i: int) -> int:
        """Follow the character at `i`; returns how many more it consumed."""
        c, nxt, top = text[i], text[i + 1 : i + 2], self.stack[-1]
        if top == "S":
            if c == "'":
                self.stack.pop()
        elif c == "\\":
            self.escaped = True
        elif c == "`":
            if top == "B":
                self.stack.pop()
            else:
                self.stack.append("B")
        elif c == "$" and nxt == "(":
            if text[i + 2 : i + 3] == "(":
                self.stack.append("A")
                return 2
            self.stack.append("P")
            return 1
        elif top in ("A", "a"):
            return self._arithmetic(text, i, top)
        elif top == "D":
            if c == '"':
                self.stack.pop()
        else:
            return self._bare(text, i, top)
        return 0

    def _bare(self, text: str, i: int, top: str) -> int:
        """An unquoted character (at the top, in `$( )`, `( )` or backquotes)."""
        c = text[i]
        if c in "'\"":
            self.stack.append("S" if c == "'" else "D")
        elif c == "(" and nxt_is(text, i, "(") and self.prev in " \t\n;&|(":
            self.stack.append("A")  # `(( ... ))`, an arithmetic command
            return 1
        elif c == "(":
            self.stack.append("P")
        elif c == ")" and top == "P":
            self.stack.pop()
        elif c == "#" and (self.prev.isspace() or self.prev in ";&|()<>"):
            self.comment = True
        elif text.startswith("<<", i) and not text.startswith("<<<", i):
            match = self._HEREDOC.match(text, i)
            if match:
                word = next(g for g in match.groups()[1:] if g is not None)
                quoted = match[2] is not None or match[3] is not None or "\\" in word
                self.pending.append((word.replace("\\", ""), quoted, bool(match[1])))
                return len(match[0]) - 1
        elif c == "\n" and len(self.stack) == 1:
            self._newline()
        return 0

    def _arithmetic(self, text: str, i: int, top: str) -> int:
        c = text[i]
        if c == "(":
            self.stack.append("a")
        elif c == ")" and top == "a":
            self.stack.pop()
        elif c == ")" and top == "A" and nxt_is(text, i, ")"):
            self.stack.pop()
            return 1
        elif c in "'\"":
            self.stack.append("S" if c == "'" else "D")
        return 0

    def _newline(self) -> None:
        if self.pending:
            self.heredoc = self.pending.pop(0)
            self.line = ""

    def _heredoc_char(self, c: str) -> None:
        assert self.heredoc is not None
        if c != "\n":
            self.line += c
            return
        word, _, strip_tabs = self.heredoc
        if (self.line.lstrip("\t") if strip_tabs else self.line) == word:
            self.heredoc = None
            self._newline()
        self.line = ""


def nxt_is(text: str, i: int, char: str) -> bool:
    return text[i + 1 : i + 2] == char


def render_words(source: str, context: Context, *, field: str) -> list[str]:
    """Render a command run without a shell: split like `shlex.split` splits the
    template's own text (and `| raw` values); each other value lands verbatim inside
    the argument it stands in."""
    texts, values = _tokens(source, context, field)
    marks = secrets.token_hex(8)
    joined = [texts[0]]
    kept: list[str] = []
    for value, after in zip(values, texts[1:], strict=True):
        if isinstance(value, Raw):
            joined.append(str(value))
        else:
            joined.append(f"dagd{marks}w{len(kept)}z")
            kept.append(str(value))
        joined.append(after)
    try:
        words = shlex.split("".join(joined))
    except ValueError as exc:  # an unclosed quote
        raise TemplateRenderError(f"command cannot be split into arguments: {exc}",
                                  dag_id=context.dag_id, task_id=context.task_id,
                                  field=field) from None
    mark = re.compile(f"dagd{marks}w([0-9]+)z")
    return [mark.sub(lambda m: kept[int(m[1])], word) for word in words]


# -- SQL text ---------------------------------------------------------------------------
_SQL_NAME_OR_NUMBER = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"  # a name: sales, public.sales
    r"|[0-9]+(?:\.[0-9]+)?"  # a number (no sign: `5-{{ n }}` must not become `5--1`)
    # an ISO date or time, as `{{ ds }}` and `{{ ts }}` give them ('{{ ds }}' in Airflow's
    # SQL): digits, '-', ':', '.', 'T', '+' and 'Z' cannot end a string or start a comment
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?)?")


def render_sql(source: str, context: Context, *, field: str) -> str:
    """Render SQL text: each value (a table's name, a partition's suffix) must be a name
    or a number, so it cannot end a string, start a comment or add a statement."""
    texts, values = _tokens(source, context, field)
    out = [texts[0]]
    for value, after in zip(values, texts[1:], strict=True):
        if not isinstance(value, Raw) and not _SQL_NAME_OR_NUMBER.fullmatch(value):
            raise TemplateRenderError(
                f"a value rendered into SQL text must be a name, a number or an ISO date, got "
                f"{value[:100]!r}: pass values as parameters (:name), bound by the driver",
                dag_id=context.dag_id, task_id=context.task_id, field=field)
        out += [value, after]
    return "".join(out)


# -- URLs -------------------------------------------------------------------------------
_IN_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_HOST_OR_PORT = re.compile(r"[A-Za-z0-9._~\-:\[\]]*")


def render_url(source: str, context: Context, *, field: str) -> str:
    """Render a URL template into percent-encoded URL text (for `yarl.URL(text,
    encoded=True)`): values in the path, query and fragment percent-encoded."""
    texts, values = _tokens(source, context, field)
    marks = secrets.token_hex(8)
    text = texts[0]
    encoded: list[str] = []
    for value, after in zip(values, texts[1:], strict=True):
        shown = str(value)
        if isinstance(value, Raw) or (not text and shown.startswith(("http://", "https://"))):
            text += shown  # `| raw`, or the base the url begins with
        elif _IN_AUTHORITY.fullmatch(text):
            if not _HOST_OR_PORT.fullmatch(shown):
                raise TemplateRenderError(
                    f"a value in the url's host or port must be a host name or a port, got "
                    f"{shown[:100]!r} (| raw splices a value as it is)",
                    dag_id=context.dag_id, task_id=context.task_id, field=field)
            text += shown
        else:
            text += f"dagd{marks}u{len(encoded)}z"
            # "." and ".." would be path steps, not names: encoded, they stay names.
            encoded.append(quote(shown, safe="") if shown not in (".", "..")
                           else shown.replace(".", "%2E"))
        text += after
    try:
        normal = str(URL(text))  # the author's own text, as yarl encodes it
    except (ValueError, TypeError) as exc:
        raise TemplateRenderError(f"url {source!r} is not a URL: {exc}", dag_id=context.dag_id,
                                  task_id=context.task_id, field=field) from None
    mark = re.compile(f"dagd{marks}u([0-9]+)z")
    return mark.sub(lambda m: encoded[int(m[1])], normal)


# -- HTML -------------------------------------------------------------------------------
def render_html(source: str, context: Context, *, field: str) -> str:
    """Render an HTML template: each value escaped (`| raw` or `| safe` keeps one as is)."""
    return _from_string(_html, source, template_context(context), context, field)
