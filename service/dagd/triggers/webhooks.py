"""Webhook authentication: the `Webhook` declaration, secret lookup and request checks (pure).

This module owns who may fire a webhook trigger. It declares a webhook (`Webhook`),
finds its secret (`resolve_secret`, from an environment variable or a file, never from
the DAG file) and checks one request's headers and body against it (`verify`). It does
no I/O of its own: the environment, the file reader and the clock are passed in, so the
aiohttp handler stays thin and these rules are tested with plain sync tests.

Schemes (`auth=`):
- ``bearer``: ``Authorization: Bearer <secret>``.
- ``github``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``.
- ``standard``: Standard Webhooks (standardwebhooks.com): ``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256> ...`` over
  ``"{id}.{timestamp}.{body}"``, with a replay window of `tolerance` seconds.
- ``hmac``: a header (default ``X-Signature``) holding ``<hex>`` or ``sha256=<hex>``.
- ``none``: anyone may fire it.

Statuses: 401 when the request brings no usable credentials or the server has no usable
secret; 403 when credentials are present but malformed, wrong or outside the time window.
Every comparison of a secret-derived value goes through `hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from dagd.authoring.tasks import caller_location
from dagd.errors import DagDefinitionError, DagdError

AuthScheme = Literal["bearer", "github", "standard", "hmac", "none"]
AUTH_SCHEMES: frozenset[str] = frozenset({"bearer", "github", "standard", "hmac", "none"})

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
ENV_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# RFC 9110 field-name token characters.
HEADER_PATTERN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+")
HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# A delivery id becomes an idempotency key: keep it short and printable.
DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,200}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")

DEFAULT_HMAC_HEADER = "X-Signature"
GITHUB_SIGNATURE = "X-Hub-Signature-256"
GITHUB_DELIVERY = "X-GitHub-Delivery"
STANDARD_ID = "webhook-id"
STANDARD_TIMESTAMP = "webhook-timestamp"
STANDARD_SIGNATURE = "webhook-signature"
STANDARD_SECRET_PREFIX = "whsec_"

Headers = Mapping[str, str]


class WebhookAuthError(DagdError):
    """A request to a webhook is refused: 401 (no usable credentials) or 403 (wrong ones).

    `message` is safe to send to the caller; `reason` is the server-side detail worth
    logging (which environment variable is unset, which file is unreadable). Neither
    ever contains a secret or the credentials the caller sent.
    """

    code = "webhook_auth"

    def __init__(
        self, message: str, status: int = 401, *, reason: str | None = None, **where: Any
    ) -> None:
        if status not in (401, 403):
            raise ValueError(f"WebhookAuthError status must be 401 or 403, got {status!r}")
        super().__init__(message, **where)
        self.status = status
        self.reason = reason if reason is not None else message


@dataclass(frozen=True, init=False)
class Webhook:
    """A webhook trigger: POST /hooks/<name> fires the DAG when the request authenticates.

    The secret itself never appears here: `secret_env` names an environment variable,
    `secret_file` a file (a systemd credential, a mounted secret). `max_body` is the
    largest body in bytes the HTTP layer accepts (it answers 413 before reading more);
    `tolerance` is the replay window in seconds of the ``standard`` scheme.
    """

    name: str
    auth: str
    secret_env: str | None
    secret_file: str | None
    header: str | None
    tolerance: float
    max_body: int | None
    # Where the DAG file declared it: for error messages, not part of its identity.
    fileloc: str | None = field(compare=False, repr=False)
    lineno: int | None = field(compare=False, repr=False)

    def __init__(
        self,
        name: str,
        *,
        auth: AuthScheme = "bearer",
        secret_env: str | None = None,
        secret_file: str | None = None,
        header: str | None = None,
        tolerance: float | timedelta = 300,
        max_body: int | None = None,
    ) -> None:
        fileloc, lineno = caller_location()
        where: dict[str, Any] = {"file": fileloc, "line": lineno}
        checked_name = _check_name(name, where)
        checked_auth = _check_auth(auth, where)
        values: dict[str, Any] = {
            "name": checked_name,
            "auth": checked_auth,
            "secret_env": secret_env,
            "secret_file": secret_file,
            "header": header,
            "tolerance": _check_tolerance(tolerance, where),
            "max_body": _check_max_body(max_body, where),
            "fileloc": fileloc,
            "lineno": lineno,
        }
        _check_secret_source(checked_auth, secret_env, secret_file, where)
        _check_header(checked_auth, header, where)
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def signature_header(self) -> str | None:
        """The header that carries the credentials for this scheme (None for ``none``)."""
        return {
            "bearer": "Authorization",
            "github": GITHUB_SIGNATURE,
            "standard": STANDARD_SIGNATURE,
            "hmac": self.header or DEFAULT_HMAC_HEADER,
        }.get(self.auth)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the API and UI: where the secret lives, never its value."""
        return {
            "kind": "webhook",
            "name": self.name,
            "auth": self.auth,
            "secret_env": self.secret_env,
            "secret_file": self.secret_file,
            "signature_header": self.signature_header,
            "tolerance": self.tolerance if self.auth == "standard" else None,
            "max_body": self.max_body,
        }


