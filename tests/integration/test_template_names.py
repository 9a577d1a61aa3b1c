"""Templates in a real run: an upstream task named `get` and a body key `items` give
their values, not a dict's methods."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from integration.harness import StartEngine, read_text

pytestmark = pytest.mark.anyio

NAMED_LIKE_METHODS = """
from dagd import DAG, ShellTask, task

with DAG("named_like_methods") as named_like_methods:
    @task
    async def get():
        return {"body": "fetched"}

    @task
    async def keys():
        return ["k1", "k2"]

    echo = ShellTask(
        task_id="echo",
        command=(
            "echo 'get={{ upstream.get.body }} keys={{ upstream.keys | join(\\",\\") }} "
            "items={{ conf.items }} nested={{ conf.meta.keys }}'"
        ),
    )
    [get(), keys()] >> echo
"""


async def test_names_of_dict_methods_give_the_values_in_a_shell_command(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("named_like_methods.py", NAMED_LIKE_METHODS)
    conf = {"items": "three items", "meta": {"keys": "the keys"}}
    async with start_engine() as h:
        run_id, state = await h.run("named_like_methods", conf=conf)
        [attempt] = await h.attempts(run_id, "echo")
    assert state == "success", attempt.error
    assert "get=fetched keys=k1,k2 items=three items nested=the keys\n" in (
        await read_text(attempt.log_path)
    )
