"""HttpTask: one HTTP request with aiohttp; its response goes to XCom.

The url, headers, params, json and data are templates rendered when the attempt starts.
A value rendered into the url's path or query is percent-encoded (`dagd.templating.
render_url`), so it stays one segment or one query value; a header value that holds a
line break is refused. A named connection (`conn="api"`, `[connections.api]` in the
config) gives a base URL, headers and credentials whose secrets come from the daemon's
environment when the task runs; a connection's headers and credentials are only ever
sent to its base URL's origin.

Redirects are followed here, hop by hop (at most `MAX_REDIRECTS`), not by aiohttp: a
redirect to another origin is refused, or with `follow_cross_origin_redirects=True`
followed without the credentials (the connection's headers, and the task's own
Authorization, Proxy-Authorization and Cookie), which then stay off for the rest of the
chain.

The XCom is `{"status": 200, "headers": {...}, "body": ...}`: `body` is the decoded JSON
when the response says it is JSON, else the text (None when empty); `headers` keeps
content-type, etag, last-modified and location. Reading more than `max_response_bytes`
fails the attempt. An unexpected status raises `HttpStatusError`; on a 429 or 503 with
`Retry-After`, the error carries `retry_after` seconds for the scheduler.
"""

from __future__ import annotations

import base64
import email.utils
import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anyio
import orjson
from multidict import CIMultiDict
from yarl import URL

from dagd.authoring.context import Context
from dagd.authoring.tasks import BaseTask
from dagd.errors import ConfigError, DagDefinitionError
from dagd.executors.logs import AttemptLog, current_log
from dagd.kinds.connections import ConnectionNotFound, get_connection, set_connections
from dagd.templating import TemplateRenderError, render, render_url

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
KEPT_HEADERS = ("content-type", "etag", "last-modified", "location")
RETRY_AFTER_STATUSES = frozenset({429, 503})
EXCERPT_BYTES = 1000  # of an unexpected response's body, shown in the error
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# The task's own headers that are credentials: not sent to another origin either.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

# The daemon hands the config's connections over with `set_connections`; one registry
# (dagd.kinds.connections) serves every kind, re-exported here for HttpTask's users.
__all__ = [
    "HttpRedirectRefused",
    "HttpResponseCheckFailed",
    "HttpResponseTooLarge",
    "HttpStatusError",
    "HttpTask",
    "HttpTaskError",
    "HttpTimeout",
    "parse_retry_after",
    "set_connections",
]


class HttpTaskError(Exception):
    """The request was made but its response is not what the task asked for."""


class HttpStatusError(HttpTaskError):
    """The response's status is not an expected one; `retry_after` is the seconds a 429
    or 503 asked to wait (None if it did not say)."""

    def __init__(
        self, status: int, excerpt: str, *, method: str = "", url: str = "", reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, excerpt)
        self.status = status
        self.excerpt = excerpt
        self.method = method
        self.url = url
        self.reason = reason
        self.retry_after = retry_after

    def __str__(self) -> str:
        message = f"{self.method} {self.url} returned HTTP {self.status}"
        if self.reason:
            message += f" {self.reason}"
        if self.retry_after is not None:
            message += f" (Retry-After: {self.retry_after:g}s)"
        return message + (f": {self.excerpt}" if self.excerpt else "")


class HttpResponseTooLarge(HttpTaskError):
    """The response body is over `max_response_bytes`."""


class HttpResponseCheckFailed(HttpTaskError):
    """`response_check` returned a false value."""


class HttpTimeout(HttpTaskError, TimeoutError):
    """No complete response within the task's `timeout`."""


class HttpRedirectRefused(HttpTaskError):
    """A redirect to another origin (not followed unless the task says so), one that is
    not http(s), or more than MAX_REDIRECTS of them."""


