"""ShellTask: run a command in its own process group, its output streamed live into the
attempt's log, and its whole group stopped when the attempt ends.

The command, `env` and `cwd` are templates rendered when the attempt starts. A value
rendered into a shell command never becomes shell text (`dagd.templating.render_shell`:
the command refers to it as `"${DAGD_ARG_1}"`, the value travels in the environment);
`| raw` splices shell text for the author who means it. A list command is an argv: no
shell, each element one argument. The child starts with a clean environment (an
allow-list, `dagd.executors.env`; `inherit_env=True` for all of the daemon's), then the
run (DAGD_DAG_ID, DAGD_RUN_ID, DAGD_TASK_ID, DAGD_TRY_NUMBER, DAGD_DS, DAGD_CONF, ...),
then the task's `env`. A non-zero exit fails the attempt with `ShellCommandFailed`; the
last non-blank line of stdout becomes the XCom (cut to fit the XCom cap as JSON).

Stopping (`dagd.executors.procgroup`): at the timeout (or when the daemon stops) the
group gets SIGTERM, then SIGKILL after `KILL_GRACE` seconds. When the command exits by
itself, processes it left running in its group are stopped the same way: a task's work
ends with its attempt (start a process with `setsid` if it must outlive the task).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import anyio
import orjson
from anyio.abc import Process

from dagd.authoring.context import Context
from dagd.authoring.tasks import BaseTask
from dagd.errors import DagDefinitionError
from dagd.executors.env import task_environment
from dagd.executors.logs import AttemptLog, current_log
from dagd.executors.procgroup import group_alive, pump, stop_group
from dagd.templating import render, render_shell, render_words

PIPE_GRACE = 1.0  # seconds to drain output after exit; a setsid'd grandchild may hold it
# Bytes of the last stdout line kept for the XCom, as JSON (quotes and escapes counted):
# the XCom cap's default, so the line always fits it.
# Linux's limit on one environment variable (MAX_ARG_STRLEN, 32 pages), with room for
# its name: past it, starting the process fails.
ENV_VALUE_MAX = 128 * 1024 - 64
LINE_CAP = 1024 * 1024
ARG_SHOWN = 200  # characters of a value passed by reference, shown in the log
DEFAULT_SHELL = "/bin/sh"


class ShellCommandFailed(Exception):
    """The command exited with a non-zero code, or was killed by a signal (`returncode`
    is then negative, as in `subprocess`)."""

    def __init__(self, returncode: int, *, shell: bool = True) -> None:
        super().__init__(returncode)
        self.returncode = returncode
        self.shell = shell

    def __str__(self) -> str:
        code = self.returncode
        if code < 0:
            return f"command killed by signal {_signal_name(-code)}"
        message = f"command exited with code {code}"
        if self.shell and 128 < code < 128 + 65:
            # A shell reports 128+N when the command it ran was killed by signal N.
            message += f" (128+{code - 128}: killed by {_signal_name(code - 128)})"
        return message


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ShellTask(BaseTask):
    """Run a shell command (`shell=True`: `/bin/sh -c`; a string names another shell;
    `shell=False`: the command is split like a shell would and run directly), or a list:
    a program and its arguments, run directly."""

    kind = "shell"
    runs_on_dask = True

    def __init__(
        self,
        *,
        task_id: str,
        command: str | Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        append_env: bool = True,
        inherit_env: bool | None = None,
        shell: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id=task_id, **kwargs)
        where: dict[str, Any] = {"dag_id": self.dag.dag_id, "task_id": self.task_id,
                                 "file": self.fileloc, "line": self.lineno}
        _check_command(command, shell, where)
        if env is not None and not (
            isinstance(env, Mapping)
            and all(isinstance(k, str) and k and "=" not in k for k in env)
            and all(isinstance(v, str) for v in env.values())
        ):
            raise DagDefinitionError(
                f"env must map variable names to strings, got {env!r}", field="env", **where)
        if cwd is not None and not isinstance(cwd, str | os.PathLike):
            raise DagDefinitionError(f"cwd must be a path, got {cwd!r}", field="cwd", **where)
        if inherit_env is None:  # the DAG's default_args may give it (False if not)
            inherit_env = bool(getattr(self, "inherit_env", False))
        for name, flag in (("append_env", append_env), ("inherit_env", inherit_env)):
            if not isinstance(flag, bool):
                raise DagDefinitionError(f"{name} must be True or False, got {flag!r}",
                                         field=name, **where)
        if inherit_env and not append_env:
            raise DagDefinitionError(
                "inherit_env=True passes the daemon's environment, append_env=False none of "
                "it: choose one", field="inherit_env", **where)
        self.command: str | list[str] = command if isinstance(command, str) else list(command)
        self.env: dict[str, str] = dict(env or {})
        self.cwd: str | None = os.fspath(cwd) if cwd is not None else None
        self.append_env = append_env
        self.inherit_env: bool = inherit_env
        self.shell: bool | str = shell if isinstance(command, str) else False

    # -- running ----------------------------------------------------------------------
    def argv(self, context: Context) -> tuple[list[str], dict[str, str]]:
        """The program and its arguments for this attempt, templates rendered, and the
        values a shell command refers to (`DAGD_ARG_n`, for its environment)."""
        if isinstance(self.command, list):
            return render(self.command, context, field="command"), {}
        if self.shell:
            program = DEFAULT_SHELL if self.shell is True else str(self.shell)
            rendered = render_shell(self.command, context, field="command")
            return [program, "-c", rendered.text], rendered.env
        return render_words(self.command, context, field="command"), {}

    def directory(self, context: Context) -> str | None:
        """The working directory for this attempt, rendered (None: the daemon's)."""
        return render(self.cwd, context, field="cwd") if self.cwd is not None else None

    def environment(self, context: Context) -> dict[str, str]:
        """The child's environment: an allow-list of the daemon's (all of it with
        inherit_env, none with append_env=False), the run, then `env`."""
        base = task_environment(os.environ, inherit=self.inherit_env) if self.append_env else {}
        base.update(run_environment(context))
        base.update(render(self.env, context, field="env"))
        return base

    async def execute(self, context: Context) -> str | None:
        argv, args = self.argv(context)
        for name, value in args.items():
            if len(value.encode()) > ENV_VALUE_MAX:
                raise ValueError(
                    f"the value {name} of the command is {len(value.encode()):,} bytes, over "
                    f"the {ENV_VALUE_MAX:,} one variable of a process may hold: write it "
                    "to a file and pass the file's path")
        env = self.environment(context)
        env.update(args)  # last: what the command refers to is what was rendered
        conf_file = None
        if len(env.get("DAGD_CONF", "").encode()) > ENV_VALUE_MAX:
            # A large conf (a big webhook body) would make the exec itself fail: the
            # command finds it in a file instead, named by DAGD_CONF_FILE.
            conf_file = await anyio.to_thread.run_sync(_spill, env.pop("DAGD_CONF"))
            env["DAGD_CONF_FILE"] = conf_file
        try:
            return await self._run(context, argv, args, env)
        finally:
            if conf_file is not None:
                await anyio.Path(conf_file).unlink(missing_ok=True)

    async def _run(self, context: Context, argv: list[str], args: dict[str, str],
                   env: dict[str, str]) -> str | None:
        cwd = self.directory(context)
        if cwd is not None and not await anyio.Path(cwd).is_dir():
            raise NotADirectoryError(f"cwd {cwd!r} is not a directory")
        attempt_log = current_log()
        shown = argv[2] if self.shell else shlex.join(argv)
        _note(attempt_log, f"[dagd] $ {shown}\n")
        for name, value in args.items():
            # JSON: a value's line breaks cannot pass for lines of the log
            cut = value if len(value) <= ARG_SHOWN else f"{value[:ARG_SHOWN]}..."
            _note(attempt_log, f"[dagd]   {name}={orjson.dumps(cut).decode()}\n")
        process = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group: stopped as one
        )
        tail = LastLine()
        try:
            code = await _supervise(process, attempt_log, tail)
        except BaseException:
            # Timeout or daemon stop (a cancellation), or a failure while reading: the
            # work must not outlive the attempt. Shielded, or the cancellation would stop
            # the clean-up too.
            with anyio.CancelScope(shield=True):
                await stop_group(process, members=True)
                _note(attempt_log, f"[dagd] process group {process.pid} stopped\n")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await _close_streams(process)
        if code != 0:
            raise ShellCommandFailed(code, shell=bool(self.shell))
        return tail.value()

    # -- description ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data["command"] = self.command
        data["cwd"] = self.cwd
        data["env"] = sorted(self.env)  # names only: values may be secrets
        data["append_env"] = self.append_env
        data["inherit_env"] = self.inherit_env
        data["shell"] = self.shell
        return data


