"""A configured secret never shows in what the daemon stores, serves or logs: an error a
task raised, the value it returned, an import error, all with the secret as `***`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from dagd.config import Settings
from dagd.executors.logs import SecretFilter
from integration.harness import StartEngine
from integration.test_api import api, get

pytestmark = pytest.mark.anyio

SECRET = "hunter2-webhook-secret-value"

LEAKY = """
import os
from dagd import DAG, Webhook, task

with DAG("leaky", triggers=[Webhook("leaky", secret_env="LEAKY_HOOK_SECRET")]) as leaky:
    @task
    async def boom():
        raise RuntimeError("could not log in with " + os.environ["LEAKY_HOOK_SECRET"])

    @task
    async def returns_it():
        return {"pw": os.environ["LEAKY_HOOK_SECRET"]}

    boom()
    returns_it()
"""


async def test_an_error_and_a_return_value_with_a_secret_show_it_masked(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEAKY_HOOK_SECRET", SECRET)
    write_dag("leaky.py", LEAKY)
    async with start_engine() as h, api(h) as (http, base):
        run_id, state = await h.run("leaky")
        stored = await h.attempts(run_id, "boom")
        ti = await get(http, f"{base}/runs/{run_id}/tasks/boom")
        ui = base.removesuffix("/api/v1")
        async with http.get(f"{ui}/runs/{run_id}/tasks/boom") as r:
            boom_page = await r.text()
        async with http.get(f"{ui}/runs/{run_id}/tasks/returns_it") as r:
            xcom_page = await r.text()
    assert state == "failed"
    assert stored[0].error == "RuntimeError: could not log in with ***"  # as written
    assert SECRET not in str(ti[1]) and "could not log in with ***" in str(ti[1])
    assert SECRET not in boom_page and "could not log in with ***" in boom_page
    assert SECRET not in xcom_page and "***" in xcom_page


async def test_an_import_error_with_a_secret_is_stored_and_served_masked(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagd.authoring.loader import load_folder
    from dagd.daemon import sync_dags
    from dagd.executors.logs import configured_secrets

    monkeypatch.setenv("LEAKY_HOOK_SECRET", SECRET)
    write_dag("leaky.py", LEAKY)
    async with start_engine() as h, api(h) as (http, base):
        broken = write_dag("broken.py", f"raise ValueError('the password is {SECRET}')\n")
        bag = load_folder(broken.parent)
        assert bag.errors
        await sync_dags(h.store, bag, set(), configured_secrets(h.settings, bag.dags.values()))
        stored = await h.store.list_import_errors()
        served = await get(http, f"{base}/import-errors")
        async with http.get(base.removesuffix("/api/v1") + "/") as r:
            page = await r.text()
    assert [e.message for e in stored] == ["ValueError: the password is ***"]
    assert SECRET not in (stored[0].traceback or "")
    assert SECRET not in str(served[1]) and SECRET not in page


def test_the_daemons_own_log_masks_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    hide = SecretFilter()
    hide.secrets = [SECRET]
    logger = logging.getLogger("dagd.test.secrets")
    handler = caplog.handler
    handler.addFilter(hide)
    try:
        with caplog.at_level(logging.ERROR, logger="dagd.test.secrets"):
            logger.error("failed: %s", f"login with {SECRET}")
            try:
                raise RuntimeError(SECRET)
            except RuntimeError:
                logger.exception("boom")
    finally:
        handler.removeFilter(hide)
    assert SECRET not in caplog.text
    assert "failed: login with ***" in caplog.text


LINKER = """
from dagd import DAG, task

with DAG("linker") as linker:
    @task
    def link():
        print("an honest line")

    link()
"""


async def test_a_log_replaced_by_a_link_serves_nothing_of_the_file_it_points_to(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    tmp_path: Path,
) -> None:
    private = tmp_path / "private.txt"
    private.write_text("operator-token-do-not-serve\n")
    write_dag("linker.py", LINKER)
    async with start_engine() as h, api(h) as (http, base):
        run_id, state = await h.run("linker")
        # What a task could do to its own log, in its place: a link to another file.
        log_path = anyio.Path((await h.attempts(run_id, "link"))[0].log_path)
        await log_path.unlink(missing_ok=True)
        await log_path.symlink_to(private)
        async with http.get(f"{base}/runs/{run_id}/tasks/link/logs") as r:
            served = r.status, await r.text()
        async with http.get(base.removesuffix("/api/v1") + f"/runs/{run_id}/tasks/link") as r:
            page = await r.text()
    assert state == "success"
    assert served[0] == 200 and "operator-token" not in served[1]
    assert "operator-token" not in page


async def test_requests_that_cannot_be_parsed_leave_one_short_line_in_the_log(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_dag("linker.py", LINKER)
    bad = [b"GET /api/v1/dags HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
           b"POST /api/v1/dags/linker/runs HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
           b"Content-Length: 5\r\n\r\nhello"] * 10
    async with start_engine() as h, api(h) as (_, base):
        host, port = base.removeprefix("http://").split("/")[0].split(":")
        with caplog.at_level(logging.WARNING, logger="aiohttp.server"):
            for request in bad:
                async with await anyio.connect_tcp(host, int(port)) as conn:
                    await conn.send(request)
                    answer = await conn.receive()
                    assert answer.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4")), answer[:40]
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert "Traceback" not in caplog.text
    assert 1 <= len(lines) <= 3  # one a second at most
    assert all(r.getMessage().startswith("a bad request from a client") for r in lines)


async def test_the_daemon_keeps_its_data_directory_private(
    write_dag: Callable[[str, str], Path], settings: Settings,
) -> None:
    from integration.test_webhooks import daemon

    write_dag("linker.py", LINKER)
    await anyio.Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    await anyio.Path(settings.data_dir).chmod(0o755)
    async with daemon(settings):
        mode = (await anyio.Path(settings.data_dir).stat()).st_mode & 0o777
    assert mode == 0o700
