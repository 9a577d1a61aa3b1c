"""Notifications end to end: a failing task queues a notification in the same
transaction, the outbox posts it, in Slack's message format, to a real HTTP server on
127.0.0.1; a server that is down is retried until it answers. Plugins load from a
folder, and a broken one is reported without stopping the others."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dagd import plugins
from integration.harness import StartEngine, outbox_running, wait_until

pytestmark = pytest.mark.anyio

REPO_PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

FAILING = """
    from dagd import DAG, task
    from dagd.plugins import SlackNotifier

    @task(retries=1, retry_delay=0)
    async def breaks():
        raise ValueError("the source is empty")

    @task
    async def fine():
        return 1

    with DAG("noisy", notifiers=[SlackNotifier(url_env="TEST_SLACK_URL",
                                               on=("run_failed", "task_retry"))]):
        breaks()

    with DAG("quiet", notifiers=[SlackNotifier(url_env="TEST_SLACK_URL",
                                               on=("run_success",))]):
        fine()
"""


class ChatServer:
    """A Slack-compatible incoming webhook: records JSON posts; can be told to fail."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures_left = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.failures_left > 0:
            self.failures_left -= 1
            return web.Response(status=503, text="busy")
        self.received.append(await request.json())
        return web.Response(text="ok")


@asynccontextmanager
async def chat_server() -> AsyncIterator[tuple[ChatServer, str]]:
    server = ChatServer()
    app = web.Application()
    app.router.add_post("/hook", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def repo_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGD_PLUGINS_FOLDER", str(REPO_PLUGINS))
    plugins.load(REPO_PLUGINS)


async def test_a_failure_and_its_retry_are_posted_in_slack_format(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_dag("noisy.py", FAILING)
    async with chat_server() as (server, url), start_engine() as h, outbox_running(h):
        monkeypatch.setenv("TEST_SLACK_URL", url)
        run_id, state = await h.run("noisy")
        assert state == "failed"
        await wait_until(lambda: len(server.received) >= 2, what="two posts")

        async def recorded() -> bool:
            rows = await h.store.list_notifications("noisy")
            return len(rows) == 2 and all(r.state == "sent" for r in rows)

        await wait_until(recorded, what="both sends recorded")
        rows = await h.store.list_notifications("noisy")
        assert sorted(r.event for r in rows) == ["run_failed", "task_retry"]
        assert all(r.state == "sent" and r.run_id == run_id for r in rows)
        texts = [m["text"] for m in server.received]
        assert any("noisy.breaks" in t and "will retry" in t and "the source is empty" in t
                   for t in texts)
        assert any(f"noisy [run {run_id}] failed" in t for t in texts)
        for message in server.received:
            assert message["blocks"][0]["type"] == "section"
            assert message["blocks"][0]["text"]["type"] == "mrkdwn"
        # Only the events asked for: no run_success, no task_failed for this DAG.
        run_id, state = await h.run("quiet")
        assert state == "success"
        await wait_until(lambda: len(server.received) >= 3, what="the success post")
        assert "quiet" in server.received[-1]["text"]


async def test_a_chat_server_that_is_down_is_retried_until_it_answers(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_dag("noisy.py", FAILING)
    async with chat_server() as (server, url), start_engine() as h, outbox_running(h):
        server.failures_left = 1
        monkeypatch.setenv("TEST_SLACK_URL", url)
        _, state = await h.run("quiet")
        assert state == "success"
        await wait_until(lambda: len(server.received) == 1, deadline=15, what="a post")

        async def recorded() -> bool:  # the server has it; the outbox then records it
            return (await h.store.list_notifications("quiet"))[0].state == "sent"

        await wait_until(recorded, what="the send recorded")
        [row] = await h.store.list_notifications("quiet")
        assert row.state == "sent" and row.attempts == 2
        assert row.last_error is None


async def test_a_missing_webhook_url_is_kept_pending_with_the_reason(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_dag("noisy.py", FAILING)
    monkeypatch.delenv("TEST_SLACK_URL", raising=False)
    async with start_engine() as h, outbox_running(h):
        _, state = await h.run("quiet")
        assert state == "success"

        async def tried() -> bool:
            rows = await h.store.list_notifications("quiet")
            return bool(rows) and rows[0].attempts >= 1

        await wait_until(tried, what="a first try")
        [row] = await h.store.list_notifications("quiet")
        assert row.state == "pending"
        assert "TEST_SLACK_URL" in (row.last_error or "")


def test_a_broken_plugin_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "good_one.py").write_text(textwrap.dedent("""
        from dagd.notify.base import Notifier

        class EchoNotifier(Notifier):
            kind = "echo"

            async def send(self, notification):
                print(notification.text)
    """))
    (folder / "broken_one.py").write_text("import os\n\ndef oops(:\n    pass\n")
    failures = plugins.load_folder(folder)
    assert len(failures) == 1
    assert failures[0].file.endswith("broken_one.py")
    assert failures[0].line == 3
    assert "SyntaxError" in failures[0].message
    from dagd.plugins import EchoNotifier  # type: ignore[attr-defined]

    assert EchoNotifier.kind == "echo"
    with pytest.raises(ImportError, match="no plugin offers 'Nope'"):
        from dagd.plugins import Nope  # type: ignore[attr-defined]  # noqa: F401