def _check_command(command: Any, shell: Any, where: dict[str, Any]) -> None:
    if isinstance(shell, str):
        if not shell:
            raise DagDefinitionError("shell must be True, False or a shell's path",
                                     field="shell", **where)
    elif not isinstance(shell, bool):
        raise DagDefinitionError(f"shell must be True, False or a shell's path, got "
                                 f"{shell!r}", field="shell", **where)
    if isinstance(command, str):
        ok = bool(command.strip())
    else:
        ok = (isinstance(command, list | tuple) and bool(command)
              and all(isinstance(part, str) for part in command))
    if not ok:
        raise DagDefinitionError(
            "command must be a non-empty string (a shell command) or a list of strings "
            f"(a program and its arguments), got {command!r}", field="command", **where)
    if not isinstance(command, str) and isinstance(shell, str):
        raise DagDefinitionError(
            f"a list command runs without a shell: give a string to run it with {shell}",
            field="shell", **where)


def _spill(text: str) -> str:
    """Write `text` to a private temporary file; its path."""
    fd, path = tempfile.mkstemp(prefix="dagd-conf-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def run_environment(context: Context) -> dict[str, str]:
    """The run, as environment variables for a child process."""
    env = {
        "DAGD_DAG_ID": context.dag_id,
        "DAGD_RUN_ID": str(context.run_id),
        "DAGD_TASK_ID": context.task_id,
        "DAGD_TRY_NUMBER": str(context.try_number),
        "DAGD_ATTEMPT_ID": str(context.attempt_id),
        "DAGD_TI_KEY": context.ti_key,
        "DAGD_DS": context.ds or "",
        "DAGD_LOGICAL_DATE": context.logical_date.isoformat() if context.logical_date else "",
        "DAGD_CONF": orjson.dumps(context.conf, default=str).decode(),
    }
    if context.map_index >= 0:
        env["DAGD_MAP_INDEX"] = str(context.map_index)
    return env


class LastLine:
    """Follows a byte stream and keeps its last non-blank line (at most LINE_CAP bytes)."""

    def __init__(self) -> None:
        self._pending = bytearray()  # the line being written, not yet ended by "\n"
        self._last = b""

    def feed(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        self._pending += lines[0][: max(LINE_CAP - len(self._pending), 0)]
        if len(lines) == 1:
            return
        for line in reversed(lines[1:-1]):
            if line.strip():
                self._last = line[:LINE_CAP]
                break
        else:
            if self._pending.strip():
                self._last = bytes(self._pending)
        self._pending = bytearray(lines[-1][:LINE_CAP])

    def value(self) -> str | None:
        """The last non-blank line, stripped and cut so that as JSON it fits LINE_CAP."""
        line = self._pending if self._pending.strip() else self._last
        text = bytes(line).decode("utf-8", "replace").strip()
        if len(orjson.dumps(text)) > LINE_CAP:
            # The longest start that fits: quotes, escapes and UTF-8 make bytes of JSON
            # differ from characters, so search (about 20 encodings of at most 1 MiB).
            fits, over = 0, len(text)
            while over - fits > 1:
                middle = (fits + over) // 2
                if len(orjson.dumps(text[:middle])) <= LINE_CAP:
                    fits = middle
                else:
                    over = middle
            text = text[:fits].rstrip()
        return text or None


def _note(attempt_log: AttemptLog | None, text: str) -> None:
    if attempt_log is not None:
        attempt_log.write(text)


async def _supervise(process: Process, attempt_log: AttemptLog | None, tail: LastLine) -> int:
    """Stream the output while the command runs; its exit code once it is done."""
    out_done, err_done = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(pump, tail=tail.feed), process.stdout, attempt_log, out_done)
        tg.start_soon(pump, process.stderr, attempt_log, err_done)
        code = await process.wait()
        if await anyio.to_thread.run_sync(group_alive, process.pid):
            _note(attempt_log, "[dagd] the command left processes running in its group: "
                               "stopping them\n")
            await stop_group(process, members=True)
        with anyio.move_on_after(PIPE_GRACE):
            await out_done.wait()
            await err_done.wait()
        tg.cancel_scope.cancel()
    return code


async def _close_streams(process: Process) -> None:
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()
