"""fuzz: hostile requests against the API and the webhooks, written as raw bytes over a
socket (so headers can carry bytes no HTTP client would send), seeded and reproducible.

Classes: ids past 64 bits in every path that takes an id, limits out of range or not
numbers, random bytes as bodies, bad JSON, wrong and missing content types, a
Content-Encoding the body does not decode as, Authorization headers with non-ASCII
bytes, very long paths, unknown routes and methods, malformed framing, backfills from
year 1 and other impossible ranges. One request at a time, the database's rows counted
before and after each: a violation is any 5xx, and any run or accepted event created
by a request that was refused (a refusal's own ledger row is expected: dagd records
every refusal).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson

from faults.harness import SECRET, Context, Install, Result, raw_request

DAGS = """
    from dagd import DAG, Cron, Webhook, task

    @task
    async def noop():
        return None

    with DAG("fuzzed", triggers=[Webhook("fz", secret_env="FAULTS_SECRET")],
             params={"count": 1, "name": "x"}):
        noop()

    with DAG("open", triggers=[Webhook("open", auth="none")],
             params={"count": 1, "name": "x"}):
        noop()

    # a timer that fires only on 29 February: something to backfill, never a run by itself
    with DAG("timed", triggers=[Cron("0 2 29 2 *")]):
        noop()
