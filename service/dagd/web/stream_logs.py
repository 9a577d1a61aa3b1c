"""An attempt's log followed live for the stream (`?log=<attempt_id>`): its bytes as
they are written, masked like the log route, until the attempt ends.

No polling: the log's folder is watched (inotify, through watchfiles); a folder that
does not exist yet (the file is made on the first write) is waited for by watching
its nearest existing parent. Complete lines are sent; the rest waits for its newline or
the attempt's end, so a secret is never split across two messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from watchfiles import awatch

from dagd.executors.logs import mask, open_log

READ_MAX = 256 * 1024  # bytes read at a time
HOLD_MAX = 64 * 1024  # a line longer than this is sent before its newline

# text, raw offset of its first byte
Send = Callable[[int, str], Awaitable[None]]


def _read(path: str, offset: int) -> bytes:
    try:
        with open_log(path) as f:
            f.seek(offset)
            return f.read(READ_MAX)
    except OSError:  # gone, or a link put in its place (see `open_log`)
        return b""


class LogTail:
    def __init__(self, attempt_id: int, path: str, secrets: list[str], send: Send, *,
                 ended: bool) -> None:
        self.attempt_id = attempt_id
        self.path = path
        self.secrets = secrets
        self.ended = ended
        self._send = send
        self._offset = 0  # bytes read from the file
        self._held = b""  # read, not yet sent: the start of a line
        self._stop = anyio.Event()  # the attempt ended, or the stream ends

    def end(self) -> None:
        """The attempt ended: send what is left, then stop."""
        self.ended = True
        self._stop.set()

    def close(self) -> None:
        """The stream ends: stop watching (the watcher's thread sees it at once)."""
        self._stop.set()

    async def run(self) -> None:
        await self._pump()
        if not self.ended:
            await self._watch()
        if self.ended:
            await self._pump(final=True)

    async def _watch(self) -> None:
        folder = Path(self.path).parent
        while not self._stop.is_set():
            base = folder
            while not await anyio.Path(base).is_dir() and base != base.parent:
                base = base.parent
            async for _ in awatch(base, watch_filter=None, debounce=100, step=10,
                                  rust_timeout=60_000, stop_event=self._stop,
                                  recursive=False):
                if base != folder:
                    break  # something appeared on the way down: watch closer
                await self._pump()
            if base == folder:
                return  # stopped
            await self._pump()  # written between the folder's making and the watch

    async def _pump(self, *, final: bool = False) -> None:
        while True:
            data = await anyio.to_thread.run_sync(_read, self.path, self._offset)
            self._offset += len(data)
            await self._flush(data, final=final)
            if len(data) < READ_MAX:
                return

    async def _flush(self, data: bytes, *, final: bool) -> None:
        start = self._offset - len(data) - len(self._held)
        data = self._held + data
        cut = len(data) if final or len(data) > HOLD_MAX else data.rfind(b"\n") + 1
        self._held = data[cut:]
        if cut:
            text = mask(data[:cut], self.secrets).decode("utf-8", "replace")
            await self._send(start, text)
