"""ShellTask: run a command in its own process group, its output streamed live into the
attempt's log, and its whole group stopped when the attempt ends.

The command, `env` and `cwd` are templates rendered when the attempt starts. The child
also finds the run in its environment (DAGD_DAG_ID, DAGD_RUN_ID, DAGD_TASK_ID,
DAGD_TRY_NUMBER, DAGD_DS, DAGD_CONF, ...). A non-zero exit fails the attempt with
`ShellCommandFailed`; the last non-blank line of stdout becomes the XCom.

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
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import anyio
import orjson
from anyio.abc import Process

from dagd.authoring.context import Context
from dagd.authoring.tasks import BaseTask
from dagd.errors import DagDefinitionError
from dagd.executors.logs import AttemptLog, current_log
from dagd.executors.procgroup import group_alive, pump, stop_group
from dagd.templating import render

PIPE_GRACE = 1.0  # seconds to drain output after exit; a setsid'd grandchild may hold it
LINE_CAP = 1024 * 1024  # bytes of one stdout line kept for the XCom; XCom has its own cap
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
    `shell=False`: the command is split like a shell would and run directly)."""

    kind = "shell"

    def __init__(
        self,
        *,
        task_id: str,
        command: str | Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        append_env: bool = True,
        shell: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id=task_id, **kwargs)
        where: dict[str, Any] = {"dag_id": self.dag.dag_id, "task_id": self.task_id,
                                 "file": self.fileloc, "line": self.lineno}
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
            ok = (not shell and isinstance(command, list | tuple) and bool(command)
                  and all(isinstance(part, str) for part in command))
        if not ok:
            raise DagDefinitionError(
                "command must be a non-empty string (or, with shell=False, a list of strings)"
                f", got {command!r}", field="command", **where)
        if env is not None and not (
            isinstance(env, Mapping)
            and all(isinstance(k, str) and k and "=" not in k for k in env)
            and all(isinstance(v, str) for v in env.values())
        ):
            raise DagDefinitionError(
                f"env must map variable names to strings, got {env!r}", field="env", **where)
        if cwd is not None and not isinstance(cwd, str | os.PathLike):
            raise DagDefinitionError(f"cwd must be a path, got {cwd!r}", field="cwd", **where)
        if not isinstance(append_env, bool):
            raise DagDefinitionError(f"append_env must be True or False, got {append_env!r}",
                                     field="append_env", **where)
        self.command: str | list[str] = command if isinstance(command, str) else list(command)
        self.env: dict[str, str] = dict(env or {})
        self.cwd: str | None = os.fspath(cwd) if cwd is not None else None
        self.append_env = append_env
        self.shell = shell

    # -- running ----------------------------------------------------------------------
    def argv(self, context: Context) -> list[str]:
        """The program and its arguments for this attempt, templates rendered."""
        command = render(self.command, context, field="command")
        if self.shell:
            program = DEFAULT_SHELL if self.shell is True else str(self.shell)
            return [program, "-c", command]
        return shlex.split(command) if isinstance(command, str) else list(command)

    def environment(self, context: Context) -> dict[str, str]:
        """The child's environment: the daemon's (with append_env), the run, then `env`."""
        base = dict(os.environ) if self.append_env else {}
        base.update(run_environment(context))
        base.update(render(self.env, context, field="env"))
        return base

    async def execute(self, context: Context) -> str | None:
        argv = self.argv(context)
        env = self.environment(context)
        cwd = render(self.cwd, context, field="cwd") if self.cwd is not None else None
        if cwd is not None and not await anyio.Path(cwd).is_dir():
            raise NotADirectoryError(f"cwd {cwd!r} is not a directory")
        attempt_log = current_log()
        shown = argv[2] if self.shell else shlex.join(argv)
        _note(attempt_log, f"[dagd] $ {shown}\n")
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
        data["shell"] = self.shell
        return data


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
        line = self._pending if self._pending.strip() else self._last
        text = bytes(line).decode("utf-8", "replace").strip()
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
