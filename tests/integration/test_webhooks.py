"""Webhooks end to end: the whole daemon (web server, engine, triggers) in this process,
real HTTP requests to 127.0.0.1, good and bad credentials, bodies and idempotency keys.

Every response is checked to be JSON and never a 500. What was started (or not) is read
back through the daemon's own API: its runs and its event ledger.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest

from dagd.config import Settings
from dagd.daemon import Daemon
from dagd.store.refusals import DETAILS
from integration.conftest import task_output_captured
from integration.harness import cli_headers, wait_until

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-for-tests"
TOKEN_ENV = "DAGD_TEST_HOOK_TOKEN"

# GitHub's published example ("Validating webhook deliveries", docs.github.com).
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# The Standard Webhooks reference library's test vector: genuinely signed, but its
# timestamp is from 2021, so today it is a replayed delivery.
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = "1614265330"
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

HOOK_DAGS = """
from dagd import DAG, Webhook, task

with DAG("bearer_dag", params={{"count": 1, "label": "none"}}, triggers=[
    Webhook("bearer-hook", secret_env={token_env!r}, max_body=2048),
]):
    @task
    async def take(conf):
        return conf.get("count")

    take()

with DAG("github_dag", triggers=[
    Webhook("github-hook", auth="github", secret_file={github_secret!r}),
]):
    @task
    async def take(conf):
        return None

    take()

with DAG("standard_dag", triggers=[
    Webhook("standard-hook", auth="standard", secret_file={standard_secret!r}),
]):
    @task
    async def take(conf):
        return None

    take()

with DAG("open_dag", triggers=[Webhook("open-hook", auth="none")]):
    @task
    async def take(conf):
        return None

    take()
