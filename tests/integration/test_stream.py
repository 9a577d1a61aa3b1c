"""The live stream, GET /api/v1/stream, over a real aiohttp server on 127.0.0.1 and a
running engine: committed changes in order, filters, resuming with Last-Event-ID, a
stalled client, a followed log, and the end at shutdown."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from aiohttp import web

from dagd.scheduler.pruner import Pruner
from dagd.store import Store
from dagd.web import stream as stream_module
from dagd.web.app import create_app
from integration.harness import Harness, StartEngine, cli_headers, wait_until

pytestmark = pytest.mark.anyio

DEADLINE = 10.0

DAGS = """
from dagd import DAG, task

with DAG("pair") as pair:
    @task
    async def first():
        return 1

    @task
    async def second():
        return 2

    first() >> second()

with DAG("other") as other:
    @task
    async def alone():
        return None

    alone()
"""


@dataclasses.dataclass
class Server:
    runner: web.AppRunner
    base: str
    headers: dict[str, str]
    http: aiohttp.ClientSession


@asynccontextmanager
async def serve(h: Harness) -> AsyncIterator[Server]:
    reader = await Store.open(h.settings.db_path, readonly=True)
    runner = web.AppRunner(create_app(h.engine, reader), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        headers = cli_headers(h.settings)
        async with aiohttp.ClientSession(headers=headers) as http:
            yield Server(runner, f"http://{host}:{port}", headers, http)
    finally:
        await runner.cleanup()
        await reader.close()


@dataclasses.dataclass
class Event:
    id: str | None
    event: str
    data: Any


class Sse:
    """A server-sent events reader over one response, each read under a deadline."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None

    async def next(self) -> Event | None:
        """The next message with data (None at the end of the stream); comments and
        id-only messages only move `last_id`."""
        fields: dict[str, str] = {}
        with anyio.fail_after(DEADLINE):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\n")
                if line:
                    if not line.startswith(":"):
                        name, _, value = line.partition(": ")
                        fields[name] = value
                        if name == "id":
                            self.last_id = value
                    continue
                if "data" in fields:
                    return Event(fields.get("id"), fields.get("event", "message"),
                                 orjson.loads(fields["data"]))
                fields = {}

    async def until(self, done: Callable[[Event], bool]) -> list[Event]:
        seen: list[Event] = []
        while True:
            event = await self.next()
            assert event is not None, f"the stream ended; seen {seen}"
            seen.append(event)
            if done(event):
                return seen


@asynccontextmanager
async def sse(server: Server, query: str = "", *,
              last_id: str | None = None) -> AsyncIterator[Sse]:
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    async with server.http.get(f"{server.base}/api/v1/stream{query}", headers=headers,
                               timeout=aiohttp.ClientTimeout(total=None)) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/event-stream"
        reader = Sse(response)
        # The first message (retry:) is sent once the client is subscribed.
        with anyio.fail_after(DEADLINE):
            assert (await response.content.readline()).startswith(b"retry: ")
        yield reader


def ended(run_id: int) -> Callable[[Event], bool]:
    return lambda e: (e.event == "run" and e.data["id"] == run_id
                      and e.data["state"] in ("success", "failed"))


