"""Values from outside in a ShellTask, against real /bin/sh processes: a webhook body's
text never runs as shell code wherever the template puts it, a list command is an
argv, the environment is clean unless the task asks for the daemon's, and a last line
as long as the XCom cap still makes an XCom."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dagd import DAG, DagDefinitionError, ShellTask
from integration.harness import StartEngine, read_text

pytestmark = pytest.mark.anyio

WriteDag = Callable[[str, str], Path]

# Each tries to create a file named "pwned" (or to read as more than one argument).
PAYLOADS = {
    "semicolon": "x; touch pwned",
    "and": "x && touch pwned",
    "pipe": "x | touch pwned",
    "command_substitution": "$(touch pwned)",
    "backticks": "`touch pwned`",
    "newline": "x\ntouch pwned",
    "single_quotes": "it's'; touch pwned; echo '",
    "double_quotes": '"; touch pwned; echo "',
    "glob": "*",
    "leading_dash": "-n",
    "spaces": "hello world",
    "redirect": "x > pwned",
    "variable": "$HOME ${HOME}",
    "backslash": "a\\b\\",
    "empty": "",
    "heredoc_end": "EOF\ntouch pwned",
}

# One command per payload with the value bare, inside double quotes, inside single
# quotes and in a here-document; each writes what it got to a file.
SHELL_COMMAND = (
    "printf '<%s>' {{ conf.KEY }} > bare.out; "
    "echo MSG={{ conf.KEY }} > echo.out; "
    "printf '%s' \"double {{ conf.KEY }} quoted\" > double.out; "
    "printf '%s' 'single {{ conf.KEY }} quoted' > single.out\n"
    "cat > heredoc.out <<EOF\n{{ conf.KEY }}\nEOF\n"
    "printf '%s' \"$(printf '<%s>' {{ conf.KEY }})\" > nested.out"
)
# Without a shell: `sh -c` here only writes its one argument ($1) to a file.
WRITE_ARG = 'printf "<%s>" "$1" > {name}.out'


def payload_dag() -> str:
    lines = ["from dagd import DAG, ShellTask", "", 'with DAG("payloads") as payloads:']
    for key in PAYLOADS:
        cwd = f"{{{{ conf.dir }}}}/{key}"
        lines.append(f"    ShellTask(task_id='shell_{key}', cwd={cwd!r},\n"
                     f"              command={SHELL_COMMAND.replace('KEY', key)!r})")
        argv = ["sh", "-c", WRITE_ARG.format(name="argv"), "sh", f"{{{{ conf.{key} }}}}"]
        lines.append(f"    ShellTask(task_id='argv_{key}', cwd={cwd!r}, command={argv!r})")
        words = f"sh -c '{WRITE_ARG.format(name='words')}' sh {{{{ conf.{key} }}}}"
        lines.append(f"    ShellTask(task_id='words_{key}', cwd={cwd!r}, shell=False,\n"
                     f"              command={words!r})")
    return "\n".join(lines) + "\n"


async def test_no_payload_in_a_webhook_body_runs_as_shell_code(
    write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    write_dag("payloads.py", payload_dag())
    work = tmp_path / "work"
    for key in PAYLOADS:
        (work / key).mkdir(parents=True)
        (work / key / "some_file").write_text("globbing would list me\n")
    async with start_engine() as h:
        run_id, state = await h.run("payloads", conf={"dir": str(work), **PAYLOADS},
                                    deadline=60)
        errors = {ti.task_id: ti.state for ti in (await h.tis(run_id)).values()
                  if ti.state != "success"}
        [bare_log] = await h.attempts(run_id, "shell_semicolon")
        log = await read_text(bare_log.log_path)
    assert (state, errors) == ("success", {})
    assert sorted(str(p.relative_to(work)) for p in work.rglob("pwned*")) == []
    for key, value in PAYLOADS.items():
        out = {p.stem: p.read_text() for p in (work / key).glob("*.out")}
        assert out == {
            "bare": f"<{value}>",  # one argument, as sent ("hello world" too)
            "echo": f"MSG={value}\n" if "\\" not in value else out["echo"],  # dash's echo
            "double": f"double {value} quoted",
            "single": f"single {value} quoted",
            "heredoc": f"{value}\n",
            "nested": f"<{value}>",
            "argv": f"<{value}>",
            "words": f"<{value}>",
        }, key
    # The log shows what ran and, as JSON, the value it was given.
    assert "[dagd] $ printf '<%s>' \"${DAGD_ARG_1}\" > bare.out;" in log
    assert '[dagd]   DAGD_ARG_1="x; touch pwned"' in log


SPLICED = """
from dagd import DAG, ShellTask

with DAG("spliced") as spliced:
    ShellTask(task_id="raw", command="cd {{ conf.dir }} && {{ conf.cmd | raw }}")
    ShellTask(task_id="quoted", command="cd {{ conf.dir }} && echo {{ conf.cmd }} > quoted.out")
"""


async def test_raw_splices_shell_text_for_the_author_who_means_it(
    write_dag: WriteDag, start_engine: StartEngine, tmp_path: Path
) -> None:
    write_dag("spliced.py", SPLICED)
    async with start_engine() as h:
        _, state = await h.run("spliced", conf={"dir": str(tmp_path),
                                                "cmd": "echo two > two.out"})
    assert state == "success"
    assert (tmp_path / "two.out").read_text() == "two\n"  # shell text: it ran
    assert (tmp_path / "quoted.out").read_text() == "echo two > two.out\n"  # data


ENVIRONMENT = """
from dagd import DAG, ShellTask

