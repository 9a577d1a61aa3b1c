"""Webhook authentication: declarations, secret lookup and every scheme's good and bad requests.

Published vectors used here:
- GitHub, "Validating webhook deliveries" (docs.github.com): secret "It's a Secret to
  Everybody", payload "Hello, World!", signature sha256=757107ea...3e17.
- Standard Webhooks, the reference library's test suite
  (github.com/standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py,
  test_sign_function): secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id
  msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330, payload '{"test": 2432232314}',
  signature v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=.
The other signatures are computed here with hashlib/hmac/base64, independently of the
module under test.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from dagd.errors import DagDefinitionError, DagdError
from dagd.triggers import webhooks
from dagd.triggers.webhooks import Webhook, WebhookAuthError, resolve_secret, verify

SECRET = b"correct horse battery staple"
ENV = {"HOOK_SECRET": SECRET.decode()}

GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

SW_SECRET = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_700_000_000.0


def hook(auth: Any, **options: Any) -> Webhook:
    if auth != "none":
        options.setdefault("secret_env", "HOOK_SECRET")
    return Webhook("deploy", auth=auth, **options)


def hex_sig(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def sw_sign(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sw_headers(
    key: bytes = SECRET, *, msg_id: str = "msg_1", timestamp: float = NOW, body: bytes = b"{}"
) -> dict[str, str]:
    ts = int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sw_sign(key, msg_id, ts, body),
    }


def refused(
    webhook: Webhook,
    headers: Any,
    body: bytes = b"{}",
    *,
    secret: bytes = SECRET,
    now: float = NOW,
) -> WebhookAuthError:
    with pytest.raises(WebhookAuthError) as caught:
        verify(webhook, headers, body, secret=secret, now=now)
    return caught.value


def no_file(path: str) -> bytes:
    raise FileNotFoundError(2, "No such file or directory", path)


# -- the declaration ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["deploy", "GitHub.push-events_2", "a", "x" * 100])
def test_valid_names_are_kept(name: str) -> None:
    assert Webhook(name, auth="none").name == name


@pytest.mark.parametrize("name", ["", "x" * 101, "a/b", "a b", "deploy\n", "é", ".", "..", 42])
def test_bad_names_are_refused_with_the_field(name: Any) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        Webhook(name, auth="none")
    assert caught.value.field == "name"


def test_unknown_auth_is_refused_with_field_auth() -> None:
    auth: Any = "basic"
    with pytest.raises(DagDefinitionError, match="unknown webhook auth 'basic'") as caught:
        Webhook("deploy", auth=auth, secret_env="HOOK_SECRET")
    assert caught.value.field == "auth"


def test_errors_point_at_the_declaring_line() -> None:
    auth: Any = "basic"
    with pytest.raises(DagDefinitionError) as caught:
        Webhook("deploy", auth=auth, secret_env="HOOK_SECRET")
    assert caught.value.file == __file__
    assert caught.value.line is not None
    assert str(caught.value).startswith(f"{__file__}:{caught.value.line}")


@pytest.mark.parametrize("auth", ["bearer", "github", "standard", "hmac"])
def test_a_secret_source_is_required(auth: Any) -> None:
    with pytest.raises(DagDefinitionError, match="exactly one of secret_env") as caught:
        Webhook("deploy", auth=auth)
    assert caught.value.field == "secret_env"


def test_both_secret_sources_are_refused() -> None:
    with pytest.raises(DagDefinitionError, match="exactly one of secret_env"):
        Webhook("deploy", auth="github", secret_env="HOOK_SECRET", secret_file="/run/secret")


def test_auth_none_takes_no_secret() -> None:
    with pytest.raises(DagDefinitionError, match="checks no secret") as caught:
        Webhook("deploy", auth="none", secret_file="/run/secret")
    assert caught.value.field == "secret_file"


def test_a_secret_pasted_into_secret_env_is_refused_without_echoing_it() -> None:
    with pytest.raises(DagDefinitionError) as caught:
        Webhook("deploy", auth="bearer", secret_env="hunter2 is my password!")
    assert caught.value.field == "secret_env"
    assert "hunter2" not in str(caught.value)


def test_header_applies_to_hmac_only() -> None:
    assert Webhook("d", auth="hmac", secret_env="S", header="X-Sig").header == "X-Sig"
    with pytest.raises(DagDefinitionError) as caught:
        Webhook("d", auth="github", secret_env="S", header="X-Sig")
    assert caught.value.field == "header"
    with pytest.raises(DagDefinitionError) as caught:
        Webhook("d", auth="hmac", secret_env="S", header="X Sig: 1")
    assert caught.value.field == "header"


@pytest.mark.parametrize("tolerance", [0, -1, float("inf"), float("nan"), True, "300"])
def test_bad_tolerance_is_refused(tolerance: Any) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        Webhook("d", auth="standard", secret_env="S", tolerance=tolerance)
    assert caught.value.field == "tolerance"


def test_tolerance_accepts_a_timedelta() -> None:
    webhook = Webhook("d", auth="standard", secret_env="S", tolerance=timedelta(minutes=2))
    assert webhook.tolerance == 120.0


@pytest.mark.parametrize("max_body", [0, -5, 1.5, True, "1MB"])
def test_bad_max_body_is_refused(max_body: Any) -> None:
    with pytest.raises(DagDefinitionError) as caught:
        Webhook("d", auth="none", max_body=max_body)
    assert caught.value.field == "max_body"


def test_a_webhook_is_frozen_and_compares_by_value() -> None:
    webhook = hook("github")
    with pytest.raises(dataclasses.FrozenInstanceError):
        webhook.name = "other"  # type: ignore[misc]
    assert webhook == hook("github")


def test_describe_is_json_ready_and_never_holds_the_secret() -> None:
    webhook = Webhook("deploy", auth="standard", secret_env="HOOK_SECRET", max_body=65536)
    secret = resolve_secret(webhook, ENV, no_file)
    description = webhook.describe()
    text = json.dumps(description)
    assert secret.decode() not in text
    assert SECRET.decode() not in repr(webhook)
    assert description == {
        "kind": "webhook",
        "name": "deploy",
        "auth": "standard",
        "secret_env": "HOOK_SECRET",
        "secret_file": None,
        "signature_header": "webhook-signature",
        "tolerance": 300.0,
        "max_body": 65536,
    }


def test_describe_names_each_schemes_header() -> None:
    headers = {
        auth: hook(auth).describe()["signature_header"]
        for auth in ("bearer", "github", "standard", "hmac", "none")
    }
    assert headers == {
        "bearer": "Authorization",
        "github": "X-Hub-Signature-256",
        "standard": "webhook-signature",
        "hmac": "X-Signature",
        "none": None,
    }


# -- the error ---------------------------------------------------------------------


def test_auth_error_is_a_dagd_error_with_401_or_403_only() -> None:
    error = WebhookAuthError("nope", 403, reason="server detail")
    assert isinstance(error, DagdError)
    assert error.status == 403
    assert WebhookAuthError("nope").status == 401
    assert error.to_dict() == {"error": "webhook_auth", "message": "nope"}
    with pytest.raises(ValueError, match="401 or 403"):
        WebhookAuthError("boom", 500)


# -- secrets -----------------------------------------------------------------------


def test_secret_from_the_environment() -> None:
    assert resolve_secret(hook("bearer"), ENV, no_file) == SECRET


@pytest.mark.parametrize("environ", [{}, {"HOOK_SECRET": ""}])
def test_missing_secret_env_fails_closed_with_401_and_a_server_side_reason(
    environ: dict[str, str],
) -> None:
    with pytest.raises(WebhookAuthError) as caught:
        resolve_secret(hook("bearer"), environ, no_file)
    error = caught.value
    assert error.status == 401
    assert "secret is not available" in error.message
    assert "HOOK_SECRET" not in error.message  # the caller learns nothing of the set-up
    assert "environment variable HOOK_SECRET is not set" in error.reason
    assert "reason" not in error.to_dict()


def test_secret_from_a_file_drops_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    webhook = Webhook("deploy", auth="github", secret_file=str(path))
    assert resolve_secret(webhook, {}, lambda p: Path(p).read_bytes()) == SECRET


def test_unreadable_secret_file_fails_closed_with_401(tmp_path: Path) -> None:
    path = str(tmp_path / "absent")
    webhook = Webhook("deploy", auth="github", secret_file=path)
    with pytest.raises(WebhookAuthError) as caught:
        resolve_secret(webhook, {}, lambda p: Path(p).read_bytes())
    assert caught.value.status == 401
    assert path in caught.value.reason
    assert "No such file or directory" in caught.value.reason


def test_empty_secret_file_fails_closed_with_401() -> None:
    webhook = Webhook("deploy", auth="github", secret_file="/run/secret")
    with pytest.raises(WebhookAuthError, match="not available") as caught:
        resolve_secret(webhook, {}, lambda p: b"\n")
    assert "is empty" in caught.value.reason


def test_auth_none_needs_no_secret() -> None:
    assert resolve_secret(hook("none"), {}, no_file) == b""


def test_an_empty_secret_never_authenticates() -> None:
    error = refused(hook("bearer"), {"Authorization": "Bearer "}, secret=b"")
    assert error.status == 401


# -- bearer ------------------------------------------------------------------------


def test_bearer_accepts_the_secret() -> None:
    headers = {"Authorization": f"Bearer {SECRET.decode()}"}
    assert verify(hook("bearer"), headers, b"{}", secret=SECRET, now=NOW) is None


def test_bearer_scheme_and_header_names_are_case_insensitive() -> None:
    headers = {"AUTHORIZATION": f"bearer {SECRET.decode()}"}
    assert verify(hook("bearer"), headers, b"{}", secret=SECRET, now=NOW) is None


def test_bearer_missing_header_is_401() -> None:
    error = refused(hook("bearer"), {})
    assert error.status == 401
    assert "missing header Authorization" in error.message


def test_bearer_wrong_token_is_403_and_echoes_nothing() -> None:
    error = refused(hook("bearer"), {"Authorization": "Bearer guessed-token"})
    assert error.status == 403
    assert "mismatch" in error.message
    assert "guessed-token" not in str(error)
    assert SECRET.decode() not in str(error)


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", SECRET.decode()])
def test_bearer_malformed_header_is_403(value: str) -> None:
    error = refused(hook("bearer"), {"Authorization": value})
    assert error.status == 403
    assert "malformed header Authorization" in error.message


# -- github ------------------------------------------------------------------------


def test_github_published_example() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE, "X-GitHub-Delivery": "72d3162e-cc78"}
    delivery = verify(hook("github"), headers, GITHUB_BODY, secret=GITHUB_SECRET, now=NOW)
    assert delivery == "72d3162e-cc78"


def test_github_signature_agrees_with_an_independent_hmac() -> None:
    assert GITHUB_SIGNATURE == "sha256=" + hex_sig(GITHUB_SECRET, GITHUB_BODY)


def test_github_lowercase_header_names_and_no_delivery_id() -> None:
    headers = {"x-hub-signature-256": GITHUB_SIGNATURE}
    assert verify(hook("github"), headers, GITHUB_BODY, secret=GITHUB_SECRET, now=NOW) is None


def test_github_missing_header_is_401() -> None:
    error = refused(hook("github"), {"X-GitHub-Delivery": "1"}, GITHUB_BODY, secret=GITHUB_SECRET)
    assert error.status == 401
    assert "missing header X-Hub-Signature-256" in error.message


def test_github_wrong_secret_is_403() -> None:
    error = refused(
        hook("github"), {"X-Hub-Signature-256": GITHUB_SIGNATURE}, GITHUB_BODY, secret=SECRET
    )
    assert error.status == 403
    assert "signature mismatch in X-Hub-Signature-256" in error.message


def test_github_tampered_body_is_403() -> None:
    error = refused(
        hook("github"),
        {"X-Hub-Signature-256": GITHUB_SIGNATURE},
        b"Hello, World?",
        secret=GITHUB_SECRET,
    )
    assert error.status == 403
    assert "signature mismatch" in error.message


@pytest.mark.parametrize(
    "value",
    [
        GITHUB_SIGNATURE.removeprefix("sha256="),  # the prefix is required
        "sha1=" + GITHUB_SIGNATURE.removeprefix("sha256="),
        GITHUB_SIGNATURE[:-2],
        GITHUB_SIGNATURE[:-1] + "g",
        "sha256=",
    ],
)
def test_github_malformed_signature_is_403(value: str) -> None:
    error = refused(
        hook("github"), {"X-Hub-Signature-256": value}, GITHUB_BODY, secret=GITHUB_SECRET
    )
    assert error.status == 403
    assert "malformed signature in X-Hub-Signature-256" in error.message


def test_github_malformed_delivery_id_is_403() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE, "X-GitHub-Delivery": "a b"}
    error = refused(hook("github"), headers, GITHUB_BODY, secret=GITHUB_SECRET)
    assert error.status == 403
    assert "malformed header X-GitHub-Delivery" in error.message


# -- standard webhooks -------------------------------------------------------------


def test_standard_published_vector() -> None:
    headers = {
        "webhook-id": SW_ID,
        "webhook-timestamp": str(SW_TIMESTAMP),
        "webhook-signature": SW_SIGNATURE,
    }
    delivery = verify(hook("standard"), headers, SW_BODY, secret=SW_SECRET, now=SW_TIMESTAMP)
    assert delivery == SW_ID


def test_standard_published_vector_agrees_with_an_independent_hmac() -> None:
    key = base64.b64decode(SW_SECRET.removeprefix(b"whsec_"))
    assert sw_sign(key, SW_ID, SW_TIMESTAMP, SW_BODY) == SW_SIGNATURE


def test_standard_whsec_secret_is_base64_decoded() -> None:
    key = b"\x00\x01binary key\xff"
    secret = b"whsec_" + base64.b64encode(key)
    headers = sw_headers(key, body=b'{"n": 1}')
    assert verify(hook("standard"), headers, b'{"n": 1}', secret=secret, now=NOW) == "msg_1"


def test_standard_secret_without_prefix_is_used_as_raw_bytes() -> None:
    headers = sw_headers(SECRET)
    assert verify(hook("standard"), headers, b"{}", secret=SECRET, now=NOW) == "msg_1"


def test_standard_base64_secret_without_prefix_is_decoded_like_the_reference() -> None:
    key = b"\x00\x01binary key\xff"
    headers = sw_headers(key, body=b'{"n": 1}')
    secret = base64.b64encode(key)  # pasted without its whsec_ prefix
    assert verify(hook("standard"), headers, b'{"n": 1}', secret=secret, now=NOW) == "msg_1"


@pytest.mark.parametrize("secret", [b"whsec_not base64!", b"whsec_"])
def test_standard_broken_whsec_secret_fails_closed_with_401(secret: bytes) -> None:
    error = refused(hook("standard"), sw_headers(SECRET), secret=secret)
    assert error.status == 401
    assert "whsec_" in error.reason
    assert "secret is not available" in error.message


def test_standard_header_names_are_case_insensitive() -> None:
    headers = {name.title(): value for name, value in sw_headers().items()}
    assert "Webhook-Signature" in headers
    assert verify(hook("standard"), headers, b"{}", secret=SECRET, now=NOW) == "msg_1"


def test_standard_any_one_of_several_signatures_may_match() -> None:
    headers = sw_headers()
    good = headers["webhook-signature"]
    headers["webhook-signature"] = " ".join(
        [
            sw_sign(b"old rotated key", "msg_1", int(NOW), b"{}"),
            "v1a,c29tZSBlZDI1NTE5IHNpZ25hdHVyZQ==",  # asymmetric entries are skipped
            "v1,***not-base64***",
            good,
            "garbage",
        ]
    )
    assert verify(hook("standard"), headers, b"{}", secret=SECRET, now=NOW) == "msg_1"


def test_standard_several_signatures_none_valid_is_403() -> None:
    headers = sw_headers()
    headers["webhook-signature"] = " ".join(
        sw_sign(key, "msg_1", int(NOW), b"{}") for key in (b"k1", b"k2", b"k3")
    )
    error = refused(hook("standard"), headers)
    assert error.status == 403
    assert "signature mismatch in webhook-signature" in error.message


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_missing_header_is_401(missing: str) -> None:
    headers = sw_headers()
    del headers[missing]
    error = refused(hook("standard"), headers)
    assert error.status == 401
    assert f"missing header {missing}" in error.message


def test_standard_wrong_secret_is_403() -> None:
    error = refused(hook("standard"), sw_headers(b"someone else's key"))
    assert error.status == 403
    assert "signature mismatch" in error.message


def test_standard_tampered_body_is_403() -> None:
    error = refused(hook("standard"), sw_headers(body=b'{"amount": 1}'), b'{"amount": 1000}')
    assert error.status == 403
    assert "signature mismatch" in error.message


@pytest.mark.parametrize(
    ("name", "value"), [("webhook-id", "msg_2"), ("webhook-timestamp", str(int(NOW) + 1))]
)
def test_standard_id_and_timestamp_are_signed(name: str, value: str) -> None:
    headers = sw_headers()
    headers[name] = value
    error = refused(hook("standard"), headers)
    assert error.status == 403
    assert "signature mismatch" in error.message


@pytest.mark.parametrize("value", ["v2,abc=", "nonsense", "v1,", "v1,%%%"])
def test_standard_malformed_signature_is_403(value: str) -> None:
    headers = sw_headers()
    headers["webhook-signature"] = value
    error = refused(hook("standard"), headers)
    assert error.status == 403
    assert "malformed signature in webhook-signature" in error.message


@pytest.mark.parametrize("value", ["hello", "-5", "1.5e9", "1700000000.0"])
def test_standard_malformed_timestamp_is_403(value: str) -> None:
    headers = sw_headers()
    headers["webhook-timestamp"] = value
    error = refused(hook("standard"), headers)
    assert error.status == 403
    assert "malformed header webhook-timestamp" in error.message


def test_standard_old_timestamp_is_a_replay() -> None:
    error = refused(hook("standard"), sw_headers(timestamp=NOW - 301))
    assert error.status == 403
    assert "301 s in the past, outside the tolerance of 300 s" in error.message
    assert "replay" in error.message


def test_standard_future_timestamp_is_refused() -> None:
    error = refused(hook("standard"), sw_headers(timestamp=NOW + 301))
    assert error.status == 403
    assert "in the future, outside the tolerance" in error.message


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_standard_timestamps_at_the_tolerance_edge_pass(offset: int) -> None:
    headers = sw_headers(timestamp=NOW + offset)
    assert verify(hook("standard"), headers, b"{}", secret=SECRET, now=NOW) == "msg_1"


def test_standard_tolerance_is_configurable() -> None:
    webhook = hook("standard", tolerance=30)
    assert verify(webhook, sw_headers(timestamp=NOW - 30), b"{}", secret=SECRET, now=NOW)
    error = refused(webhook, sw_headers(timestamp=NOW - 31))
    assert "outside the tolerance of 30 s" in error.message


def test_standard_secret_env_missing_fails_closed() -> None:
    webhook = hook("standard")
    with pytest.raises(WebhookAuthError) as caught:
        resolve_secret(webhook, {"OTHER": "x"}, no_file)
    assert caught.value.status == 401


# -- generic hmac ------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "sha256=", "SHA256="])
def test_hmac_accepts_hex_with_or_without_prefix(prefix: str) -> None:
    headers = {"X-Signature": prefix + hex_sig(SECRET, b"payload")}
    assert verify(hook("hmac"), headers, b"payload", secret=SECRET, now=NOW) is None


def test_hmac_custom_header_is_matched_case_insensitively() -> None:
    webhook = hook("hmac", header="X-Acme-Signature")
    headers = {"x-acme-signature": hex_sig(SECRET, b"payload").upper()}
    assert verify(webhook, headers, b"payload", secret=SECRET, now=NOW) is None


def test_hmac_missing_header_names_it() -> None:
    webhook = hook("hmac", header="X-Acme-Signature")
    error = refused(webhook, {"X-Signature": hex_sig(SECRET, b"payload")}, b"payload")
    assert error.status == 401
    assert "missing header X-Acme-Signature" in error.message


def test_hmac_wrong_secret_and_tampered_body_are_403() -> None:
    headers = {"X-Signature": hex_sig(SECRET, b"payload")}
    assert refused(hook("hmac"), headers, b"payload", secret=b"other").status == 403
    error = refused(hook("hmac"), headers, b"payload!")
    assert error.status == 403
    assert "signature mismatch in X-Signature" in error.message


@pytest.mark.parametrize("value", ["sha1=abcd", "not hex", "ab" * 31, "md5=" + "ab" * 32])
def test_hmac_malformed_signature_is_403(value: str) -> None:
    error = refused(hook("hmac"), {"X-Signature": value}, b"payload")
    assert error.status == 403
    assert "malformed signature in X-Signature" in error.message


# -- none --------------------------------------------------------------------------


def test_none_always_passes() -> None:
    assert verify(hook("none"), {}, b"anything", secret=b"", now=NOW) is None


# -- headers from aiohttp ----------------------------------------------------------


def test_a_multidict_as_aiohttp_gives_it_is_accepted() -> None:
    headers = CIMultiDict(sw_headers())
    assert verify(hook("standard"), headers, b"{}", secret=SECRET, now=NOW) == "msg_1"


# -- constant-time comparison ------------------------------------------------------


def good_request(auth: str) -> tuple[dict[str, str], bytes]:
    if auth == "bearer":
        return {"Authorization": f"Bearer {SECRET.decode()}"}, b"{}"
    if auth == "github":
        return {"X-Hub-Signature-256": "sha256=" + hex_sig(SECRET, b"{}")}, b"{}"
    if auth == "hmac":
        return {"X-Signature": hex_sig(SECRET, b"{}")}, b"{}"
    return sw_headers(), b"{}"


@pytest.fixture
def compare_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[Any, Any], bool] = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", counting)
    return calls


@pytest.mark.parametrize("auth", ["bearer", "github", "hmac", "standard"])
def test_every_scheme_compares_with_compare_digest(
    auth: str, compare_calls: list[tuple[bytes, bytes]]
) -> None:
    headers, body = good_request(auth)
    verify(hook(auth), headers, body, secret=SECRET, now=NOW)
    assert len(compare_calls) == 1


def test_standard_compares_every_signature_entry(
    compare_calls: list[tuple[bytes, bytes]],
) -> None:
    headers = sw_headers()
    other = sw_sign(b"rotated", "msg_1", int(NOW), b"{}")
    headers["webhook-signature"] = f"{headers['webhook-signature']} {other} {other}"
    verify(hook("standard"), headers, b"{}", secret=SECRET, now=NOW)
    assert len(compare_calls) == 3


@pytest.mark.parametrize("auth", ["bearer", "github", "hmac", "standard"])
def test_the_decision_is_compare_digests(auth: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # If compare_digest says no, a correct request is refused: no == shortcut decides.
    monkeypatch.setattr(webhooks.hmac, "compare_digest", lambda a, b: False)
    headers, body = good_request(auth)
    assert refused(hook(auth), headers, body).status == 403
