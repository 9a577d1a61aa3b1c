"""The live stream, `GET /api/v1/stream`: every committed state change as a server-sent
event, as it is committed, and the log lines of the attempts a client follows.

Fed by the engine's changes port: each client has its own subscription, bounded, so a
client that reads too slowly is dropped by the port (never slowing the scheduler) and
told `event: reload`. Each message's `id:` is a resume cursor (see `stream_cursor`): a
client reconnecting with `Last-Event-ID` is first sent what it missed, rebuilt from the
rows, or `event: reload` when that cannot be done exactly. `: ping` comments keep an
idle connection open; at the server's shutdown every stream ends.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from aiohttp import web
from anyio.abc import TaskGroup

from dagd.changes import ATTEMPT, KINDS, RUN, TI, Change, Dropped, Subscription
from dagd.errors import InvalidInput
from dagd.web.api_secrets import secrets as log_secrets
from dagd.web.auth import still_allowed
from dagd.web.base import ENGINE, READER
from dagd.web.stream_cursor import Cursor, batches, missed, numbered, rebuild
from dagd.web.stream_logs import LogTail

log = logging.getLogger(__name__)

QUEUE_LIMIT = 2_000  # changes a client may be behind before it is dropped and reloads
REPLAY_LIMIT = 10_000  # changes a reconnecting client is sent; more: reload
KEEPALIVE = 15.0  # seconds of silence before a `: ping`
WRITE_TIMEOUT = 60.0  # a client that takes no byte for this long is disconnected
EOF_TIMEOUT = 1.0  # seconds to end the response cleanly before dropping the connection
MAX_LOGS = 8  # attempts one stream may follow
# Attempts followed at once by all streams: each watch holds a worker thread of the
# process's shared pool, which other work needs too.
MAX_TAILS = 16
SEND_BUFFER = 64 * 1024  # the socket's send buffer: a stalled client holds no more
RETRY_MS = 2_000  # how soon a browser reconnects
RECHECK = 1.0  # seconds between checks that the stream's login is still good


@dataclass
class Streams:
    """The open streams of one app, ended together at its shutdown."""

    closing: bool = False
    stops: set[anyio.Event] = field(default_factory=set)
    tails: int = 0  # attempts followed now

    def close_all(self) -> None:
        self.closing = True
        for stop in self.stops:
            stop.set()


STREAMS = web.AppKey("streams", Streams)


class _Gone(Exception):
    """The client went away, or took nothing for WRITE_TIMEOUT."""


@dataclass(frozen=True)
class Filters:
    dag: str | None
    run: int | None
    logs: tuple[int, ...]

    @classmethod
    def of(cls, request: web.Request) -> Filters:
        run = request.query.get("run")
        logs = request.query.getall("log", [])
        if len(logs) > MAX_LOGS:
            raise InvalidInput(f"log: at most {MAX_LOGS} attempts per stream", field="log")
        return cls(request.query.get("dag") or None,
                   _whole(run, "run") if run is not None else None,
                   tuple(dict.fromkeys(_whole(v, "log") for v in logs)))

    def wants(self, change: Change) -> bool:
        return ((self.dag is None or change.dag_id == self.dag)
                and (self.run is None or change.run_id == self.run))


def _whole(raw: str, name: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"{name} must be a whole number, got {raw[:40]!r}", field=name)
    return int(raw)


def data_of(change: Change) -> dict[str, Any]:
    """A change as its event's JSON object (the README's format)."""
    d = change.detail or {}
    if change.kind == RUN:
        return {"id": change.id, "dag_id": change.dag_id, "state": change.state,
                "at": change.at}
    if change.kind == TI:
        return {"id": change.id, "run_id": change.run_id, "dag_id": change.dag_id,
                "task_id": d.get("task_id"), "map_index": d.get("map_index", -1),
                "state": change.state, "try_number": d.get("try_number"), "at": change.at}
    if change.kind == ATTEMPT:
        return {"id": change.id, "run_id": change.run_id, "dag_id": change.dag_id,
                "ti_id": d.get("ti_id"), "task_id": d.get("task_id"),
                "try_number": d.get("try_number"), "state": change.state, "at": change.at}
    return {"id": change.id, "dag_id": change.dag_id, "kind": d.get("kind"),
            "source": d.get("source"), "state": change.state, "at": change.at}


def message(event: str, data: Any, cursor: Cursor | None = None) -> bytes:
    head = f"id: {cursor}\n" if cursor is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class _Client:
    """One open stream: its response, subscription, cursor and log tails."""

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 filters: Filters) -> None:
        self.request = request
        self.response = response
        self.filters = filters
        self.engine = request.app[ENGINE]
        self.sub: Subscription = self.engine.changes.subscribe(KINDS, limit=QUEUE_LIMIT)
        self.last: Cursor | None = None  # the newest cursor sent (or skipped past)
        self.overlap = 0  # changes queued during the catch-up, maybe sent by it already
        self.tails: dict[int, LogTail] = {}
        self._lock = anyio.Lock()
        self._checked = time.monotonic()  # when the login was last found still good
        self.watching = 0  # running logs this stream follows, counted in Streams.tails

    async def send(self, data: bytes) -> None:
        now = time.monotonic()
        if now - self._checked >= RECHECK:  # logged out, removed, revoked: the stream ends
            self._checked = now
            if not still_allowed(self.request):
                raise _Gone("the login this stream was opened with is no longer valid")
        async with self._lock:
            try:
                with anyio.fail_after(WRITE_TIMEOUT):
                    await self.response.write(data)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                raise _Gone(str(exc)) from None

    async def reload(self, reason: str) -> None:
        self.last = None
        await self.send(message("reload", {"reason": reason},
                                Cursor(self.engine.clock(), 0)))

    # -- catching up -----------------------------------------------------------------------
    async def catch_up(self, cursor: Cursor) -> None:
        """What a reconnecting client missed since its cursor, from the rows."""
        if cursor.at <= self.engine.changes.pruned.through:
            await self.reload("changes since then were pruned ([retention])")
            return
        reader = self.request.app[READER]
        history, tis, attempts, events, runs = await reader.changes_since(
            cursor.at, limit=REPLAY_LIMIT + 1)
        self.overlap = self.sub.pending
        if len(history) > REPLAY_LIMIT:
            await self.reload(f"more than {REPLAY_LIMIT} changes were missed")
            return
        todo = missed(cursor, rebuild(cursor.at, history, tis, attempts, events, runs))
        if len(todo) > REPLAY_LIMIT:
            await self.reload(f"more than {REPLAY_LIMIT} changes were missed")
            return
        self.last = cursor
        for numbered_cursor, change in todo:
            self.last = numbered_cursor
            if self.filters.wants(change):
                await self.send(message(change.kind, data_of(change), numbered_cursor))

    # -- live --------------------------------------------------------------------------------
    async def follow(self) -> None:
        while True:
            with anyio.move_on_after(KEEPALIVE) as idle:
                try:
                    items = await self.sub.next()
                except Dropped:
                    self.sub = self.engine.changes.subscribe(KINDS, limit=QUEUE_LIMIT)
                    await self.reload(f"fell more than {QUEUE_LIMIT} changes behind")
                    await self._recheck_tails()
                    continue
            if idle.cancelled_caught:
                await self.send(b": ping\n\n")
                continue
            for change in items:
                if change.kind == ATTEMPT and change.state != "running":
                    tail = self.tails.get(change.id)
                    if tail is not None:
                        tail.end()
            for at, batch in batches(items):
                await self._live(at, batch)

    async def _live(self, at: float, batch: list[Change]) -> None:
        overlapping = self.overlap > 0
        self.overlap = max(self.overlap - len(batch), 0)
        last = self.last
        if last is not None and at <= last.at and not overlapping:
            # Not after the last batch (the clock went back): a cursor could not resume
            # exactly past it.
            await self.reload("the changes came out of time order")
            return
        out = bytearray()
        for cursor, change in numbered(at, batch):
            if last is not None and (cursor.at, cursor.k) <= (last.at, last.k):
                continue  # sent by the catch-up already
            self.last = cursor
            if self.filters.wants(change):
                out += message(change.kind, data_of(change), cursor)
        if out:
            await self.send(bytes(out))

    # -- logs --------------------------------------------------------------------------------
    async def open_tails(self, task_group: TaskGroup) -> None:
        reader = self.request.app[READER]
        secrets = log_secrets(self.request)
        for attempt_id in self.filters.logs:
            attempt = await reader.get_attempt(attempt_id)

            async def send_log(offset: int, text: str, attempt_id: int = attempt_id) -> None:
                await self.send(message("log", {"attempt_id": attempt_id, "offset": offset,
                                                "text": text}, self.last))

            tail = LogTail(attempt_id, attempt.log_path, secrets, send_log,
                           ended=attempt.state != "running")
            self.tails[attempt_id] = tail
            task_group.start_soon(self._tail, tail, attempt.state == "running")

    async def _tail(self, tail: LogTail, counted: bool) -> None:
        """Follow one log; once it is done, its place under MAX_TAILS is free again."""
        try:
            await tail.run()
        finally:
            if counted and self.watching > 0:
                self.watching -= 1
                self.request.app[STREAMS].tails -= 1

    async def _recheck_tails(self) -> None:
        """After a drop, an attempt's end may have been lost with the queue."""
        reader = self.request.app[READER]
        for attempt_id, tail in self.tails.items():
            if not tail.ended and (await reader.get_attempt(attempt_id)).state != "running":
                tail.end()

    def close_tails(self) -> None:
        for tail in self.tails.values():
            tail.close()

    def close(self) -> None:
        self.sub.close()
        self.close_tails()