class HttpTask(BaseTask):
    """Send one HTTP request; fail unless the response has an expected status (2xx by
    default) and passes `response_check`."""

    kind = "http"

    def __init__(
        self,
        *,
        task_id: str,
        url: str,
        method: str = "GET",
        conn: str | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: str | bytes | Mapping[str, str] | None = None,
        params: Mapping[str, str | int | float] | None = None,
        expected_status: int | Iterable[int] | None = None,
        response_check: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float = 30.0,
        max_response_bytes: int = 1_000_000,
        follow_cross_origin_redirects: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id=task_id, **kwargs)
        self._where: dict[str, Any] = {"dag_id": self.dag.dag_id, "task_id": self.task_id,
                                       "file": self.fileloc, "line": self.lineno}
        self._require(isinstance(url, str) and bool(url.strip()), "url",
                      f"url must be a non-empty string, got {url!r}")
        verb = method.upper() if isinstance(method, str) else method
        self._require(verb in METHODS, "method",
                      f"method must be one of {', '.join(sorted(METHODS))}, got {method!r}")
        self._require(conn is None or (isinstance(conn, str) and bool(conn)), "conn",
                      f"conn must be a connection's name, got {conn!r}")
        self._require(headers is None or _str_mapping(headers), "headers",
                      f"headers must map header names to strings, got {headers!r}")
        self._require(json is None or data is None, "data", "give json or data, not both")
        self._require(
            data is None or isinstance(data, str | bytes) or _str_mapping(data), "data",
            f"data must be a string, bytes or a mapping of form fields, got {data!r}")
        self._require(
            params is None or (isinstance(params, Mapping) and all(
                isinstance(k, str) and isinstance(v, str | int | float)
                and not isinstance(v, bool) for k, v in params.items())),
            "params", f"params must map names to strings or numbers, got {params!r}")
        self._require(response_check is None or callable(response_check), "response_check",
                      f"response_check must be callable, got {response_check!r}")
        self._require(
            not isinstance(timeout, bool) and isinstance(timeout, int | float) and timeout > 0,
            "timeout", f"timeout must be a positive number of seconds, got {timeout!r}")
        self._require(
            not isinstance(max_response_bytes, bool) and isinstance(max_response_bytes, int)
            and max_response_bytes > 0, "max_response_bytes",
            f"max_response_bytes must be a positive whole number, got {max_response_bytes!r}")
        self._require(isinstance(follow_cross_origin_redirects, bool),
                      "follow_cross_origin_redirects",
                      "follow_cross_origin_redirects must be True or False, got "
                      f"{follow_cross_origin_redirects!r}")
        # A password in the URL would be stored with the DAG, shown by the API and logged.
        self._require(not _has_password(url), "url",
                      "the url holds a password: name a connection instead (conn=..., with "
                      "[connections.NAME] username and password_env)")
        self.url = url
        self.method: str = verb
        self.conn = conn
        self.headers: dict[str, str] = dict(headers or {})
        self.json = json
        self.data = dict(data) if isinstance(data, Mapping) else data
        self.params = dict(params) if params is not None else None
        self.expected_status = self._statuses(expected_status)
        self.response_check = response_check
        self.timeout = float(timeout)
        self.max_response_bytes = max_response_bytes
        self.follow_cross_origin_redirects = follow_cross_origin_redirects

    def _require(self, ok: bool, field: str, message: str) -> None:
        if not ok:
            raise DagDefinitionError(message, field=field, **self._where)

    def _statuses(self, value: int | Iterable[int] | None) -> range | frozenset[int]:
        if value is None:
            return range(200, 300)
        if isinstance(value, range):
            codes: Iterable[Any] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            codes = [value]
        elif isinstance(value, list | tuple | set | frozenset):
            codes = value
        else:
            codes = [value]
        ok = all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599
                 for c in codes)
        self._require(ok and bool(codes), "expected_status",
                      f"expected_status must be a status code or a list of them, got {value!r}")
        return value if isinstance(value, range) else frozenset(codes)

    # -- running ----------------------------------------------------------------------
    def request(self, context: Context) -> dict[str, Any]:
        """Method, URL, headers and body of this attempt's request, templates rendered."""
        connection: Mapping[str, Any] = {}
        if self.conn is not None:
            try:
                connection = get_connection(self.conn)
            except ConnectionNotFound as exc:
                raise ConnectionNotFound(exc.message, dag_id=self.dag.dag_id,
                                         task_id=self.task_id, field="conn") from None
        url = self._url(render_url(self.url, context, field="url"), connection)
        credentials = self._connection_headers(connection)
        own: dict[str, str] = render(self.headers, context, field="headers")
        for name, value in own.items():
            if any(c in value for c in "\r\n\0"):
                raise TemplateRenderError(
                    "a header value must be one line: the rendered value holds a line break "
                    "(CR or LF) or NUL, so nothing was sent", dag_id=self.dag.dag_id,
                    task_id=self.task_id, field=f"headers.{name}")
        headers: CIMultiDict[str] = CIMultiDict()
        headers.update(credentials)
        headers.update(own)
        # What stays with the origin: the connection's headers, the task's credentials.
        private = {n.lower() for n in credentials} | {
            n.lower() for n in own if n.lower() in CREDENTIAL_HEADERS}
        base = connection.get("base_url")
        return {
            "method": self.method,
            "url": url,
            "headers": headers,
            "private": private,
            "origin": _origin(URL(base) if base is not None else url),
            "params": render(self.params, context, field="params"),
            "json": render(self.json, context, field="json"),
            "data": render(self.data, context, field="data"),
        }

    def _url(self, rendered: str, connection: Mapping[str, Any]) -> URL:
        """`rendered` is percent-encoded URL text (render_url): taken as it is."""
        base = connection.get("base_url")
        url = URL(rendered, encoded=True)
        if not url.is_absolute():
            if base is None:
                raise ValueError(f"url {rendered!r} is not absolute: give an http(s) URL, "
                                 "or conn= a connection with a base_url")
            url = URL(f"{str(URL(base)).rstrip('/')}/{rendered.lstrip('/')}", encoded=True)
        if url.scheme not in ("http", "https"):
            raise ValueError(f"url {rendered!r} must be an http:// or https:// URL")
        if base is not None and _origin(url) != _origin(URL(base)):
            # A templated url (from a webhook's conf, say) must not carry the
            # connection's credentials to another host.
            raise ValueError(f"url {str(url)!r} is outside connection {self.conn!r} "
                             f"({base}): its headers and credentials go only there")
        return url

    def _connection_headers(self, connection: Mapping[str, Any]) -> dict[str, str]:
        headers = dict(connection.get("headers") or {})
        for name, var in (connection.get("headers_env") or {}).items():
            headers[name] = self._secret(var, "headers_env")
        if "token_env" in connection:
            token = self._secret(connection["token_env"], "token_env")
            headers["Authorization"] = f"Bearer {token}"
        if "username" in connection:
            password = self._secret(connection["password_env"], "password_env")
            pair = f"{connection['username']}:{password}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        return headers

    def _secret(self, var: str, key: str) -> str:
        value = os.environ.get(var)
        if not value:
            raise ConfigError(
                f"connection {self.conn!r}: environment variable {var} ({key}) is not set "
                "in the daemon's environment", dag_id=self.dag.dag_id, task_id=self.task_id,
                field="conn")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(
                f"connection {self.conn!r}: environment variable {var} ({key}) holds a line "
                "break or NUL: a header is one line", dag_id=self.dag.dag_id,
                task_id=self.task_id, field="conn")
        return value

    async def execute(self, context: Context) -> dict[str, Any]:
        req = self.request(context)
        shown = f"{req['method']} {_shown(req['url'])}"  # a query may hold a key: not shown
        attempt_log = current_log()
        started = anyio.current_time()
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            json_serialize=lambda value: orjson.dumps(value).decode(),
        )
        try:
            with anyio.fail_after(self.timeout):  # every hop of a redirect chain together
                async with session:
                    method, url, info = await self._follow(session, req, attempt_log)
        except TimeoutError:
            raise HttpTimeout(f"{shown}: no complete response within {self.timeout:g}s") from None
        if attempt_log is not None:
            attempt_log.write(f"[dagd] {method} {_shown(url)} -> {info['status']} "
                              f"({anyio.current_time() - started:.2f}s)\n")
        if self.response_check is not None:
            verdict = self.response_check(info)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                name = getattr(self.response_check, "__name__", repr(self.response_check))
                raise HttpResponseCheckFailed(
                    f"response_check {name} returned {verdict!r} for HTTP {info['status']}")
        return info

    async def _follow(self, session: aiohttp.ClientSession, req: dict[str, Any],
                      attempt_log: AttemptLog | None) -> tuple[str, URL, dict[str, Any]]:
        """Send the request and follow its redirects: the last method, URL and response."""
        method: str = req["method"]
        url: URL = req["url"]
        headers: CIMultiDict[str] = req["headers"]
        body = {"params": req["params"], "json": req["json"], "data": req["data"]}
        for _ in range(MAX_REDIRECTS + 1):
            async with session.request(method, url, headers=headers, allow_redirects=False,
                                       **body) as response:
                location = response.headers.get("Location")
                if response.status not in REDIRECT_STATUSES or location is None:
                    return method, url, await self._response(response, _shown(url))
                status = response.status
            target = self._redirect_target(method, url, status, location)
            if attempt_log is not None:
                attempt_log.write(f"[dagd] {method} {_shown(url)} -> {status}, to "
                                  f"{_shown(target)}\n")
            if _origin(target) != req["origin"] and req["private"]:
                headers = CIMultiDict((k, v) for k, v in headers.items()
                                      if k.lower() not in req["private"])
                req = {**req, "private": set()}  # gone for the rest of the chain
            body["params"] = None  # the Location carries its own query
            if status == 303 or (status in (301, 302) and method == "POST"):
                if method != "HEAD":
                    method = "GET"
                body["json"] = body["data"] = None
            url = target
        raise HttpRedirectRefused(f"{req['method']} {_shown(req['url'])}: more than "
                                  f"{MAX_REDIRECTS} redirects (the last to {_shown(url)})")

    def _redirect_target(self, method: str, url: URL, status: int, location: str) -> URL:
        """Where a redirect points, if it may be followed."""
        try:
            target = url.join(URL(location))
        except ValueError:
            raise HttpRedirectRefused(f"{method} {_shown(url)} returned HTTP {status} with a "
                                      f"Location that is not a URL: {location[:200]!r}") from None
        if target.scheme not in ("http", "https"):
            raise HttpRedirectRefused(f"{method} {_shown(url)} redirected ({status}) to "
                                      f"{target.scheme}:, not http(s): not followed")
        cross = _origin(target) != _origin(url)
        if cross and not self.follow_cross_origin_redirects:
            raise HttpRedirectRefused(
                f"{method} {_shown(url)} redirected ({status}) to another origin, "
                f"{_origin_text(target)}: not followed, so no credentials go there "
                "(follow_cross_origin_redirects=True follows it, without them)")
        return target

    async def _response(self, response: aiohttp.ClientResponse, url: str) -> dict[str, Any]:
        if response.status not in self.expected_status:
            raw = await response.content.read(EXCERPT_BYTES)
            retry_after = None
            if response.status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise HttpStatusError(
                response.status, raw.decode("utf-8", "replace").strip(), method=self.method,
                url=url, reason=response.reason or "",
                retry_after=retry_after)
        raw = await read_capped(response, self.max_response_bytes)
        headers = response.headers
        return {
            "status": response.status,
            "headers": {name: headers[name] for name in KEPT_HEADERS if name in headers},
            "body": decode_body(response, raw),
        }

    # -- description ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        data = super().describe()
        statuses = self.expected_status
        data.update({
            "method": self.method,
            "url": self.url,
            "conn": self.conn,
            "headers": sorted(self.headers),  # names only: values may be secrets
            "expected_status": (f"{statuses.start}-{statuses.stop - 1}"
                                if isinstance(statuses, range) else sorted(statuses)),
            "timeout": self.timeout,
            "max_response_bytes": self.max_response_bytes,
            "follow_cross_origin_redirects": self.follow_cross_origin_redirects,
        })
        return data


