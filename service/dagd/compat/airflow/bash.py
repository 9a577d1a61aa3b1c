"""`BashOperator` and `@task.bash` as dagd shell tasks: run by bash, the command
rendered with the Airflow context (a `.sh` file found through `template_searchpath` or
the DAG's folder), exit code 99 (`skip_on_exit_code`) ends the task skipped, the last
line of output is the XCom.

The command is rendered by dagd's `render_shell`: a value (`{{ ds }}`, a conf value, an
XCom) reaches bash as a variable, never as shell text (`| raw` splices text). The
environment: `env=None` gives dagd's allow-list of the daemon's variables (Airflow
passes all of them; `inherit_env=True` does that), `env` with `append_env=True` adds to
that list, and `env` alone is the whole environment (as in Airflow).
"""

from __future__ import annotations

import contextvars
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

from dagd.authoring.context import Context as DagdContext
from dagd.authoring.tasks import _find_xcom_args, resolve_args
from dagd.compat.airflow.context import build, running
from dagd.compat.airflow.exceptions import AirflowSkipException
from dagd.compat.airflow.operators import OperatorMixin, context_kwargs, task_args
from dagd.compat.airflow.templates import (
    Renderer,
    is_template_file,
    names,
    read_template,
    shell_environment,
)
from dagd.kinds.shell import ShellCommandFailed, ShellTask
from dagd.templating import render_shell

BASH = shutil.which("bash") or "/bin/bash"
# The command of the attempt running in this asyncio task (@task.bash computes it).
_command: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dagd_airflow_bash_command", default=None)
# The Airflow context of that attempt: one for the command, cwd and env, so what a
# template pushes (`{{ ti.xcom_push(key=..., value=...) }}`) is kept with the XCom.
_airflow_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "dagd_airflow_bash_context", default=None)


class BashOperator(OperatorMixin, ShellTask):
    """Airflow's BashOperator."""

    kind = "bash"
    template_fields: Sequence[str] = ("bash_command", "env", "cwd")
    template_ext: Sequence[str] = (".sh", ".bash")

    def __init__(self, *, task_id: str, bash_command: str, env: Mapping[str, str] | None = None,
                 append_env: bool = False, cwd: str | None = None,
                 skip_on_exit_code: int | Sequence[int] | None = 99, params: Any = None,
                 do_xcom_push: bool = True, **kwargs: Any) -> None:
        extra = task_args(kwargs, type(self).__name__)
        super().__init__(task_id=task_id, command=bash_command, env=env, cwd=cwd,
                         append_env=env is None or append_env, shell=BASH, **extra)
        codes = skip_on_exit_code
        self.skip_on_exit_code: tuple[int, ...] = (
            () if codes is None else (codes,) if isinstance(codes, int) else tuple(codes))
        self._airflow_flags(params=params, do_xcom_push=do_xcom_push, multiple_outputs=False)

    @property
    def bash_command(self) -> str:
        return str(self.command)

    def command_source(self, context: DagdContext) -> str:
        """The command's template text (a template file's text, for a `.sh` name)."""
        text = _command.get() or str(self.command)
        if is_template_file(text, self.template_ext):
            return read_template(text, self.dag, where={
                "dag_id": self.dag.dag_id, "task_id": self.task_id, "field": "bash_command"})
        return text

    def airflow_context(self, context: DagdContext) -> dict[str, Any]:
        """The Airflow context of the attempt running now (made once per attempt)."""
        current = _airflow_context.get()
        return current if current is not None else build(context, self)

    def airflow_names(self, context: DagdContext) -> dict[str, Any]:
        return names(self.airflow_context(context), self.dag)

    def argv(self, context: DagdContext) -> tuple[list[str], dict[str, str]]:
        rendered = render_shell(self.command_source(context), context, field="bash_command",
                                names=self.airflow_names(context),
                                jinja=shell_environment(self.dag))
        return [BASH, "-c", rendered.text], rendered.env

    def directory(self, context: DagdContext) -> str | None:
        if self.cwd is None:
            return None
        return str(Renderer(self, self.airflow_context(context), context).render(
            self.cwd, "cwd"))

    def environment(self, context: DagdContext) -> dict[str, str]:
        saved, self.env = self.env, {}
        try:
            base = super().environment(context)
        finally:
            self.env = saved
        renderer = Renderer(self, self.airflow_context(context), context)
        base.update({k: str(v) for k, v in renderer.render(self.env, "env").items()})
        return base

    async def execute(self, context: DagdContext) -> Any:
        airflow_context = _airflow_context.get()
        token = None
        if airflow_context is None:
            airflow_context = build(context, self)
            token = _airflow_context.set(airflow_context)
        try:
            out = await super().execute(context)
        except ShellCommandFailed as exc:
            if exc.returncode in self.skip_on_exit_code:
                raise AirflowSkipException(
                    f"bash command returned exit code {exc.returncode}: skipping") from None
            raise
        finally:
            if token is not None:
                _airflow_context.reset(token)
        return self.result(out, airflow_context["ti"].pushed)


class BashDecorated(BashOperator):
    """`@task.bash`: the function returns the command, rendered and run like a
    BashOperator's; it is called in a thread, with its arguments and context keys."""

    def __init__(self, *, task_id: str, python_callable: Callable[..., Any],
                 op_args: Sequence[Any] | None = None, op_kwargs: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        name = getattr(python_callable, "__name__", "function")
        super().__init__(task_id=task_id, bash_command=f"# the command {name}() returns",
                         **kwargs)
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        for arg in _find_xcom_args([self.op_args, self.op_kwargs]):
            self.set_upstream(arg.task)

    def _call(self, context: DagdContext, airflow_context: dict[str, Any]) -> str:
        args = resolve_args(self.op_args, context.upstream)
        kwargs = resolve_args(self.op_kwargs, context.upstream)
        with running(context, self, airflow_context):
            kwargs = context_kwargs(self.python_callable, args, kwargs, airflow_context)
            command = self.python_callable(*args, **kwargs)
        if not isinstance(command, str) or not command.strip():
            raise TypeError(f"@task.bash function {self.python_callable.__name__}() must "
                            f"return a non-empty command string, got {command!r}")
        return command

    async def execute(self, context: DagdContext) -> Any:
        airflow_context = build(context, self)
        command = await anyio.to_thread.run_sync(self._call, context, airflow_context)
        token = _command.set(command)
        held = _airflow_context.set(airflow_context)
        try:
            return await super().execute(context)
        finally:
            _airflow_context.reset(held)
            _command.reset(token)
