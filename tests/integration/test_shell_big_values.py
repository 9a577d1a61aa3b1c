"""Values too large for a process's environment (Linux holds at most 128 KiB in one
variable): a large conf reaches a shell command in a file, named by DAGD_CONF_FILE, and
a value too large to pass is refused with its size, before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from integration.harness import StartEngine, read_text

pytestmark = pytest.mark.anyio

DAGS = """
from dagd import DAG, ShellTask

with DAG("big"):
    ShellTask(task_id="size",
              command='test -z "$DAGD_CONF" && echo "file=$DAGD_CONF_FILE" && '
                      'wc -c < "$DAGD_CONF_FILE"')

with DAG("spliced"):
    ShellTask(task_id="echo", command="printf %s {{ conf.blob }} | wc -c")
"""


async def test_a_large_conf_comes_in_a_file_and_a_huge_value_is_refused(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("big.py", DAGS)
    blob = "x" * 300_000
    async with start_engine() as h:
        run_id, state = await h.run("big", conf={"blob": blob})
        size = await h.xcom(run_id, "size")
        [attempt] = await h.attempts(run_id, "size")
        spliced_id, spliced = await h.run("spliced", conf={"blob": blob})
        [refused] = await h.attempts(spliced_id, "echo")
    assert state == "success"
    assert int(size) == len('{"blob":"' + blob + '"}')
    assert spliced == "failed"
    assert refused.error is not None
    assert "is 300,000 bytes, over the 131,008 one variable of a process may hold" in (
        refused.error)
    log = await read_text(attempt.log_path)
    [path] = [line.removeprefix("file=") for line in log.splitlines()
              if line.startswith("file=")]
    assert path.endswith(".json") and not await anyio.Path(path).exists()  # removed after