"""

MAX_BODY = 65536  # [server] max_body here: a body one byte over it is cheap to send
REFUSALS = ("rejected", "unauthorized", "no_matching_dag")  # ledger rows of refusals

Case = tuple[str, bytes]  # (class: what it tries, the request's bytes)


def build(method: str | bytes, target: str | bytes, *,
          headers: list[tuple[bytes | str, bytes | str]] | None = None,
          body: bytes = b"", length: bool = True, version: bytes = b"HTTP/1.1") -> bytes:
    def b(x: bytes | str) -> bytes:
        return x if isinstance(x, bytes) else x.encode("utf-8", "surrogateescape")

    lines = [b(method) + b" " + b(target) + b" " + version, b"Host: 127.0.0.1",
             b"Connection: close"]
    lines += [b(k) + b": " + b(v) for k, v in headers or []]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


JSON = ("Content-Type", "application/json")
BEARER = ("Authorization", f"Bearer {SECRET}")

BIG_IDS = ["9223372036854775807", "9223372036854775808", "18446744073709551615",
           "18446744073709551616", "-1", "-9223372036854775809", "0", "1e30", "0x10",
           "1.5", "NaN", "inf", "\uff11\uff12", "1_000", " 1", "+1", "\x00",
           "99999999999999999999999999999999999999", "9" * 400, "9" * 5000, "1" * 40,
           "1" * 41, "-0", "\u0661"]
ID_ROUTES = [("GET", "/api/v1/runs/{id}"), ("GET", "/api/v1/runs/{id}/tasks/noop/logs"),
             ("GET", "/api/v1/runs/1/tasks/noop/logs?try={id}"),
             ("POST", "/api/v1/events/{id}/replay"),
             ("GET", "/api/v1/runs/{id}/tasks/{id}/logs")]
LIMITS = ["-1", "0", "1001", "18446744073709551616", "1e3", "abc", "", "1.5", "-0",
          "+5", " 5", "9" * 100, "NaN", "0x10", "1000&limit=2000", "\x00", "1" * 41,
          "\uff15"]
LIMIT_ROUTES = ["/api/v1/runs?limit={v}", "/api/v1/dags/fuzzed/runs?limit={v}",
                "/api/v1/events?limit={v}", "/api/v1/events?dag=fuzzed&limit={v}"]
POST_ROUTES = ["/hooks/fz", "/hooks/open", "/hooks/nobody", "/api/v1/dags/fuzzed/runs",
               "/api/v1/dags/nope/runs", "/api/v1/dags/timed/backfill",
               "/api/v1/events/999999/replay", "/api/v1/dags/fuzzed/pause"]
CONTENT_TYPES: list[str | bytes | None] = [
    "application/json", "text/plain", "", None, "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/json; charset=latin-1",
    "application/vnd.x+json", "/////", b"application/json\xff", "*/*",
    "application/json, text/plain", "application/json; charset=\"", "a" * 5000]
BAD_JSON = [
    b"{", b'{"a":', b"[1,2", b"nul", b"NaN", b'{"a": NaN}', b"1e999999", b'{"a": 1e999999}',
    b"\xef\xbb\xbf{}", b'{"a": "\\ud800"}', b"[" * 100_000, b'{"a":' * 20_000,
    b"{'a': 1}", b'{"a": 1,}', b'"just a string"', b"[]", b"123", b"null", b"true",
    b'{"a": 1}{"b": 2}', b'{"count": "seven"}', b'{"count": true}', b'{"name": 5}',
    b'{"count": 1e400}', b'{"conf": 5}', b'{"conf": [1]}', b'{"conf": "x"}',
    b'{"conf": null, "x": "\\u0000"}', b'{"a": ' + b"1" * 5000 + b"}",
    b'{"a": -' + b"9" * 30 + b"}", b'{"__proto__": {"x": 1}}', b"\x00\x00\x00",
    b'{"a": "\xff\xfe"}', b'{"a":"b"}' + b" " * 70_000]
ENCODINGS = ["gzip", "deflate", "br", "gzip, deflate", "x-unknown", "GZIP", "gzip, gzip",
             "zstd", "compress", "identity, gzip", ""]
AUTHS: list[bytes] = [
    b"Bearer \xff\xfe\xfd", "Bearer \u00e9t\u00e9".encode(), SECRET.encode() + b"\xff",
    b"Bearer " + SECRET.encode() + b"\xff", b"\xff\xff", b"Basic \x80\x81",
    "Bearer \u202e".encode(), b"Bearer " + b"a" * 8000, b"Bearer \x00" + SECRET.encode(),
    b"Bearer", b"Bearer ", "Bearer \U0001f600".encode(), b"Bearer \xc0\xaf",
    b"bearer " + SECRET.encode().upper(), b"Bearer " + SECRET.encode() + b" extra"]
BACKFILLS: list[object] = [
    {"start": "0001-01-01", "end": "0001-01-02"}, {"start": "0001-01-01", "end": "9999-12-31"},
    {"start": "0000-01-01", "end": "0001-01-01"}, {"start": "-0001-01-01", "end": "2026-01-01"},
    {"start": "1970-01-01", "end": "9998-12-31"}, {"start": "2026-02-30", "end": "2026-03-01"},
    {"start": 1, "end": 2}, {"start": None, "end": None}, {}, [],
    {"start": "2026-01-01T25:00:00", "end": "2026-01-02"},
    {"start": "2026-03-01", "end": "2026-01-01"}, {"start": "x" * 60_000, "end": "y"},
    {"start": "1969-12-31", "end": "1970-01-01"}, {"start": "9999-01-01", "end": "9999-12-31"},
    {"start": "2026-01-01T00:00:00+99:00", "end": "2026-01-02"},
    {"start": "2026-01-01", "end": "2026-01-02", "extra": [1] * 1000},
    {"start": "0001-01-01T00:00:00Z", "end": "0001-01-01T00:00:01Z"},
    {"start": "1e9", "end": "2e9"}, {"start": True, "end": False}]


ANY: Any = object()  # "choose one at random" (a listed value may be None: no header)


def _pick(rng: random.Random, value: Any, values: list[Any]) -> Any:
    return rng.choice(values) if value is ANY else value


def _id_case(rng: random.Random, value: Any = ANY) -> Case:
    method, route = rng.choice(ID_ROUTES)
    value = _pick(rng, value, BIG_IDS)
    return "id past 64 bits", build(method, route.replace("{id}", quote(value, safe="")))


def _limit_case(rng: random.Random, value: Any = ANY) -> Case:
    route = rng.choice(LIMIT_ROUTES)
    value = _pick(rng, value, LIMITS)
    v = value if "&" in value else quote(value, safe="")
    return "limit out of range", build("GET", route.replace("{v}", v))


def _random_body(rng: random.Random) -> Case:
    size = rng.choice([0, 1, 7, 100, 1000, 4096, MAX_BODY + 1])
    headers: list[tuple[bytes | str, bytes | str]] = [BEARER] if rng.random() < 0.7 else []
    ctype = rng.choice(CONTENT_TYPES)
    if ctype is not None:
        headers.append(("Content-Type", ctype))
    return "random bytes body", build("POST", rng.choice(POST_ROUTES), headers=headers,
                                      body=rng.randbytes(size))


def _bad_json(rng: random.Random, value: Any = ANY) -> Case:
    return "bad JSON", build("POST", rng.choice(POST_ROUTES), headers=[BEARER, JSON],
                             body=_pick(rng, value, BAD_JSON))


def _content_type(rng: random.Random, value: Any = ANY) -> Case:
    headers: list[tuple[bytes | str, bytes | str]] = [BEARER]
    ctype = _pick(rng, value, CONTENT_TYPES)
    if ctype is not None:
        headers.append(("Content-Type", ctype))
    body = rng.choice([b'{"a": 1}', b"payload=%7B%22a%22%3A1%7D", b"payload=%7B", b"a=1&b=2",
                       b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--"])
    route = rng.choice(["/hooks/fz", "/hooks/open", "/api/v1/dags/timed/backfill"])
    return "wrong content type", build("POST", route, headers=headers, body=body)


def _encoding(rng: random.Random, value: Any = ANY) -> Case:
    headers: list[tuple[bytes | str, bytes | str]] = [
        BEARER, JSON, ("Content-Encoding", _pick(rng, value, ENCODINGS))]
    body = rng.choice([rng.randbytes(rng.randint(1, 2000)), b"\x1f\x8b\x08\x00garbage",
                       b"\x1f\x8b" + rng.randbytes(64), b"x\x9c" + rng.randbytes(32)])
    return "Content-Encoding garbage", build("POST", rng.choice(POST_ROUTES[:6]),
                                             headers=headers, body=body)


def _auth(rng: random.Random, value: Any = ANY) -> Case:
    key = rng.choice(["Authorization", "authorization", "X-Hub-Signature-256",
                      "webhook-signature", "Idempotency-Key"])
    if value is not ANY:
        key = "Authorization"
    value = _pick(rng, value, AUTHS)
    headers: list[tuple[bytes | str, bytes | str]] = [JSON, (key, value)]
    if key == "Idempotency-Key":
        headers.append(("Authorization", b"Bearer \xff" + rng.randbytes(4).replace(b"\n", b"")))
    return "non-ASCII Authorization", build("POST", rng.choice(["/hooks/fz", "/hooks/nobody"]),
                                            headers=headers, body=b'{"a": 1}')


def _long_path(rng: random.Random) -> Case:
    n = rng.choice([255, 1000, 4000, 8000, 8200, 20_000, 100_000])
    target = rng.choice([
        "/api/v1/dags/" + "a" * n, "/hooks/" + "x" * n, "/api/v1/runs/" + "1" * n,
        "/" + "%2e%2e/" * (n // 6), "/api/v1/runs?limit=1&" + "q=1&" * (n // 4),
        "/api/v1/dags/" + quote("\u00e9" * (n // 6)), "/api/v1/runs/1/tasks/" + "a" * n +
        "/logs", "/api/v1/dags/fuzzed/runs?limit=" + "9" * n])
    method = "POST" if target.startswith("/hooks/") else "GET"
    return "very long path", build(method, target, headers=[BEARER, JSON], body=b"{}")


def _unknown(rng: random.Random) -> Case:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.~%"
    segments = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
                for _ in range(rng.randint(1, 6))]
    path = rng.choice(["/", "/api/", "/api/v1/", "/api/v2/", "/hooks/"]) + "/".join(segments)
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                         "CONNECT", "FOO", "G\xc9T", "get"])
    target = rng.choice([path, "/api/v1/dags", "/api/v1/health", "/hooks/fz", "*",
                         "http://example.com/api/v1/dags", "/api/v1/dags/%ff%fe",
                         "/api/v1/dags/%zz", "//api//v1//dags", "/api/v1/dags/..%2f..%2fetc",
                         "/api/v1/runs/1/tasks/..%2f..%2f..%2fetc%2fpasswd/logs",
                         "/api/v1/dags/%00", "/api/v1/dags/a b", "/api/v1/dags/\xe9"])
    return "unknown route or method", build(method, target)


def _framing(rng: random.Random) -> Case:
    choice = rng.randrange(9)
    body = b'{"a": 1}'
    heads: list[tuple[bytes | str, bytes | str]] = [BEARER, JSON]
    if choice == 0:
        heads.append(("Transfer-Encoding", "chunked"))
        return "bad framing", build("POST", "/hooks/open", headers=heads,
                                    body=b"zz\r\nabc\r\n0\r\n\r\n", length=False)
    if choice == 1:
        heads.append(("Transfer-Encoding", "chunked"))
        return "bad framing", build("POST", "/hooks/open", headers=heads, body=b"8\r\n" + body)
    if choice == 2:
        heads.append(("Content-Length", "-1"))
        return "bad framing", build("POST", "/hooks/open", headers=heads, body=body,
                                    length=False)
    if choice == 3:
        heads += [("Content-Length", "8"), ("Content-Length", "9")]
        return "bad framing", build("POST", "/hooks/open", headers=heads, body=body,
                                    length=False)
    if choice == 4:
        heads.append(("Content-Length", "abc"))
        return "bad framing", build("POST", "/hooks/fz", headers=heads, body=body,
                                    length=False)
    if choice == 5:
        heads += [(f"X-H{i}", "v" * 50) for i in range(rng.choice([100, 500, 2000]))]
        return "bad framing", build("POST", "/hooks/fz", headers=heads, body=body)
    if choice == 6:
        heads.append(("X-Long", "v" * rng.choice([8000, 9000, 70_000])))
        return "bad framing", build("POST", "/hooks/fz", headers=heads, body=body)
    if choice == 7:
        version = rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1.1x", b"", b"FOO"])
        return "bad framing", build("GET", "/api/v1/dags", version=version)
    return "bad framing", rng.randbytes(rng.randint(1, 3000))


def _backfill(rng: random.Random, value: Any = ANY) -> Case:
    dag = "timed" if value is not ANY else rng.choice(["timed", "timed", "fuzzed", "nope", "%ff"])
    return "backfill from year 1 and other ranges", build(
        "POST", f"/api/v1/dags/{dag}/backfill", headers=[JSON],
        body=orjson.dumps(_pick(rng, value, BACKFILLS)))


def _webhook_body(rng: random.Random) -> Case:
    body = rng.choice([b'{"count": "x"}', b'{"count": []}', b'{"name": {}}', b"[]", b"1",
                       b'{"count": 1.5}', b'"x"', b"payload=1", b'{"a":' * 30 + b"1" +
                       b"}" * 30])
    ctype = rng.choice(["application/json", "application/x-www-form-urlencoded"])
    return "webhook body refused", build("POST", rng.choice(["/hooks/open", "/hooks/fz"]),
                                         headers=[BEARER, ("Content-Type", ctype)], body=body)


GENERATORS: list[Callable[[random.Random], Case]] = [
    _id_case, _limit_case, _random_body, _bad_json, _content_type, _encoding, _auth,
    _long_path, _unknown, _framing, _backfill, _webhook_body]
# Each value of these lists is sent once before the random requests begin.
LISTED: list[tuple[Callable[[random.Random, Any], Case], list[Any]]] = [
    (_id_case, BIG_IDS), (_limit_case, LIMITS), (_bad_json, BAD_JSON),
    (_content_type, CONTENT_TYPES), (_encoding, ENCODINGS), (_auth, AUTHS),
    (_backfill, BACKFILLS)]


def cases(seed: int, n: int) -> list[Case]:
    """`n` requests (at least): every listed value once, each class a few times, then
    classes at random; the same requests for the same seed."""
    rng = random.Random(seed)
    out = [gen(rng, value) for gen, values in LISTED for value in values]
    out += [GENERATORS[i % len(GENERATORS)](rng) for i in range(len(GENERATORS) * 3)]
    out += [rng.choice(GENERATORS)(rng) for _ in range(max(0, n - len(out)))]
    return out


def describe(data: bytes) -> str:
    """A request in one line: its request line, a header that matters, its body's start."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    shown = lines[0][:120]
    for line in lines[1:]:
        if line.lower().startswith((b"content-type", b"content-encoding", b"authorization",
                                    b"transfer-encoding")):
            shown += b" [" + line[:60] + b"]"
    if body:
        shown += b" " + body[:100] + (b"..." if len(body) > 100 else b"")
    return repr(shown)[2:-1]