# -- declaration checks ------------------------------------------------------------


def _check_name(name: Any, where: dict[str, Any]) -> str:
    # "." and ".." match the pattern but cannot be a URL path segment: clients fold them.
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or set(name) == {"."}:
        raise DagDefinitionError(
            f"webhook name must be 1-100 letters, digits, '_', '.' or '-' "
            f"(not only dots), got {name!r}",
            field="name",
            **where,
        )
    return name


def _check_auth(auth: Any, where: dict[str, Any]) -> str:
    if auth not in AUTH_SCHEMES:
        raise DagDefinitionError(
            f"unknown webhook auth {auth!r}; expected one of {', '.join(sorted(AUTH_SCHEMES))}",
            field="auth",
            **where,
        )
    return str(auth)


def _check_secret_source(
    auth: str, secret_env: Any, secret_file: Any, where: dict[str, Any]
) -> None:
    if auth == "none":
        if secret_env is not None or secret_file is not None:
            # A secret that is never checked gives a false sense of safety.
            raise DagDefinitionError(
                "auth 'none' checks no secret; drop secret_env/secret_file or choose a scheme",
                field="secret_env" if secret_env is not None else "secret_file",
                **where,
            )
        return
    if (secret_env is None) == (secret_file is None):
        raise DagDefinitionError(
            f"auth {auth!r} needs exactly one of secret_env (an environment variable name) "
            "or secret_file (a file path); the secret itself never goes in the DAG file",
            field="secret_env",
            **where,
        )
    if secret_env is not None and (
        not isinstance(secret_env, str) or not ENV_PATTERN.fullmatch(secret_env)
    ):
        raise DagDefinitionError(
            "secret_env must name an environment variable (letters, digits, '_'), "
            "not hold the secret",
            field="secret_env",
            **where,
        )
    if secret_file is not None and (not isinstance(secret_file, str) or not secret_file):
        raise DagDefinitionError(
            f"secret_file must be a non-empty path string, got {type(secret_file).__name__}",
            field="secret_file",
            **where,
        )


def _check_header(auth: str, header: Any, where: dict[str, Any]) -> None:
    if header is None:
        return
    if auth != "hmac":
        raise DagDefinitionError(
            f"header applies to auth 'hmac' only; auth {auth!r} uses fixed headers",
            field="header",
            **where,
        )
    if not isinstance(header, str) or not HEADER_PATTERN.fullmatch(header):
        raise DagDefinitionError(
            f"header must be an HTTP header name, got {header!r}", field="header", **where
        )


def _check_tolerance(tolerance: Any, where: dict[str, Any]) -> float:
    if isinstance(tolerance, timedelta):
        tolerance = tolerance.total_seconds()
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not math.isfinite(tolerance)
        or tolerance <= 0
    ):
        raise DagDefinitionError(
            f"tolerance must be a positive number of seconds, got {tolerance!r}",
            field="tolerance",
            **where,
        )
    return float(tolerance)


def _check_max_body(max_body: Any, where: dict[str, Any]) -> int | None:
    if max_body is None:
        return None
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0:
        raise DagDefinitionError(
            f"max_body must be a positive number of bytes or None, got {max_body!r}",
            field="max_body",
            **where,
        )
    return max_body