async def stream(request: web.Request) -> web.StreamResponse:
    filters = Filters.of(request)
    streams = request.app[STREAMS]
    reader = request.app[READER]
    # A 404 before the stream starts; only a running attempt's log is watched, and
    # counts against MAX_TAILS while it is (an ended one is sent, and is done).
    live = sum([(await reader.get_attempt(a)).state == "running" for a in filters.logs])
    if streams.closing:
        raise web.HTTPServiceUnavailable(text="the server is stopping")
    if live and streams.tails + live > MAX_TAILS:
        raise web.HTTPServiceUnavailable(
            text=f"{streams.tails} running logs are followed already (at most "
                 f"{MAX_TAILS}): try later")
    raw_cursor = request.headers.get("Last-Event-ID")
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    _small_send_buffer(request)
    await response.prepare(request)
    client = _Client(request, response, filters)
    stop = anyio.Event()
    streams.stops.add(stop)
    streams.tails += live
    client.watching = live
    try:
        await _serve(client, raw_cursor, stop)
    finally:
        streams.tails -= client.watching
        streams.stops.discard(stop)
        client.close()
    ended = False
    with anyio.move_on_after(EOF_TIMEOUT):
        try:
            await response.write_eof()
            ended = True
        except (ConnectionError, RuntimeError):
            pass
    if not ended and request.transport is not None:
        request.transport.abort()  # a stalled client: drop what it did not take
    return response