def signed(data: bytes, auth: str) -> bytes:
    """An API request with the CLI token (the daemon's login is on), so that it reaches
    the handlers; one that carries its own Authorization header is sent as it is."""
    head, sep, rest = data.partition(b"\r\n")
    target = head.split(b" ")[1] if head.count(b" ") >= 2 else b""
    if not auth or not target.startswith(b"/api/") or b"\r\nauthorization:" in data.lower():
        return data
    return head + sep + b"Authorization: " + auth.encode() + b"\r\n" + rest


def counts(inst: Install) -> tuple[int, int, int]:
    """(runs, accepted events, refusals in the ledger). Refusals are counted on a row per
    minute and detail: their rows are not accepted events, their counts the refusals."""
    runs = inst.scalar("SELECT count(*) FROM run") or 0
    marks = ", ".join("?" * len(REFUSALS))
    refusal_rows = inst.scalar(f"SELECT count(*) FROM event WHERE outcome IN ({marks})",
                               REFUSALS) or 0
    refused = inst.scalar(f"SELECT coalesce(sum(count), 0) FROM event WHERE outcome IN "
                          f"({marks})", REFUSALS) or 0
    events = inst.scalar("SELECT count(*) FROM event") or 0
    return runs, events - refusal_rows, refused


def counts_rows(inst: Install) -> int:
    marks = ", ".join("?" * len(REFUSALS))
    return inst.scalar(f"SELECT count(*) FROM event WHERE outcome IN ({marks})",
                       REFUSALS) or 0