with DAG("environment") as environment:
    ShellTask(task_id="clean", command="env", env={"MINE": "{{ conf.mine }}"})
    ShellTask(task_id="inherited", command="env", inherit_env=True)
"""


async def test_a_shell_task_does_not_inherit_the_daemons_secrets_unless_it_asks(
    write_dag: WriteDag, start_engine: StartEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGD_TEST_SECRET_PASSWORD", "hunter2-in-the-daemon")
    write_dag("environment.py", ENVIRONMENT)
    async with start_engine() as h:
        run_id, state = await h.run("environment", conf={"mine": "declared"})
        logs = {t: await read_text((await h.attempts(run_id, t))[0].log_path)
                for t in ("clean", "inherited")}
    assert state == "success"
    clean = logs["clean"].splitlines()
    assert "hunter2-in-the-daemon" not in logs["clean"]
    assert not [line for line in clean if line.startswith("DAGD_TEST_SECRET")]
    assert f"PATH={os.environ['PATH']}" in clean  # the allow-list: programs still run
    assert "MINE=declared" in clean  # the task's own env
    assert f"DAGD_RUN_ID={run_id}" in clean  # and the run's facts
    inherited = logs["inherited"].splitlines()
    assert "DAGD_TEST_SECRET_PASSWORD=hunter2-in-the-daemon" in inherited
    assert f"DAGD_RUN_ID={run_id}" in inherited


LONG_LINES = """
from dagd import DAG, ShellTask

with DAG("long_lines") as long_lines:
    ShellTask(task_id="cap_minus_one", command="printf '%01048575d' 0 | tr 0 x; echo")
    ShellTask(task_id="quotes", command="echo first; printf '%0600000d' 0 | tr 0 '\\"'")
"""


async def test_a_last_line_as_long_as_the_xcom_cap_still_makes_an_xcom(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("long_lines.py", LONG_LINES)
    async with start_engine() as h:
        run_id, state = await h.run("long_lines", deadline=30)
        errors = {t: (await h.attempts(run_id, t))[0].error for t in ("cap_minus_one",
                                                                       "quotes")}
        values = {t: await h.xcom(run_id, t) for t in ("cap_minus_one", "quotes")}
    assert (state, errors) == ("success", {"cap_minus_one": None, "quotes": None})
    # JSON adds two quotes, and a backslash before each '"': cut to fit 1 MiB as JSON.
    assert values["cap_minus_one"] == "x" * (1024 * 1024 - 2)
    assert values["quotes"] == '"' * ((1024 * 1024 - 2) // 2)


async def test_the_log_of_a_list_command_shows_its_arguments_quoted(
    write_dag: WriteDag, start_engine: StartEngine
) -> None:
    write_dag("listed.py", """
from dagd import DAG, ShellTask

with DAG("listed") as listed:
    ShellTask(task_id="argv", command=["printf", "<%s>", "{{ conf.msg }}"])
""")
    async with start_engine() as h:
        run_id, state = await h.run("listed", conf={"msg": "a b; c"})
        [attempt] = await h.attempts(run_id, "argv")
        value = await h.xcom(run_id, "argv")
    assert (state, value) == ("success", "<a b; c>")
    assert "[dagd] $ printf '<%s>' 'a b; c'\n" in await read_text(attempt.log_path)


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"command": ["echo", "x"], "shell": "/bin/bash"}, "shell",
         "a list command runs without a shell"),
        ({"command": ["echo", 1]}, "command", "or a list of strings"),
        ({"command": "env", "inherit_env": True, "append_env": False}, "inherit_env",
         "choose one"),
        ({"command": "env", "inherit_env": "yes"}, "inherit_env", "must be True or False"),
    ],
)
def test_bad_shell_settings_are_refused_when_the_dag_is_defined(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    with DAG("bad_shell"), pytest.raises(DagDefinitionError) as caught:
        ShellTask(task_id="t", **kwargs)
    assert (caught.value.field, caught.value.task_id) == (field, "t")
    assert words in caught.value.message


def test_inherit_env_comes_from_default_args_unless_the_task_says() -> None:
    with DAG("defaults", default_args={"inherit_env": True}):
        given = ShellTask(task_id="given", command="env")
        refused = ShellTask(task_id="refused", command="env", inherit_env=False)
    with DAG("no_defaults"):
        plain = ShellTask(task_id="plain", command="env")
    assert (given.inherit_env, refused.inherit_env, plain.inherit_env) == (True, False, False)


BASH_ARITHMETIC = """
from dagd import DAG, ShellTask

with DAG("arith"):
    ShellTask(task_id="after_shift", shell="bash",
              command="n=$(( 1 << 2 ))\\nprintf '%s|' {{ conf.file }}")
    ShellTask(task_id="compare", shell="bash",
              command="[[ {{ conf.n }} -gt 5 ]] && echo big || echo small")
"""


async def test_bash_arithmetic_neither_unquotes_a_value_nor_evaluates_one(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine, tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    write_dag("arith.py", BASH_ARITHMETIC)
    async with start_engine() as h:
        run_id, _ = await h.run("arith", conf={"file": "*", "n": f"a[$(touch {marker})]"})
        shifted = await h.xcom(run_id, "after_shift")
        states = await h.states(run_id)
        [compare] = await h.attempts(run_id, "compare")
        good_id, good = await h.run("arith", conf={"file": "x", "n": 9})
        big = await h.xcom(good_id, "compare")
    assert shifted == "*|"  # one argument, not globbed
    assert states == {"after_shift": "success", "compare": "failed"}
    assert compare.error is not None and "must be a whole number" in compare.error
    assert not marker.exists()
    assert (good, big) == ("success", "big")