"""


@dataclass
class Client:
    http: aiohttp.ClientSession
    base: str
    api_headers: dict[str, str]  # the CLI token, for /api/v1 (webhooks have their own)

    async def send(
        self, method: str, path: str, body: bytes | None = None, *,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request; its answer must be JSON and must never be a 500."""
        if path.startswith("/api/"):
            headers = {**self.api_headers, **(headers or {})}
        async with self.http.request(method, f"{self.base}{path}", data=body,
                                     headers=headers or {}) as resp:
            raw = await resp.read()
            assert resp.status != 500, raw
            assert resp.content_type == "application/json", (resp.status, raw)
            return resp.status, orjson.loads(raw)

    async def hook(
        self, name: str, body: bytes | dict[str, Any] = b"{}", *, token: str | None = TOKEN,
        content_type: str = "application/json", headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = orjson.dumps(body) if isinstance(body, dict) else body
        h = {"Content-Type": content_type, **(headers or {})}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return await self.send("POST", f"/hooks/{name}", data, headers=h)

    async def runs(self, dag_id: str) -> list[dict[str, Any]]:
        status, body = await self.send("GET", f"/api/v1/dags/{dag_id}/runs?limit=1000")
        assert status == 200, body
        return sorted(body["runs"], key=lambda r: r["id"])

    async def events(self, dag_id: str | None = None) -> list[dict[str, Any]]:
        query = f"?dag={dag_id}&limit=1000" if dag_id else "?limit=1000"
        status, body = await self.send("GET", f"/api/v1/events{query}")
        assert status == 200, body
        return sorted(body["events"], key=lambda e: e["id"])

    async def wait_run(self, run_id: int, state: str = "success") -> None:
        async def reached() -> bool:
            status, run = await self.send("GET", f"/api/v1/runs/{run_id}")
            return status == 200 and run["state"] == state

        await wait_until(reached, 10, f"run {run_id} to be {state}")


@pytest.fixture
def hook_dags(write_dag: Callable[[str, str], Path], tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    github_secret = tmp_path / "github.secret"
    github_secret.write_text(GITHUB_SECRET + "\n")  # as `echo` writes it
    standard_secret = tmp_path / "standard.secret"
    standard_secret.write_text(SW_SECRET)
    write_dag("hooks.py", HOOK_DAGS.format(token_env=TOKEN_ENV,
                                           github_secret=str(github_secret),
                                           standard_secret=str(standard_secret)))


@asynccontextmanager
async def daemon(settings: Settings) -> AsyncIterator[Client]:
    """The whole daemon on 127.0.0.1, port 0; stopped (and awaited) on exit."""
    d = Daemon(settings)
    ready = anyio.Event()
    try:
        with task_output_captured():
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: d.run(on_ready=lambda _: ready.set()))
                with anyio.fail_after(15):
                    await ready.wait()
                try:
                    async with aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=15),
                        connector=aiohttp.TCPConnector(limit=100),
                    ) as http:
                        yield Client(http, f"http://127.0.0.1:{d.port}",
                                     cli_headers(settings))
                finally:
                    d.request_stop()
    except BaseExceptionGroup as group:  # show the test's own error unwrapped
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def sign_github(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_standard(msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(SW_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


# -- bearer tokens and bad bodies ------------------------------------------------------


async def test_bearer_token_and_every_kind_of_bad_request(
    hook_dags: None, settings: Settings
) -> None:
    async with daemon(settings) as c:
        status, body = await c.hook("bearer-hook", {"count": 3}, token=None)
        assert status == 401, body
        assert "Authorization" in body["message"]
        status, body = await c.hook("bearer-hook", {"count": 3}, token="not-the-token")
        assert status == 403, body
        assert TOKEN not in body["message"] and "not-the-token" not in body["message"]
        status, body = await c.hook("bearer-hook", {"count": 3}, token=None,
                                    headers={"Authorization": f"Basic {TOKEN}"})
        assert status == 403, body

        status, body = await c.hook("bearer-hook", b'{"count": 3')
        assert (status, body["field"]) == (422, "body"), body
        assert "not valid JSON" in body["message"]
        status, body = await c.hook("bearer-hook", b"[1, 2, 3]")
        assert (status, body["field"]) == (422, "body"), body
        status, body = await c.hook("bearer-hook", b'{"count": 3}', content_type="text/plain")
        assert (status, body["field"]) == (415, "Content-Type"), body
        status, body = await c.hook("bearer-hook", orjson.dumps({"pad": "x" * 4096}))
        assert status == 413, body
        assert "2048" in body["message"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read, then refused
            yield b'{"pad": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        async with c.http.post(f"{c.base}/hooks/bearer-hook", data=chunks(), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}",
        }) as resp:
            assert resp.status == 413
            assert resp.content_type == "application/json"

        status, body = await c.hook("bearer-hook", {"count": "three"})
        assert (status, body["field"], body["dag_id"]) == (422, "count", "bearer_dag"), body
        assert "'count' must be int" in body["message"]
        status, body = await c.hook("bearer-hook", {"count": True})
        assert (status, body["field"]) == (422, "count"), body
        status, body = await c.hook("bearer-hook", {"count": 3, "label": ["a"]})
        assert (status, body["field"]) == (422, "label"), body

        status, body = await c.hook("no-such-hook", {"count": 3})
        assert status == 404, body
        assert "no-such-hook" in body["message"]

        assert await c.runs("bearer_dag") == []  # nothing refused started anything

        status, body = await c.hook("bearer-hook", {"count": 3, "label": "ok"})
        assert status == 202, body
        assert body["duplicate"] is False
        assert body["runs"] == [{"dag_id": "bearer_dag", "run_id": body["run_id"],
                                 "event_id": body["runs"][0]["event_id"],
                                 "outcome": "run_created"}]
        await c.wait_run(body["run_id"])
        [run] = await c.runs("bearer_dag")
        assert (run["id"], run["conf"], run["run_type"]) == (
            body["run_id"], {"count": 3, "label": "ok"}, "webhook")

        # Refusals are counted per minute and detail (at most DETAILS details apart).
        ledger = await c.events("bearer_dag")
        counted: Counter[str] = Counter()
        for e in ledger:
            counted[e["outcome"]] += e["count"]
        assert counted == {"unauthorized": 3, "rejected": 8, "run_created": 1}
        assert [e["outcome"] for e in ledger][-1] == "run_created"
        assert len([e for e in ledger if e["outcome"] == "unauthorized"]) == 3
        rejected = [e for e in ledger if e["outcome"] == "rejected"]
        assert DETAILS + 1 <= len(rejected) <= 8
        assert any("not valid JSON" in e["detail"] for e in rejected)
        unknown = [e for e in await c.events() if e["source"] == "webhook:no-such-hook"]
        assert [(e["dag_id"], e["outcome"]) for e in unknown] == [(None, "no_matching_dag")]


# -- signatures ------------------------------------------------------------------------


async def test_github_signatures_published_example_and_our_own(
    hook_dags: None, settings: Settings
) -> None:
    async with daemon(settings) as c:
        sig = {"X-Hub-Signature-256": GITHUB_SIGNATURE}
        # The published example authenticates; its body is not JSON, so it is refused
        # after the signature check, never as a bad signature.
        status, body = await c.hook("github-hook", GITHUB_BODY, token=None, headers=sig)
        assert (status, body["field"]) == (422, "body"), body
        status, body = await c.hook("github-hook", GITHUB_BODY, token=None, headers=sig,
                                    content_type="text/plain")
        assert status == 415, body
        tampered = GITHUB_SIGNATURE[:-1] + ("0" if GITHUB_SIGNATURE[-1] != "0" else "1")
        status, body = await c.hook("github-hook", GITHUB_BODY, token=None,
                                    headers={"X-Hub-Signature-256": tampered})
        assert status == 403, body
        status, body = await c.hook("github-hook", GITHUB_BODY, token=None)
        assert status == 401, body

        payload = orjson.dumps({"action": "opened", "number": 7})
        headers = {"X-Hub-Signature-256": sign_github(payload),
                   "X-GitHub-Event": "pull_request",
                   "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
        status, first = await c.hook("github-hook", payload, token=None, headers=headers)
        assert status == 202, first
        assert first["duplicate"] is False
        # GitHub redelivers with the same delivery id: the same run, nothing new.
        status, again = await c.hook("github-hook", payload, token=None, headers=headers)
        assert status == 202, again
        assert (again["run_id"], again["duplicate"]) == (first["run_id"], True)
        await c.wait_run(first["run_id"])
        [run] = await c.runs("github_dag")
        assert run["conf"] == {"action": "opened", "number": 7}
        outcomes = [e["outcome"] for e in await c.events("github_dag")]
        assert outcomes == ["rejected", "rejected", "unauthorized", "unauthorized",
                            "run_created", "duplicate"]  # the repeated delivery id


async def test_github_form_encoded_deliveries_run_with_the_json_of_their_payload_field(
    hook_dags: None, settings: Settings
) -> None:
    """GitHub's default content type: `payload=<url-encoded JSON>`, signed as sent."""
    async with daemon(settings) as c:
        form = urllib.parse.urlencode(
            {"payload": orjson.dumps({"action": "closed", "title": "a & b = c"}).decode()}
        ).encode()
        headers = {"X-Hub-Signature-256": sign_github(form),
                   "X-GitHub-Delivery": "0b989ba4-242f-11e5-81e1-c7b6966d2516"}
        status, body = await c.hook("github-hook", form, token=None, headers=headers,
                                    content_type="application/x-www-form-urlencoded")
        assert status == 202, body
        await c.wait_run(body["run_id"])
        [run] = await c.runs("github_dag")
        assert run["conf"] == {"action": "closed", "title": "a & b = c"}
        for bad, field in ((b"payload=%7B&payload=%7D", "payload"),
                           (b"other=1", "payload"),
                           (b"payload=%ff%fe", "body"),
                           (b"payload=%5B1%5D", "body")):  # not an object
            status, body = await c.hook(
                "github-hook", bad, token=None,
                headers={"X-Hub-Signature-256": sign_github(bad)},
                content_type="application/x-www-form-urlencoded")
            assert (status, body["field"]) == (422, field), (bad, body)
        assert len(await c.runs("github_dag")) == 1


async def test_standard_webhooks_refuse_a_replayed_timestamp(
    hook_dags: None, settings: Settings
) -> None:
    async with daemon(settings) as c:
        replayed = {"webhook-id": SW_ID, "webhook-timestamp": SW_TIMESTAMP,
                    "webhook-signature": SW_SIGNATURE}
        status, body = await c.hook("standard-hook", SW_BODY, token=None, headers=replayed)
        assert status == 403, body
        assert "tolerance" in body["message"]

        # The same message signed now is accepted, and its webhook-id is its key.
        now = str(int(time.time()))
        fresh = {"webhook-id": SW_ID, "webhook-timestamp": now,
                 "webhook-signature": sign_standard(SW_ID, now, SW_BODY)}
        status, first = await c.hook("standard-hook", SW_BODY, token=None, headers=fresh)
        assert status == 202, first
        status, again = await c.hook("standard-hook", SW_BODY, token=None, headers=fresh)
        assert (status, again["run_id"], again["duplicate"]) == (202, first["run_id"], True)
        # Re-signing the old message with a fresh timestamp needs the secret.
        forged = {**fresh, "webhook-id": "msg_other", "webhook-signature": SW_SIGNATURE}
        status, body = await c.hook("standard-hook", SW_BODY, token=None, headers=forged)
        assert status == 403, body

        assert [r["conf"] for r in await c.runs("standard_dag")] == [{"test": 2432232314}]
        events = await c.events("standard_dag")
        outcomes = [e["outcome"] for e in events]
        # the re-signed delivery repeated its webhook-id: ledgered as a duplicate
        assert outcomes == ["unauthorized", "run_created", "duplicate", "unauthorized"]
        # A refused delivery is never made a run by a replay.
        status, body = await c.send("POST", f"/api/v1/events/{events[-1]['id']}/replay")
        assert status == 409 and "a refused event is not replayed" in body["message"], body
        assert len(await c.runs("standard_dag")) == 1


# -- idempotency -----------------------------------------------------------------------


async def test_an_idempotency_key_starts_one_run_at_once_concurrently_and_after_restart(
    hook_dags: None, settings: Settings
) -> None:
    key = {"Idempotency-Key": "order-1234"}
    async with daemon(settings) as c:
        status, first = await c.hook("bearer-hook", {"count": 1}, headers=key)
        assert (status, first["duplicate"]) == (202, False), first
        status, again = await c.hook("bearer-hook", {"count": 1}, headers=key)
        assert (status, again["run_id"], again["duplicate"]) == (202, first["run_id"], True)
        status, body = await c.hook("bearer-hook", {"count": 2}, headers=key)
        assert (status, body["field"]) == (422, "Idempotency-Key"), body

        # 100 copies of one new delivery, all in flight at once.
        answers: list[tuple[int, Any]] = []

        async def post() -> None:
            answers.append(await c.hook("bearer-hook", {"count": 100},
                                        headers={"Idempotency-Key": "burst-1"}))

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(post)
        assert [s for s, _ in answers] == [202] * 100, answers
        run_ids = {b["run_id"] for _, b in answers}
        assert len(run_ids) == 1 and None not in run_ids, run_ids
        assert sum(1 for _, b in answers if not b["duplicate"]) == 1

        runs = await c.runs("bearer_dag")
        assert [r["conf"] for r in runs] == [{"count": 1}, {"count": 100}]
        for r in runs:
            await c.wait_run(r["id"])

    async with daemon(settings) as c:  # a restart: the keys are in the ledger
        status, after = await c.hook("bearer-hook", {"count": 1}, headers=key)
        assert (status, after["run_id"], after["duplicate"]) == (202, first["run_id"], True)
        status, after = await c.hook("bearer-hook", {"count": 100},
                                     headers={"Idempotency-Key": "burst-1"})
        assert (status, after["run_id"], after["duplicate"]) == (202, run_ids.pop(), True)
        assert len(await c.runs("bearer_dag")) == 2
        events = await c.events("bearer_dag")
        # Each repeat is ledgered as a duplicate pointing at the first delivery's run.
        duplicates = [e for e in events if e["outcome"] == "duplicate"]
        # A repeat, the burst's twins, two after restart: counted on a row per minute
        # and run (a few rows, not 102).
        assert sum(e["count"] for e in duplicates) == 1 + 99 + 2
        assert len(duplicates) <= 5
        assert {e["run_id"] for e in duplicates} == {first["run_id"], *{
            b["run_id"] for _, b in answers}}
        assert all(e["dedup_key"] is None for e in duplicates)
        events = [e for e in events if e["outcome"] != "duplicate"]
        assert [(e["outcome"], e["dedup_key"]) for e in events] == [
            ("run_created", "order-1234"), ("rejected", None), ("run_created", "burst-1")]
        assert "different body" in events[1]["detail"]


# -- pause -----------------------------------------------------------------------------


async def test_a_paused_dags_delivery_is_recorded_and_not_run(
    hook_dags: None, settings: Settings
) -> None:
    async with daemon(settings) as c:
        status, body = await c.send("POST", "/api/v1/dags/open_dag/pause")
        assert status == 200, body
        status, body = await c.hook("open-hook", {"n": 1}, token=None)
        assert status == 202, body
        assert body["run_id"] is None
        assert [r["outcome"] for r in body["runs"]] == ["dag_paused"]
        assert await c.runs("open_dag") == []
        [event] = await c.events("open_dag")
        assert (event["outcome"], event["run_id"], event["payload"]) == (
            "dag_paused", None, {"n": 1})

        status, body = await c.send("POST", "/api/v1/dags/open_dag/unpause")
        assert status == 200, body
        status, body = await c.hook("open-hook", {"n": 2}, token=None)
        assert status == 202, body
        await c.wait_run(body["run_id"])
        assert [r["conf"] for r in await c.runs("open_dag")] == [{"n": 2}]


async def test_the_configured_body_limit_applies_to_webhooks_without_their_own(
    hook_dags: None, settings: Settings
) -> None:
    async with daemon(replace(settings, max_body=64)) as c:
        status, body = await c.hook("open-hook", {"pad": "x" * 100}, token=None)
        assert status == 413 and body["error"] == "too_large", body
        assert "64-byte limit" in body["message"]
        status, body = await c.hook("open-hook", {"small": 1}, token=None)
        assert status == 202, body
        # A webhook's own max_body (2048 for bearer-hook) wins over the server's.
        status, body = await c.hook("bearer-hook", {"pad": "x" * 1000})
        assert status == 202, body


async def raw_post(base: str, path: str, head: bytes, body: bytes) -> tuple[int, Any]:
    """One HTTP/1.1 request written byte for byte (headers no client library would send)."""
    host, port = base.removeprefix("http://").split(":")
    stream = await anyio.connect_tcp(host, int(port))
    async with stream:
        await stream.send(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n" + head
                          + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        data = b""
        with anyio.fail_after(10):
            try:
                while True:
                    data += await stream.receive()
            except anyio.EndOfStream:
                pass
    status = int(data.split(b" ", 2)[1])
    return status, orjson.loads(data.split(b"\r\n\r\n", 1)[1])


async def test_hostile_bytes_in_headers_and_bodies_get_a_4xx_never_a_500(
    hook_dags: None, settings: Settings
) -> None:
    async with daemon(settings) as c:
        json_type = b"Content-Type: application/json\r\n"
        status, body = await raw_post(c.base, "/hooks/bearer-hook",
                                      json_type + "Authorization: Bearer tök€n\r\n".encode(),
                                      b'{"count": 1}')
        assert status == 403, body
        status, body = await raw_post(c.base, "/hooks/bearer-hook",
                                      json_type + b"Authorization: Bearer \xff\xfe\r\n",
                                      b'{"count": 1}')
        assert status == 403, body
        status, body = await raw_post(
            c.base, "/hooks/bearer-hook",
            json_type + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Encoding: gzip\r\n", b"this is not gzip at all")
        assert (status, body["field"]) == (400, "body"), body
        assert "the body cannot be read as sent" in body["message"]
        assert await c.runs("bearer_dag") == []
        # Each one ledgered: the two alike counted on one row (or two, across a minute).
        counted: Counter[str] = Counter()
        for e in await c.events("bearer_dag"):
            counted[e["outcome"]] += e["count"]
        assert counted == {"unauthorized": 2, "rejected": 1}


async def test_deliveries_to_unknown_webhooks_are_ledgered_only_as_a_name_and_a_few_a_minute(
    hook_dags: None, settings: Settings
) -> None:
    async with daemon(settings) as c:
        await _unknown_deliveries(c)


async def _unknown_deliveries(c: Client) -> None:
    before = len(await c.events())
    long_name = "spam-" + "A" * 3000
    status, body = await c.hook(long_name)
    assert status == 404 and "(3005 characters)" in body["message"]
    for i in range(70):
        status, _ = await c.hook(f"nobody-{i}")
        assert status == 404
    events = (await c.events())[before:]
    assert len(events) == 60  # a name no webhook can have is never ledgered; then 60 a minute
    assert all(len(e["source"]) < 100 for e in events)
