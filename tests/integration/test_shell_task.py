"""ShellTask against real subprocesses: output in the attempt's log, the last line as XCom,
exit codes, templates and the environment, timeouts that stop the whole process group,
a daemon stop that does the same, and retries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import anyio
import orjson
import pytest

from dagd.config import Settings
from integration.harness import StartEngine, pid_alive, read_text, wait_until

pytestmark = pytest.mark.anyio

WriteDag = Callable[[str, str], Path]


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is `pgid`."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


async def read_pid(path: Path) -> int:
    """The pid a command wrote to `path` (waits, with a deadline, for the whole line)."""
    file = anyio.Path(path)

    async def written() -> bool:
        return await file.exists() and (await file.read_text()).endswith("\n")

    await wait_until(written, what=f"the command to write {path.name}")
    return int(await file.read_text())


HELLO = """
from dagd import DAG, ShellTask

with DAG("hello") as hello:
    ShellTask(
        task_id="say",
        command="echo first line; echo 'to stderr' >&2; echo '  the answer  '; echo; echo",
    )
"""


async def test_output_goes_to_the_log_and_the_last_line_to_xcom(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("hello.py", HELLO)
    async with start_engine() as h:
        run_id, state = await h.run("hello")
        [attempt] = await h.attempts(run_id, "say")
        value = await h.xcom(run_id, "say")
    assert state == "success"
    assert value == "the answer"  # the last non-blank line of stdout, stripped
    text = await read_text(attempt.log_path)
    assert "[dagd] $ echo first line" in text
    assert "first line\n" in text
    assert "to stderr\n" in text
    assert "  the answer  \n" in text


FAILING = """
from dagd import DAG, ShellTask

with DAG("failing") as failing:
    ShellTask(task_id="exits", command="echo partial output; exit 3")
    ShellTask(task_id="killed", command="echo about to die; kill -KILL $$")
    ShellTask(task_id="inner_killed", command="sh -c 'kill -TERM $$'; exit $?")
    ShellTask(task_id="silent", command="true")
"""


async def test_a_non_zero_exit_or_a_signal_fails_the_attempt_and_says_which(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("failing.py", FAILING)
    async with start_engine() as h:
        run_id, state = await h.run("failing")
        errors = {t: (await h.attempts(run_id, t))[0].error
                  for t in ("exits", "killed", "inner_killed")}
        [exits] = await h.attempts(run_id, "exits")
        states = await h.states(run_id)
        silent = await h.xcom(run_id, "silent")
    assert state == "failed"
    assert states == {"exits": "failed", "killed": "failed", "inner_killed": "failed",
                      "silent": "success"}
    assert silent is None  # no output: no XCom
    assert errors == {
        "exits": "ShellCommandFailed: command exited with code 3",
        "killed": "ShellCommandFailed: command killed by signal SIGKILL",
        "inner_killed": "ShellCommandFailed: command exited with code 143 "
                        "(128+15: killed by SIGTERM)",
    }
    text = await read_text(exits.log_path)
    assert "partial output\n" in text
    assert "ShellCommandFailed: command exited with code 3" in text  # the traceback


TEMPLATED = """
from dagd import DAG, ShellTask

with DAG("templated", params={"suffix": "default"}) as templated:
    ShellTask(
        task_id="render",
        command=(
            'echo "ds={{ ds }} x={{ conf.x }} suffix={{ params.suffix }}"; '
            'echo "greeting=$GREETING"; echo "home=${HOME:-unset}"; '
            'echo "dag=$DAGD_DAG_ID run=$DAGD_RUN_ID task=$DAGD_TASK_ID '
            'try=$DAGD_TRY_NUMBER ds=$DAGD_DS"; '
            'printf "%s" "$DAGD_CONF" > conf.json; pwd'
        ),
        env={"GREETING": "hello {{ conf.x }}"},
        cwd="{{ conf.workdir }}",
        append_env=False,
    )
"""


async def test_templates_and_environment_reach_the_command(
    write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    write_dag("templated.py", TEMPLATED)
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    conf = {"x": "42", "workdir": str(workdir), "suffix": "given", "nested": {"a": [1, 2]}}
    async with start_engine() as h:
        run_id = await h.engine.trigger("templated", conf=conf,
                                        logical_date=datetime(2024, 5, 17, 6, tzinfo=UTC))
        state = await h.wait(run_id)
        [attempt] = await h.attempts(run_id, "render")
        value = await h.xcom(run_id, "render")
    assert state == "success", attempt.error
    text = await read_text(attempt.log_path)
    assert "ds=2024-05-17 x=42 suffix=given\n" in text
    assert "greeting=hello 42\n" in text
    assert "home=unset\n" in text  # append_env=False: the daemon's environment stays out
    assert f"dag=templated run={run_id} task=render try=1 ds=2024-05-17\n" in text
    assert orjson.loads(await anyio.Path(workdir / "conf.json").read_bytes()) == conf
    assert value == str(workdir)  # pwd: the rendered cwd


SANDBOXED = """
from dagd import DAG, ShellTask

with DAG("sandboxed") as sandboxed:
    ShellTask(task_id="escape", command="echo {{ conf.__class__.__mro__ }}")
"""


async def test_a_template_reaching_for_python_internals_is_refused(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("sandboxed.py", SANDBOXED)
    async with start_engine() as h:
        run_id, state = await h.run("sandboxed", conf={"x": 1})
        [attempt] = await h.attempts(run_id, "escape")
    assert state == "failed"
    assert attempt.error is not None
    assert attempt.error.startswith("TemplateRenderError: DAG 'sandboxed', task 'escape', "
                                    "field 'command': template refused by the sandbox")
    assert "__class__" in attempt.error
    assert "[dagd] $" not in await read_text(attempt.log_path)  # nothing was started


SPAWNER = """
from dagd import DAG, ShellTask