def run(ctx: Context) -> Result:
    result = Result()
    f = result.figures
    n = ctx.size(2000, 200)
    inst = ctx.install("fuzz")
    inst.write_config(f"[server]\nmax_body = {MAX_BODY}\n", log_level="WARNING")
    inst.write_dag("fuzz.py", DAGS)
    daemon = inst.start()
    first = daemon.post("/api/v1/dags/fuzzed/runs", {"conf": {}})  # run 1, for the log routes
    result.check(first.status == 201, f"a valid trigger got {first.status}")
    statuses: Counter[str] = Counter()
    by_class: Counter[str] = Counter()
    silent: Counter[str] = Counter()
    created = {"runs": 0, "events": 0, "refusals": 0, "accepted runs": 0}
    found: Counter[str] = Counter()  # violations, the same one counted once with its count
    auth = daemon.api_auth().get("Authorization", "")
    for label, case in cases(ctx.seed, n):
        data = signed(case, auth)
        by_class[label] += 1
        before = counts(inst)
        status = raw_request(daemon.port, data, timeout=10)
        after = counts(inst)
        statuses[str(status) if status is not None else "no answer"] += 1
        d_runs, d_events, d_refusals = (a - b for a, b in zip(after, before, strict=True))
        created["refusals"] += d_refusals
        if status is None:
            silent[label] += 1
        if status is not None and status >= 500:
            found[f"{status} for {label}: {describe(data)}"] += 1
        if status is not None and status < 400:
            created["accepted runs"] += d_runs
        elif d_runs or d_events:
            created["runs"] += d_runs
            created["events"] += d_events
            found[f"a refused request ({status}, {label}) created {d_runs} run(s), "
                  f"{d_events} event(s): {describe(data)}"] += 1
        if not daemon.alive():
            found[f"the daemon died after {label}: {describe(data)}"] += 1
            break
    result.violations += [f"{v} (x{n})" if n > 1 else v for v, n in found.items()]
    f["requests"] = sum(by_class.values())
    f["classes"] = dict(by_class)
    f["answers"] = dict(sorted(statuses.items()))
    f["5xx"] = sum(v for k, v in statuses.items() if k.isdigit() and int(k) >= 500)
    f["closed without an answer"] = dict(silent) or 0
    f["runs created by refused requests"] = created["runs"]
    f["events created by refused requests"] = created["events"]
    f["refusals ledgered (expected)"] = created["refusals"]
    f["ledger rows of refusals"] = counts_rows(inst)
    f["runs created by accepted requests"] = created["accepted runs"]
    health = daemon.health()
    f["health at the end"] = health.status if health is not None else "no answer"
    result.check(daemon.alive() and health is not None and health.status == 200,
                 "the daemon is not healthy after the fuzzing")
    daemon.stop()
    return result
