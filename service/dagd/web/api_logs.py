"""An attempt's log over the REST API, from a byte offset, for tailing.

The file read is only ever the one the attempt's row names: the run id and try number
are numbers, the task id is looked up, and none of them is joined into a path. What
is served is masked (configured secrets as `***`); `X-Dagd-Log-Offset` is where the
next read starts and `X-Dagd-Log-Complete: true` says the attempt has ended, so that
offset is the end of its log.
"""

from __future__ import annotations

import anyio
from aiohttp import web

from dagd.errors import NotFound
from dagd.executors.logs import mask, open_log
from dagd.store.rows import AttemptRow
from dagd.web.api_input import MAX_ID, int_param
from dagd.web.api_runs import task_instance
from dagd.web.api_secrets import secrets
from dagd.web.base import READER

MAX_CHUNK = 1024 * 1024  # bytes served per request, at most; the client reads on


def _read(path: str, offset: int, running: bool) -> tuple[bytes, int, bool]:
    """(bytes to serve, the next offset, whether that is the file's end). The read
    starts at the line that `offset` falls in (a secret cut at an arbitrary offset would
    escape the mask) and, while the attempt runs, ends at the last full line (a secret
    half written would too)."""
    try:
        with open_log(path) as file:
            start = offset
            if offset > 0:
                back = max(offset - MAX_CHUNK, 0)
                file.seek(back)
                before = file.read(offset - back)
                if len(before) < offset - back:  # past the end: nothing there yet
                    return b"", offset, True
                start = back + before.rfind(b"\n") + 1 if b"\n" in before else back
            file.seek(start)
            data = file.read(MAX_CHUNK + (offset - start))
            at_end = not file.read(1)
    except FileNotFoundError:  # the attempt has written nothing yet
        return b"", offset, True
    except OSError:  # a link in its place (see `open_log`): nothing is served
        return b"", offset, True
    if running and at_end and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    return data, max(start + len(data), offset), at_end


async def get_log(request: web.Request) -> web.Response:
    """The log of try `try` (the latest by default) from byte `offset`, as text."""
    reader = request.app[READER]
    ti = await task_instance(request)
    attempts = await reader.list_attempts(ti.id)
    if not attempts:
        raise await reader.not_run_yet(ti)
    wanted = int_param(request, "try", attempts[-1].try_number, low=1)
    offset = int_param(request, "offset", 0, low=0, high=MAX_ID)
    attempt: AttemptRow | None = next((a for a in attempts if a.try_number == wanted), None)
    if attempt is None:
        raise NotFound(f"no try {wanted}", task_id=ti.task_id)
    running = attempt.ended_at is None
    data, after, at_end = await anyio.to_thread.run_sync(_read, attempt.log_path, offset,
                                                         running)
    response = web.Response(body=mask(data, secrets(request)), content_type="text/plain",
                            charset="utf-8")
    response.headers["X-Dagd-Log-Offset"] = str(after)
    response.headers["X-Dagd-Attempt-Id"] = str(attempt.id)
    response.headers["X-Dagd-Try-Number"] = str(attempt.try_number)
    if not running and at_end:
        response.headers["X-Dagd-Log-Complete"] = "true"
    return response
