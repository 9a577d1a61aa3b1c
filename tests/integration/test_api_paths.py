"""A run id, task id, try number or DAG id can never name a file: `../../etc/passwd` and
its encoded forms, in each place of each route that serves a file's text (an attempt's
log, a DAG's source, XCom), get a JSON 404 or 422, never a file. One test per form,
each trying every place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from yarl import URL

from integration.harness import StartEngine
from integration.test_api import DAGS, api

pytestmark = pytest.mark.anyio

# Each form of "two folders up, then etc/passwd", as it appears in a URL.
FORMS = {
    "plain": "../../etc/passwd",
    "encoded": "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "encoded_upper": "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "encoded_slashes": "..%2f..%2fetc%2fpasswd",
    "double_encoded": "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "backslashes": "..%5c..%5cetc%5cpasswd",
    "absolute": "%2fetc%2fpasswd",
    "nul_byte": "..%2f..%2fetc%2fpasswd%00.log",
    "overlong_utf8": "%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
}

# Where a form goes: the route's URL with {x} for it, {run} for a real run's id.
PLACES = {
    "task_id": "/api/v1/runs/{run}/tasks/{x}/logs",
    "run_id": "/api/v1/runs/{x}/tasks/wobble/logs",
    "try": "/api/v1/runs/{run}/tasks/wobble/logs?try={x}",
    "map_index": "/api/v1/runs/{run}/tasks/wobble/logs?map_index={x}",
    "offset": "/api/v1/runs/{run}/tasks/wobble/logs?offset={x}",
    "dag_id": "/api/v1/dags/{x}/source",
    "xcom_task_id": "/api/v1/runs/{run}/tasks/{x}/xcom",
}


@pytest.mark.parametrize("form", FORMS.values(), ids=list(FORMS))
async def test_a_traversal_form_never_reads_a_file(
    form: str, write_dag: Callable[[str, str], Path], start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_TEST_HOOK_TOKEN", "unused-here")
    write_dag("api_dags.py", DAGS)
    answers = {}
    async with start_engine() as h, api(h) as (http, base):
        run_id, _ = await h.run("flaky")
        origin = base.removesuffix("/api/v1")
        async with http.get(f"{origin}/api/v1/runs/{run_id}/tasks/wobble/logs") as resp:
            assert resp.status == 200  # the route itself serves the real log
        for name, place in PLACES.items():
            # encoded=True: the bytes go out as written, not normalised by the client.
            url = URL(origin + place.format(run=run_id, x=form), encoded=True)
            async with http.get(url, allow_redirects=False) as resp:
                answers[name] = resp.status, resp.content_type, await resp.read()
    for name, (status, kind, body) in answers.items():
        assert status in (404, 422), (name, status, body[:200])
        assert kind == "application/json", name
        assert b"root:" not in body, name
