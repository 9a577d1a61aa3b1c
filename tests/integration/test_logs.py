"""Per-attempt logs: one file per attempt with that attempt's output, capped in size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from dagd.config import Settings
from integration.harness import StartEngine, read_text

pytestmark = pytest.mark.anyio

MODES = ("in_loop", "in_thread", "in_process")

CHATTY = """
import logging
from dagd import DAG, task

log = logging.getLogger("chatty")


def talk(where, try_number):
    print(f"{where} print try {try_number}")
    log.warning("%s log try %d", where, try_number)
    if try_number == 1:
        raise ValueError(f"{where} fails on try 1")
    return try_number


with DAG("chatty", default_args={"retries": 1, "retry_delay": 0}) as chatty:
    @task
    async def in_loop(try_number):
        return talk("in_loop", try_number)

    @task(isolation="thread")
    def in_thread(try_number):
        return talk("in_thread", try_number)

    @task
    def in_process(try_number):
        return talk("in_process", try_number)

    in_loop()
    in_thread()
    in_process()
"""


async def test_each_attempt_has_its_own_log_file(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("chatty.py", CHATTY)
    async with start_engine(capture=True) as h:
        run_id, state = await h.run("chatty")
        attempts = {mode: await h.attempts(run_id, mode) for mode in MODES}
        texts = {
            mode: [await read_text(a.log_path) for a in attempts[mode]] for mode in MODES
        }
    assert state == "success"
    for mode in MODES:
        task_dir = settings.logs_dir / "chatty" / f"run_{run_id}" / mode
        assert [a.log_path for a in attempts[mode]] == [
            str(task_dir / "attempt_1.log"),
            str(task_dir / "attempt_2.log"),
        ]
        assert sorted(p.name for p in task_dir.iterdir()) == ["attempt_1.log", "attempt_2.log"]
        first, second = texts[mode]
        # Each file holds its own attempt's print and logging output, and nothing else:
        # not the other attempt's, not the other tasks' (they ran at the same time),
        # not the daemon's own messages.
        assert f"{mode} print try 1" in first and f"{mode} log try 1" in first
        assert f"ValueError: {mode} fails on try 1" in first
        assert f"{mode} print try 2" in second and f"{mode} log try 2" in second
        assert "try 2" not in first and "try 1" not in second
        assert "Traceback" not in second
        for other in set(MODES) - {mode}:
            assert other not in first + second
        assert "dagd.scheduler" not in first + second


FLOOD = """
from dagd import DAG, task

LINE = "0123456789" * 9 + "\\n"


def flood():
    for _ in range(2000):  # about 180 kB
        print(LINE, end="")
    return "still fine"


with DAG("flood") as flood_dag:
    @task
    async def in_loop():
        return flood()

    @task(isolation="thread")
    def in_thread():
        return flood()

    @task
    def in_process():
        return flood()

    in_loop()
    in_thread()
    in_process()
"""

NOTICE = "\n[dagd] log truncated at 4096 bytes; further output of this attempt is discarded\n"


async def test_a_flood_of_output_is_capped_and_the_task_still_succeeds(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, settings: Settings
) -> None:
    write_dag("flood.py", FLOOD)
    async with start_engine(replace(settings, log_max_bytes=4096), capture=True) as h:
        run_id, state = await h.run("flood")
        states = await h.states(run_id)
        values = {mode: await h.xcom(run_id, mode) for mode in MODES}
        paths = {mode: (await h.attempts(run_id, mode))[0].log_path for mode in MODES}
        data = {mode: await anyio.Path(paths[mode]).read_bytes() for mode in MODES}
    assert state == "success"
    assert states == dict.fromkeys(MODES, "success")
    assert values == dict.fromkeys(MODES, "still fine")
    line = "0123456789" * 9 + "\n"
    for mode in MODES:
        assert data[mode].endswith(NOTICE.encode()), data[mode][-200:]
        kept = data[mode][: -len(NOTICE)]
        assert len(kept) == 4096
        assert kept == (line * 50).encode()[:4096]


RAISES_IN_USER_CODE = """
from dagd import DAG, task