# -- secrets -----------------------------------------------------------------------


def _unavailable(webhook: Webhook, reason: str) -> WebhookAuthError:
    return WebhookAuthError(
        f"webhook {webhook.name!r} cannot authenticate requests: "
        "its secret is not available on the server",
        401,
        reason=f"webhook {webhook.name!r}: {reason}",
    )


def resolve_secret(
    webhook: Webhook, environ: Mapping[str, str], read_file: Callable[[str], bytes]
) -> bytes:
    """The webhook's secret, from its environment variable or file; b"" for auth 'none'.

    A missing, empty or unreadable secret raises a 401 `WebhookAuthError` whose `reason`
    says why, so requests fail closed and the daemon keeps running. Trailing newlines of
    a secret file are dropped (editors and `echo` add one).
    """
    if webhook.auth == "none":
        return b""
    if webhook.secret_env is not None:
        value = environ.get(webhook.secret_env)
        if not value:
            raise _unavailable(
                webhook, f"environment variable {webhook.secret_env} is not set or empty"
            )
        return value.encode()
    path = webhook.secret_file
    assert path is not None  # the constructor guarantees one source
    try:
        data = read_file(path)
    except OSError as exc:
        detail = exc.strerror or type(exc).__name__
        raise _unavailable(webhook, f"secret file {path!r} cannot be read: {detail}") from None
    data = data.rstrip(b"\r\n")
    if not data:
        raise _unavailable(webhook, f"secret file {path!r} is empty")
    return data


def _standard_key(webhook: Webhook, secret: bytes) -> bytes:
    """The HMAC key: the base64 after a ``whsec_`` prefix. Without the prefix, base64 is
    decoded too when the secret is valid base64 (as the reference libraries do, so a
    secret pasted without its prefix still matches the sender's), else the raw bytes."""
    prefix = STANDARD_SECRET_PREFIX.encode()
    if not secret.startswith(prefix):
        try:
            return base64.b64decode(secret, validate=True) or secret
        except binascii.Error:
            return secret
    try:
        key = base64.b64decode(secret[len(prefix) :], validate=True)
    except binascii.Error:
        raise _unavailable(webhook, "secret has the whsec_ prefix but is not base64") from None
    if not key:
        raise _unavailable(webhook, "secret is the whsec_ prefix with no key after it")
    return key


# -- request checks ----------------------------------------------------------------


def _refuse(webhook: Webhook, what: str, status: int) -> WebhookAuthError:
    return WebhookAuthError(f"webhook {webhook.name!r}: {what}", status)


def _required(webhook: Webhook, headers: Headers, name: str) -> str:
    value = headers.get(name.lower(), "").strip()
    if not value:
        raise _refuse(webhook, f"missing header {name}", 401)
    return value


def _delivery_id(webhook: Webhook, headers: Headers, name: str) -> str | None:
    value = headers.get(name.lower(), "").strip()
    if not value:
        return None
    if not DELIVERY_ID.fullmatch(value):
        raise _refuse(webhook, f"malformed header {name}: expected 1-200 printable characters", 403)
    return value


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _check_hex_signature(
    webhook: Webhook, value: str, *, header: str, secret: bytes, body: bytes, prefix_required: bool
) -> None:
    scheme, sep, digest = value.partition("=")
    if sep and scheme.lower() == "sha256":
        value = digest
    elif prefix_required or sep:
        raise _refuse(webhook, f"malformed signature in {header}: expected sha256=<hex>", 403)
    if not HEX_SHA256.fullmatch(value):
        raise _refuse(
            webhook, f"malformed signature in {header}: expected 64 hex digits of SHA-256", 403
        )
    if not hmac.compare_digest(bytes.fromhex(value), _hmac_sha256(secret, body)):
        raise _refuse(webhook, f"signature mismatch in {header}", 403)