def brief(events: list[Event]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for e in events:
        d = e.data
        if e.event == "ti":
            out.append(("ti", d["task_id"], d["state"], str(d["try_number"])))
        elif e.event == "attempt":
            out.append(("attempt", d["task_id"], d["state"]))
        elif e.event == "run":
            out.append(("run", d["state"]))
        else:
            out.append((e.event, d.get("kind", ""), d.get("state", "")))
    return out


async def test_a_runs_changes_arrive_in_order_each_after_its_commit(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server, sse(server) as stream:
        run_id = await h.trigger("pair")
        seen = await stream.until(ended(run_id))
        history = await h.store.run_history(run_id)
        tis = await h.tis(run_id)
    assert brief(seen) == [
        ("event", "manual", "run_created"),
        ("run", "queued"), ("run", "running"),
        ("ti", "first", "queued", "0"), ("ti", "first", "running", "1"),
        ("attempt", "first", "running"),
        ("ti", "first", "success", "1"), ("ti", "second", "queued", "0"),
        ("ti", "second", "running", "1"),
        ("attempt", "first", "success"), ("attempt", "second", "running"),
        ("ti", "second", "success", "1"), ("attempt", "second", "success"),
        ("run", "success"),
    ]
    # Each change the stream told is one the rows hold (it was committed when sent).
    ti_ids = {ti.id: name for name, ti in tis.items()}
    stored = {(h.ti_id, h.to_state, h.at) for h in history}
    for e in seen:
        if e.event == "ti":
            assert e.data["task_id"] == ti_ids[e.data["id"]]
            assert (e.data["id"], e.data["state"], e.data["at"]) in stored
        if e.event == "run":
            assert (None, e.data["state"], e.data["at"]) in stored
    run_event = seen[0].data
    assert run_event["dag_id"] == "pair" and run_event["source"]
    ids = [e.id for e in seen]
    assert all(ids) and len(set(ids)) == len(ids)


async def test_filters_keep_one_dag_or_one_run(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server:
        async with sse(server, "?dag=other") as by_dag:
            pair_run = await h.trigger("pair")
            other_run = await h.trigger("other")
            seen = await by_dag.until(ended(other_run))
        assert {e.data["dag_id"] for e in seen} == {"other"}
        assert {e.data.get("run_id", e.data["id"]) for e in seen if e.event != "event"} \
            == {other_run}
        await h.wait(pair_run)
        async with sse(server, f"?run={other_run + 2}") as by_run:
            await h.trigger("pair")
            third = await h.trigger("pair")
            assert third == other_run + 2
            seen = await by_run.until(ended(third))
        assert {e.data.get("run_id", e.data["id"]) for e in seen} == {third}
        assert ("ti", "second", "success", "1") in brief(seen)
        async with server.http.get(f"{server.base}/api/v1/stream?run=x") as bad:
            assert bad.status == 422
            assert (await bad.json())["field"] == "run"


async def test_a_client_that_reconnects_gets_exactly_what_it_missed(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server, sse(server) as full:
        async with sse(server) as partial:
            run_id = await h.trigger("pair")
            before = await partial.until(lambda e: e.event == "ti")
            cursor = partial.last_id
        assert cursor == before[-1].id
        seen_all = await full.until(ended(run_id))
        # The run has ended while the client was away: its quiet first-try changes
        # (queued, running, success: no history row) are rebuilt from the rows.
        async with sse(server, last_id=cursor) as resumed:
            missed = await resumed.until(ended(run_id))
    after = [e for e in seen_all if e.id not in {b.id for b in before}]
    assert [(e.id, e.event, e.data) for e in missed] == [
        (e.id, e.event, e.data) for e in after]
    assert ("ti", "second", "success", "1") in brief(missed)


RETRY_MAP_DAG = """
from dagd import DAG, task

tries = []

with DAG("bumpy") as bumpy:
    @task(retries=1, retry_delay=0)
    async def flaky():
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("first try fails")
        return [1, 2, 3]

    @task
    async def double(x):
        return 2 * x

    double.expand(x=flaky())
"""


async def test_a_resume_across_a_retry_and_mapped_instances_is_exact(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("bumpy.py", RETRY_MAP_DAG)
    async with start_engine() as h, serve(h) as server, sse(server) as full:
        async with sse(server) as partial:
            run_id = await h.trigger("bumpy")
            before = await partial.until(lambda e: e.event == "attempt")
            cursor = partial.last_id
        seen_all = await full.until(ended(run_id))
        async with sse(server, last_id=cursor) as resumed:
            missed = await resumed.until(ended(run_id))
    after = [e for e in seen_all if e.id not in {b.id for b in before}]
    assert [(e.id, e.event, e.data) for e in missed] == [
        (e.id, e.event, e.data) for e in after]
    shown = brief(missed)
    assert ("ti", "flaky", "up_for_retry", "1") in shown
    assert ("ti", "flaky", "running", "2") in shown
    assert sorted(d["map_index"] for d in (e.data for e in missed)
                  if d.get("task_id") == "double" and d.get("state") == "success"
                  and "map_index" in d) == [-1, 0, 1, 2]


async def test_a_cursor_that_is_not_ours_gets_reload(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server, \
            sse(server, last_id="not-a-cursor") as stream:
        event = await stream.next()
    assert event is not None and event.event == "reload" and event.data["reason"]


def big_dag(n: int) -> str:
    return f"""
from dagd import DAG, task

with DAG("big", max_active_tasks=64) as big:
    for i in range({n}):
        @task(task_id=f"t{{i}}")
        async def noop():
            return None

        noop()

with DAG("small") as small:
    @task
    async def one():
        return None

    one()
"""


async def test_a_stalled_client_is_told_to_reload_and_never_slows_the_scheduler(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("big.py", big_dag(1500))
    async with start_engine() as h, serve(h) as server:
        host, port = server.base.removeprefix("http://").split(":")
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            auth = server.headers["Authorization"]
            sock.sendall(f"GET /api/v1/stream HTTP/1.1\r\nHost: {host}\r\n"
                         f"Authorization: {auth}\r\n\r\n".encode())
            sock.setblocking(False)
            with anyio.fail_after(DEADLINE):
                await anyio.wait_readable(sock)
            received = sock.recv(256)  # the headers: the stream is open
            assert received.startswith(b"HTTP/1.1 200")
            await wait_until(lambda: bool(h.engine.changes._subs) and any(
                s.limit == stream_module.QUEUE_LIMIT for s in h.engine.changes._subs))
            # The client reads nothing more while a big run goes through.
            _run_id, state = await h.run("big", deadline=60.0)
            assert state == "success"
            seen = bytearray()
            with anyio.fail_after(DEADLINE):
                while b"event: reload" not in seen:
                    await anyio.wait_readable(sock)
                    seen += sock.recv(1 << 20)
            assert b"behind" in seen
            # Told to reload, the client is subscribed again and the stream goes on:
            # reading, it catches up (a reload per fall behind) until it is subscribed
            # and nothing is left to send.
            after = bytearray()

            def caught_up() -> bool:
                try:
                    after.extend(sock.recv(1 << 20))
                except BlockingIOError:
                    pass
                subs = [s for s in h.engine.changes._subs
                        if s.limit == stream_module.QUEUE_LIMIT]
                return bool(subs) and not subs[0].dropped and subs[0].pending == 0

            await wait_until(caught_up)
            small_run, _ = await h.run("small")
            done = f'"id":{small_run},"dag_id":"small","state":"success"'.encode()
            with anyio.fail_after(DEADLINE):
                while done not in after:
                    await anyio.wait_readable(sock)
                    after += sock.recv(1 << 20)


SECRET = "s3cret-token-value"

LOG_DAG = f"""
from dagd import DAG, task

with DAG("talk") as talk:
    @task
    def speak(conf):
        print("line one", flush=True)
        with open(conf["fifo"]) as f:  # blocks until the test writes
            f.read()
        print("line two {SECRET}", flush=True)
        return None

    speak()
"""


async def test_a_followed_log_shows_lines_as_they_are_printed_masked(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGD_TEST_SMTP_PASSWORD", SECRET)
    write_dag("talk.py", LOG_DAG)
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    custom = dataclasses.replace(settings, smtp_password_env="DAGD_TEST_SMTP_PASSWORD")
    async with start_engine(custom) as h, serve(h) as server:
        run_id = await h.trigger("talk", {"fifo": str(fifo)})
        await wait_until(lambda: _has_attempt(h, run_id))
        [attempt] = await h.attempts(run_id, "speak")
        async with sse(server, f"?log={attempt.id}&run={run_id}") as stream:
            logs = await stream.until(lambda e: e.event == "log" and "line one" in
                                      e.data["text"])
            await anyio.Path(fifo).write_text("go")  # only now may the task go on
            # The attempt's last line may come before or after its end (it is read
            # to the end once the attempt ends); the run's end comes in any case.
            seen: list[Event] = []
            while not ("line two" in _text(seen) and any(map(ended(run_id), seen))):
                event = await stream.next()
                assert event is not None, f"the stream ended; seen {seen}"
                seen.append(event)
    assert "line one\n" in _text(logs) and "line two ***\n" in _text(seen)
    assert SECRET not in _text(logs + seen) and all(SECRET not in str(e.data) for e in seen)
    assert _text(logs + seen) == "line one\nline two ***\n"
    first = next(e for e in logs if e.event == "log")
    assert first.data["attempt_id"] == attempt.id and first.data["offset"] == 0


def _text(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "log")


async def _has_attempt(h: Harness, run_id: int) -> bool:
    return bool(await h.attempts(run_id, "speak"))


async def test_a_followed_attempt_that_is_unknown_is_a_404(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server:
        async with server.http.get(f"{server.base}/api/v1/stream?log=999") as resp:
            assert resp.status == 404


async def test_the_stream_needs_a_login(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server, aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{server.base}/api/v1/stream") as resp:
            assert resp.status == 401


async def test_the_stream_ends_when_the_server_stops(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server, sse(server) as stream:
        with anyio.fail_after(DEADLINE):
            await server.runner.cleanup()
        assert await stream.next() is None


async def test_a_stream_ends_once_its_token_is_revoked(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    from dagd.accounts import AccountsFile

    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server:
        accounts = AccountsFile(h.settings.data_dir)
        token = accounts.create_token("watcher", role="viewer")
        async with server.http.get(
                f"{server.base}/api/v1/stream", headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=None)) as response:
            assert response.status == 200
            reader = Sse(response)
            first = await h.trigger("pair")
            await reader.until(ended(first))
            accounts.revoke_token("watcher")
            # Runs go on; the revoked stream must end (what it had sent before its end
            # may still be read), not follow them for ever.
            with anyio.fail_after(DEADLINE):
                while True:
                    run_id = await h.trigger("pair")
                    event = await reader.next()
                    while event is not None and not ended(run_id)(event):
                        event = await reader.next()
                    if event is None:
                        break
        async with server.http.get(f"{server.base}/api/v1/stream", headers={
                "Authorization": f"Bearer {token}"}) as again:
            assert again.status == 401


MANY = """
import asyncio
from dagd import DAG, task

with DAG("many") as many:
    @task
    async def quick(i):
        return i

    quick.expand(i=list(range(16)))

with DAG("long") as long_dag:
    @task
    async def waits():
        await asyncio.Event().wait()

    waits()
"""


async def test_following_ended_logs_takes_no_place_from_a_running_ones_tail(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine,
) -> None:
    write_dag("many.py", MANY)
    async with start_engine() as h, serve(h) as server:
        done, _ = await h.run("many")
        ended = [a.id for ti in await h.store.list_tis(done)
                 for a in await h.store.list_attempts(ti.id)]
        assert len(ended) == 16
        running = await h.trigger("long")

        async def started() -> bool:
            return bool(await h.attempts(running, "waits"))

        await wait_until(started, what="the long task running")
        live = (await h.attempts(running, "waits"))[0].id
        hogs = ["?" + "&".join(f"log={a}" for a in ended[:8]),
                "?" + "&".join(f"log={a}" for a in ended[8:])]
        async with sse(server, hogs[0]), sse(server, hogs[1]), \
                sse(server, f"?log={live}") as follower:
            assert follower.response.status == 200
        await h.engine.mark_run(running, "failed")


async def test_a_resume_from_before_rows_were_pruned_gets_reload(
    write_dag: Callable[[str, str], Path], start_engine: StartEngine
) -> None:
    write_dag("pair.py", DAGS)
    async with start_engine() as h, serve(h) as server:
        async with sse(server) as partial:
            first, _ = await h.run("pair")
            await partial.until(ended(first))
            cursor = partial.last_id
        second, _ = await h.run("pair")
        # [retention] max_runs_per_dag = 1: the first run's rows go.
        pruner = Pruner(h.store, dataclasses.replace(h.settings, retention_max_runs_per_dag=1),
                        holds=h.engine.holds, changes=h.engine.changes)
        report = await pruner.prune()
        assert report.rows["runs"] == 1
        assert [r.id for r in await h.store.list_runs("pair")] == [second]
        async with sse(server, last_id=cursor) as resumed:
            event = await resumed.next()
    assert event is not None and event.event == "reload"
    assert "pruned" in event.data["reason"]
