"""DAG files named like standard modules (`http.py`, `json.py`, `logging.py`) shadow
nothing: every DAG of the folder runs, sync tasks in real worker processes, and a helper
module beside the DAG files is still importable. A helper that an installed module
hides is reported beside the import errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from aiohttp import web

from dagd.authoring.loader import load_folder
from dagd.config import Settings
from dagd.daemon import sync_dags
from dagd.store import Store
from integration.harness import StartEngine

pytestmark = pytest.mark.anyio

WriteDag = Callable[[str, str], Path]

HTTP_PY = """
from dagd import DAG, HttpTask, task

with DAG("named_http") as named_http:
    @task
    def f():
        return 1

    fetch = HttpTask(task_id="fetch", url="{{ conf.base }}/ping")
    f() >> fetch
"""

JSON_PY = """
from dagd import DAG, task

with DAG("named_json") as named_json:
    @task
    def dumps():
        import json
        return json.loads(json.dumps({"stdlib": True}))

    dumps()
"""

LOGGING_PY = """
import logging
from dagd import DAG, task

with DAG("named_logging") as named_logging:
    @task
    def warn():
        logging.getLogger("named").warning("from the standard logging")
        return 2

    warn()
"""

CALLS_PY = """
def double(x):
    return 2 * x
"""

OTHER_PY = """
import calls
from dagd import DAG, task

with DAG("uses_helper") as uses_helper:
    @task
    def g():
        return calls.double(21)

    g()
"""


@pytest.fixture
async def ping_server() -> AsyncIterator[str]:
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"pong": True})

    app = web.Application()
    app.router.add_get("/ping", ping)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_dag_files_named_like_standard_modules_run_every_dag(
    write_dag: WriteDag, start_engine: StartEngine, ping_server: str
) -> None:
    write_dag("http.py", HTTP_PY)
    write_dag("json.py", JSON_PY)
    write_dag("logging.py", LOGGING_PY)
    write_dag("calls.py", CALLS_PY)
    write_dag("other.py", OTHER_PY)
    async with start_engine() as h:
        results: dict[str, Any] = {}
        for dag_id, conf in (("named_http", {"base": ping_server}), ("named_json", None),
                             ("named_logging", None), ("uses_helper", None)):
            run_id, state = await h.run(dag_id, conf=conf)
            attempts = {t: await h.attempts(run_id, t) for t in await h.states(run_id)}
            errors = {t: [a.error for a in rows] for t, rows in attempts.items()}
            xcoms = {t: await h.xcom(run_id, t) for t in attempts}
            results[dag_id] = (state, errors, xcoms)
    assert results == {
        "named_http": ("success", {"f": [None], "fetch": [None]},
                       {"f": 1, "fetch": {"status": 200, "body": {"pong": True},
                                          "headers": {"content-type": ANY}}}),
        "named_json": ("success", {"dumps": [None]}, {"dumps": {"stdlib": True}}),
        "named_logging": ("success", {"warn": [None]}, {"warn": 2}),
        "uses_helper": ("success", {"g": [None]}, {"g": 42}),
    }


async def test_a_daemon_started_inside_the_dags_folder_still_runs_them(
    write_dag: WriteDag, start_engine: StartEngine, ping_server: str, dags_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `cd dags && dagd run --dags-folder .`: the worker process must not put its working
    # directory first on sys.path either.
    write_dag("http.py", HTTP_PY)
    monkeypatch.chdir(dags_folder)
    async with start_engine() as h:
        run_id, state = await h.run("named_http", conf={"base": ping_server})
        [attempt] = await h.attempts(run_id, "f")
        value = await h.xcom(run_id, "f")
    assert (state, attempt.error, value) == ("success", None, 1)


JSON_HELPER = """
def parse(text):
    return text.split(",")
"""

USES_JSON_HELPER = """
import json
from dagd import DAG, task

with DAG("uses_json") as uses_json:
    @task
    def parse():
        return json.parse("a,b")  # meant the helper: the standard json has no parse

    parse()
"""


async def test_a_helper_named_like_a_standard_module_is_an_import_error_entry(
    write_dag: WriteDag, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    helper = write_dag("json.py", JSON_HELPER)
    write_dag("uses_json.py", USES_JSON_HELPER)
    bag = load_folder(settings.dags_folder)
    assert list(bag.dags) == ["uses_json"]  # the DAG still loads
    store = await Store.open(settings.db_path, synchronous="normal")
    try:
        with caplog.at_level(logging.WARNING, logger="dagd.daemon"):
            await sync_dags(store, bag, set())
        rows = await store.list_import_errors()
    finally:
        await store.close()
    message = (
        f"warning: json.py has the name of the standard library module 'json' "
        f"({json.__file__}), which comes first: `import json` in a DAG file gets that "
        f"module, not this file; rename it"
    )
    # What `dagd dags errors` and GET /api/v1/import-errors show, and the daemon's log.
    assert [(r.file, r.line, r.message) for r in rows] == [
        (str(helper.resolve()), None, message)
    ]
    assert f"{helper.resolve()}: {message}" in caplog.text