def _origin(url: URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default one when not written): an origin."""
    return (url.scheme, (url.host or "").lower(), url.port)


def _origin_text(url: URL) -> str:
    return str(url.origin())


def _shown(url: URL) -> str:
    """A URL for logs and errors: without its query (a key may ride there) or fragment."""
    return str(url.with_query(None).with_fragment(None))


def _str_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The whole body, or HttpResponseTooLarge as soon as it is over `cap` bytes."""
    announced = response.content_length
    if announced is not None and announced > cap:
        raise HttpResponseTooLarge(
            f"response body of {announced} bytes is over max_response_bytes={cap}")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > cap:
            raise HttpResponseTooLarge(
                f"response body is over max_response_bytes={cap} (stopped reading at "
                f"{len(body)} bytes)")
    return bytes(body)


def decode_body(response: aiohttp.ClientResponse, raw: bytes) -> Any:
    """JSON when the response says so, else text; None for an empty body."""
    if not raw:
        return None
    content_type = response.content_type
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpTaskError(
                f"response says it is {content_type} but is not valid JSON ({exc})") from None
    try:
        return raw.decode(response.charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", "replace")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _has_password(url: str) -> bool:
    """True for `scheme://user:password@host...` (before any template is rendered)."""
    authority = url.split("://", 1)[1] if "://" in url else ""
    userinfo = authority.split("/", 1)[0].rpartition("@")[0]
    return ":" in userinfo