with DAG("spawner") as spawner:
    ShellTask(
        task_id="spawn",
        # The prefix is shell text the test means to splice: `| raw`.
        command="{{ conf.prefix | raw }}sleep 1000 & sleep 1000 & echo $$ > {{ conf.pidfile }}; "
                "sleep 1000",
        execution_timeout=1.5,
    )
"""


@pytest.mark.parametrize(
    ("prefix", "how"),
    [("", "SIGTERM"), ("trap '' TERM; ", "SIGKILL")],
    ids=["terminated", "term_ignored_then_killed"],
)
async def test_a_timeout_stops_the_whole_process_group(
    prefix: str, how: str, write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    write_dag("spawner.py", SPAWNER)
    pidfile = tmp_path / "spawner.pid"
    async with start_engine() as h:
        run_id = await h.trigger("spawner", conf={"prefix": prefix, "pidfile": str(pidfile)})
        pgid = await read_pid(pidfile)
        # The shell and its three sleeps (two in the background) are running.
        await wait_until(lambda: len(group_members(pgid)) >= 3, what="the sleeps to start")
        assert await h.wait(run_id) == "failed"
        [attempt] = await h.attempts(run_id, "spawn")
        assert group_members(pgid) == []  # stopped before the attempt was recorded
    assert attempt.error is not None
    assert "execution_timeout of 1.5s exceeded" in attempt.error
    assert attempt.ended_at is not None
    elapsed = attempt.ended_at - attempt.started_at
    # SIGTERM ends them at once; a group ignoring it gets SIGKILL after the 2 s grace.
    assert (1.5 <= elapsed < 3.0) if how == "SIGTERM" else (3.5 <= elapsed < 6.0)
    text = await read_text(attempt.log_path)
    assert f"[dagd] process group {pgid} stopped" in text
    assert "execution_timeout exceeded, cancelled" in text


FOREVER = """
from dagd import DAG, ShellTask

with DAG("forever") as forever:
    ShellTask(task_id="runs", command="sleep 1000 & echo $$ > {{ conf.pidfile }}; wait")
"""


async def test_stopping_the_daemon_stops_a_running_command_and_its_children(
    write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    write_dag("forever.py", FOREVER)
    pidfile = tmp_path / "forever.pid"
    async with start_engine() as h:
        run_id = await h.trigger("forever", conf={"pidfile": str(pidfile)})
        pgid = await read_pid(pidfile)
        await wait_until(lambda: len(group_members(pgid)) >= 2, what="the sleep to start")
    # Leaving start_engine stops the engine: the attempt is cancelled, its group stopped.
    assert not pid_alive(pgid)
    assert group_members(pgid) == []
    assert run_id > 0


LEFTOVER = """
from dagd import DAG, ShellTask

with DAG("leftover") as leftover:
    ShellTask(task_id="forks", command="sleep 1000 & echo $! > {{ conf.pidfile }}; echo done")
"""


async def test_processes_left_behind_by_a_finished_command_are_stopped(
    write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    write_dag("leftover.py", LEFTOVER)
    pidfile = tmp_path / "leftover.pid"
    async with start_engine() as h:
        run_id, state = await h.run("leftover", conf={"pidfile": str(pidfile)})
        [attempt] = await h.attempts(run_id, "forks")
        value = await h.xcom(run_id, "forks")
    assert (state, value) == ("success", "done")
    assert not pid_alive(await read_pid(pidfile))
    assert "left processes running in its group: stopping them" in await read_text(
        attempt.log_path)


FLAKY = """
from dagd import DAG, ShellTask
from dagd.kinds.shell import ShellCommandFailed

with DAG("flaky_shell") as flaky_shell:
    ShellTask(
        task_id="flaky",
        command='echo "try $DAGD_TRY_NUMBER"; test "$DAGD_TRY_NUMBER" -ge 3',
        retries=3,
        retry_delay=0.1,
        retry_on=ShellCommandFailed,
    )
"""


async def test_a_flaky_command_is_retried_until_it_succeeds(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("flaky_shell.py", FLAKY)
    async with start_engine() as h:
        run_id, state = await h.run("flaky_shell")
        attempts = await h.attempts(run_id, "flaky")
        value = await h.xcom(run_id, "flaky")
        logs = [await read_text(a.log_path) for a in attempts]
    assert state == "success"
    assert [(a.try_number, a.state, a.error) for a in attempts] == [
        (1, "failed", "ShellCommandFailed: command exited with code 1"),
        (2, "failed", "ShellCommandFailed: command exited with code 1"),
        (3, "success", None),
    ]
    assert value == "try 3"
    assert ["try 1\n" in logs[0], "try 2\n" in logs[1], "try 3\n" in logs[2]] == [True] * 3


FLOOD = """
from dagd import DAG, ShellTask

with DAG("flood") as flood:
    ShellTask(
        task_id="floods",
        command="head -c 4000000 /dev/zero | tr '\\\\0' x; echo; echo done; echo oops >&2",
        execution_timeout=20,
    )
"""


async def test_output_past_the_log_cap_is_read_and_dropped_so_the_command_finishes(
    write_dag: WriteDag, start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("flood.py", FLOOD)
    async with start_engine(replace(settings, log_max_bytes=4096)) as h:
        run_id, state = await h.run("flood")
        [attempt] = await h.attempts(run_id, "floods")
        value = await h.xcom(run_id, "floods")
    assert (state, value) == ("success", "done")
    size = (await anyio.Path(attempt.log_path).stat()).st_size
    assert 4096 <= size < 4096 + 200  # the cap plus its one notice
    assert "log truncated at 4096 bytes" in await read_text(attempt.log_path)