def check(rows):
    if not rows:
        raise ValueError("no rows to load")


with DAG("user_raises") as user_raises:
    @task
    async def in_loop():
        check([])

    @task(isolation="thread")
    def in_thread():
        check([])

    @task
    def in_process():
        check([])

    in_loop()
    in_thread()
    in_process()
"""

DAGD_FRAMES = ("worker.py", "local.py", "loader.py", "templating.py", "tasks.py",
               "service/dagd/", "anyio", "asyncio")
CALL_LINES = {"in_loop": 13, "in_thread": 17, "in_process": 21}


async def test_a_failure_in_user_code_shows_the_users_frames_not_dagds(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    path = write_dag("user_raises.py", RAISES_IN_USER_CODE).resolve()
    async with start_engine(capture=True) as h:
        run_id, state = await h.run("user_raises")
        attempts = {mode: (await h.attempts(run_id, mode))[0] for mode in MODES}
        texts = {mode: await read_text(attempts[mode].log_path) for mode in MODES}
    assert state == "failed"
    for mode in MODES:
        lines = texts[mode].splitlines()
        assert attempts[mode].error == "ValueError: no rows to load"
        # The cause first, then the traceback of the user's code alone.
        assert lines[0] == "ValueError: no rows to load", (mode, texts[mode])
        assert lines[1] == "Traceback (most recent call last):", (mode, texts[mode])
        assert lines[2:] == [
            f'  File "{path}", line {CALL_LINES[mode]}, in {mode}',
            "    check([])",
            f'  File "{path}", line 7, in check',
            '    raise ValueError("no rows to load")',
            "ValueError: no rows to load",
        ], (mode, texts[mode])
        for frame in DAGD_FRAMES:
            assert frame not in texts[mode], (mode, frame, texts[mode])


BAD_TEMPLATE = """
from dagd import DAG, ShellTask

with DAG("bad_template") as bad_template:
    ShellTask(task_id="echo", command="echo {{ conf.nope }}")
"""


async def test_a_template_error_is_one_line_naming_the_task_and_field(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("bad_template.py", BAD_TEMPLATE)
    async with start_engine() as h:
        run_id, state = await h.run("bad_template", conf={"x": 1})
        [attempt] = await h.attempts(run_id, "echo")
    text = await read_text(attempt.log_path)
    assert state == "failed"
    assert text == (
        "TemplateRenderError: DAG 'bad_template', task 'echo', field 'command': "
        "template error: 'dict object' has no attribute 'nope'\n"
    )


HELPER_OK = "ROWS = [1, 2, 3]\n"
HELPER_BROKEN = "ROWS = [1, 2, 3]\nraise RuntimeError('the helper is broken now')\n"

USES_HELPER = """
import logs_test_helper_breaks_later
from dagd import DAG, task

with DAG("helper_breaks") as helper_breaks:
    @task
    def count():
        return len(logs_test_helper_breaks_later.ROWS)

    count()
"""


async def test_a_dag_file_whose_import_fails_in_the_worker_shows_where(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    # The worker runs the text the scheduler loaded, but the helper it imports is read
    # from disk: edited into something broken after the load, the import fails there.
    helper = write_dag("logs_test_helper_breaks_later.py", HELPER_OK).resolve()
    dag_file = write_dag("helper_breaks.py", USES_HELPER).resolve()
    async with start_engine() as h:
        write_dag("logs_test_helper_breaks_later.py", HELPER_BROKEN)
        run_id, state = await h.run("helper_breaks")
        [attempt] = await h.attempts(run_id, "count")
    text = await read_text(attempt.log_path)
    assert state == "failed"
    headline = (f"DagdError: {dag_file}:2: cannot load DAG file: "
                "RuntimeError: the helper is broken now")
    assert attempt.error == headline
    assert text.splitlines() == [
        headline,
        "Traceback (most recent call last):",
        f'  File "{dag_file}", line 2, in <module>',
        "    import logs_test_helper_breaks_later",
        f'  File "{helper}", line 2, in <module>',
        "    raise RuntimeError('the helper is broken now')",
        "RuntimeError: the helper is broken now",
    ]