def _verify_bearer(webhook: Webhook, headers: Headers, body: bytes, secret: bytes) -> str | None:
    value = _required(webhook, headers, "Authorization")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _refuse(webhook, "malformed header Authorization: expected 'Bearer <token>'", 403)
    # A header's bytes that are not UTF-8 arrive as surrogates: compare them as sent.
    if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), secret):
        raise _refuse(webhook, "bearer token mismatch", 403)
    return None


def _verify_github(webhook: Webhook, headers: Headers, body: bytes, secret: bytes) -> str | None:
    value = _required(webhook, headers, GITHUB_SIGNATURE)
    _check_hex_signature(
        webhook, value, header=GITHUB_SIGNATURE, secret=secret, body=body, prefix_required=True
    )
    return _delivery_id(webhook, headers, GITHUB_DELIVERY)


def _verify_hmac(webhook: Webhook, headers: Headers, body: bytes, secret: bytes) -> str | None:
    name = webhook.header or DEFAULT_HMAC_HEADER
    value = _required(webhook, headers, name)
    _check_hex_signature(
        webhook, value, header=name, secret=secret, body=body, prefix_required=False
    )
    return None


def _v1_signatures(webhook: Webhook, value: str) -> list[bytes]:
    """The decoded ``v1`` entries of a webhook-signature header; other versions are skipped."""
    found: list[bytes] = []
    for entry in value.split():
        version, sep, encoded = entry.partition(",")
        if version != "v1" or not sep:
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if len(decoded) == hashlib.sha256().digest_size:
            found.append(decoded)
    if not found:
        raise _refuse(
            webhook,
            f"malformed signature in {STANDARD_SIGNATURE}: expected 'v1,<base64>' entries",
            403,
        )
    return found


def _verify_standard(
    webhook: Webhook, headers: Headers, body: bytes, secret: bytes, now: float
) -> str:
    msg_id = _required(webhook, headers, STANDARD_ID)
    timestamp = _required(webhook, headers, STANDARD_TIMESTAMP)
    signatures = _v1_signatures(webhook, _required(webhook, headers, STANDARD_SIGNATURE))
    if not DELIVERY_ID.fullmatch(msg_id):
        raise _refuse(
            webhook, f"malformed header {STANDARD_ID}: expected 1-200 printable characters", 403
        )
    if not TIMESTAMP.fullmatch(timestamp):
        raise _refuse(webhook, f"malformed header {STANDARD_TIMESTAMP}: expected unix seconds", 403)
    key = _standard_key(webhook, secret)
    expected = _hmac_sha256(key, f"{msg_id}.{timestamp}.".encode() + body)
    # No early exit: every entry is compared, and any one match is enough (key rotation).
    matched = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    if not any(matched):
        raise _refuse(webhook, f"signature mismatch in {STANDARD_SIGNATURE}", 403)
    # Checked after the signature, so this message only ever describes a genuine delivery.
    skew = int(timestamp) - now
    if abs(skew) > webhook.tolerance:
        when = "in the past" if skew < 0 else "in the future"
        raise _refuse(
            webhook,
            f"{STANDARD_TIMESTAMP} is {abs(skew):.0f} s {when}, outside the tolerance of "
            f"{webhook.tolerance:g} s: a replayed delivery or a skewed clock",
            403,
        )
    return msg_id


_SCHEMES: dict[str, Callable[[Webhook, Headers, bytes, bytes], str | None]] = {
    "bearer": _verify_bearer,
    "github": _verify_github,
    "hmac": _verify_hmac,
}


def verify(
    webhook: Webhook, headers: Mapping[str, str], body: bytes, *, secret: bytes, now: float
) -> str | None:
    """Check one request; return the provider's delivery id (an idempotency key), if any.

    `headers` may be any mapping (aiohttp's CIMultiDictProxy, a dict); names are matched
    case-insensitively. `secret` comes from `resolve_secret`; `now` is unix seconds.
    Raises `WebhookAuthError` (401 or 403) when the request must be refused.
    """
    if webhook.auth == "none":
        return None
    if not secret:
        raise _unavailable(webhook, "secret is empty")
    lowered = {str(key).lower(): value for key, value in headers.items()}
    if webhook.auth == "standard":
        return _verify_standard(webhook, lowered, body, secret, now)
    return _SCHEMES[webhook.auth](webhook, lowered, body, secret)