async def _serve(client: _Client, raw_cursor: str | None, stop: anyio.Event) -> None:
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on, stop, tg.cancel_scope)
            try:
                await _open(client, raw_cursor, tg)
                await client.follow()
            finally:
                # Before the group waits for its tails: a log watcher's thread cannot be
                # cancelled, only told to return (else it would at its 60 s timeout, and
                # hold the server's shutdown that long).
                client.close_tails()
    except* _Gone:
        pass
    except* Exception:  # the response has begun: end it, never answer twice
        log.exception("the live stream failed")


async def _open(client: _Client, raw_cursor: str | None, task_group: TaskGroup) -> None:
    await client.send(f"retry: {RETRY_MS}\n\n".encode())
    await client.open_tails(task_group)
    if raw_cursor is None:
        # The cursor of now: a client that reconnects before any change is sent what
        # it missed meanwhile.
        await client.send(f"id: {Cursor(client.engine.clock(), 0)}\n\n".encode())
        return
    cursor = Cursor.parse(raw_cursor)
    if cursor is None:
        await client.reload("Last-Event-ID is not a cursor of this stream")
        return
    await client.catch_up(cursor)


async def _stop_on(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    await stop.wait()
    scope.cancel()


def _small_send_buffer(request: web.Request) -> None:
    """A stalled client holds at most this much of the kernel's memory, and falls
    behind (and is told to reload) soon."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass


async def _on_shutdown(app: web.Application) -> None:
    app[STREAMS].close_all()


def add_routes(app: web.Application) -> None:
    app[STREAMS] = Streams()
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/api/v1/stream", stream)

