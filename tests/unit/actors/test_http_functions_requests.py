"""The pure parts of an HTTP-invoked call (PROTOCOL.md §5.3, §10.2, §10.3): the ``invocation``
parse and its errors, auth from the environment, the request (headers, order, signature) and
the mapping of every kind of reply."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson
import pytest

from actors.http_functions.invocation import (
    ApiKeyAuth,
    BearerAuth,
    Credentials,
    HmacAuth,
    Invocation,
    InvocationRejected,
    parse_invocation,
    resolve_auth,
)
from actors.http_functions.outbound import build_request, cause_chain, map_response, signature

# -- the invocation ---------------------------------------------------------------------------


def test_defaults_of_an_invocation() -> None:
    inv = parse_invocation({"url": "https://x.example/hook"})
    assert inv == Invocation(url="https://x.example/hook", method="POST", timeout_ms=30_000)


def test_a_full_invocation_and_the_timeout_cap() -> None:
    inv = parse_invocation(
        {
            "url": "https://x.example/hook",
            "method": "PATCH",
            "timeout_ms": 120_000,
            "headers": {"x-team": "billing"},
            "auth": {"type": "api_key", "header": "X-Key", "value_key": "PAY_KEY"},
            "ignored": True,
        }
    )
    assert inv.method == "PATCH"
    assert inv.timeout_ms == 60_000  # the client's hard cap
    assert inv.headers == (("x-team", "billing"),)
    assert inv.auth == ApiKeyAuth("X-Key", "PAY_KEY")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("https://x", "`invocation`: expected an object, got string"),
        ({}, "`invocation.url` is required"),
        ({"url": 5}, "`invocation.url`: expected a string, got integer"),
        ({"url": ""}, "`invocation.url` is empty"),
        ({"url": "u", "method": "get"}, "unsupported method 'get'"),
        ({"url": "u", "method": 1}, "unsupported method 'integer'"),
        ({"url": "u", "timeout_ms": 0}, "`invocation.timeout_ms`: expected a positive integer"),
        ({"url": "u", "timeout_ms": True}, "`invocation.timeout_ms`"),
        ({"url": "u", "headers": None}, "`invocation.headers`: expected an object, got null"),
        ({"url": "u", "headers": {"a": 1}}, "`invocation.headers.a`: expected a string"),
        ({"url": "u", "headers": {"a b": "v"}}, "not a valid HTTP header"),
        ({"url": "u", "headers": {"x": "v\r\nInjected: 1"}}, "not a valid HTTP header"),
        ({"url": "u", "auth": "bearer"}, "`invocation.auth`: expected an object"),
        ({"url": "u", "auth": {"type": "basic"}}, "unknown auth type 'basic'"),
        ({"url": "u", "auth": {"type": "bearer"}}, "`invocation.auth.token_key` is required"),
        ({"url": "u", "auth": {"type": "api_key", "value_key": "K"}}, "auth.header` is required"),
        ({"url": "u", "auth": {"type": "hmac", "secret_key": 3}}, "secret_key`: expected a str"),
    ],
)
def test_bad_invocations_say_which_field(raw: Any, message: str) -> None:
    with pytest.raises(InvocationRejected) as info:
        parse_invocation(raw)
    assert message in info.value.message


def test_auth_secrets_come_from_the_environment_by_name() -> None:
    env = {"TOKEN": "t0k", "KEY": "k3y", "SECRET": "s3cr3t"}
    assert resolve_auth(BearerAuth("TOKEN"), env) == Credentials(BearerAuth("TOKEN"), "t0k")
    assert resolve_auth(ApiKeyAuth("X-Key", "KEY"), env).secret == "k3y"  # type: ignore[union-attr]
    assert resolve_auth(HmacAuth("SECRET"), env).secret == "s3cr3t"  # type: ignore[union-attr]
    assert resolve_auth(None, env) is None
    with pytest.raises(InvocationRejected, match="'MISSING', which is not set in the engine"):
        resolve_auth(BearerAuth("MISSING"), env)
    with pytest.raises(InvocationRejected, match="cannot be sent in a header"):
        resolve_auth(BearerAuth("BAD"), {"BAD": "a\nb"})
    with pytest.raises(InvocationRejected, match="not a valid HTTP header name"):
        resolve_auth(ApiKeyAuth("X Key", "KEY"), env)


# -- the request --------------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_timestamp_and_base64_body() -> None:
    body = b'{"amount":1250}'
    # Pinned: computed once, independently of the code under test.
    assert signature("whsec", 1700000000, body) == (
        "sha256="
        + hmac.new(b"whsec", b"1700000000:eyJhbW91bnQiOjEyNTB9", hashlib.sha256).hexdigest()
    )
    assert base64.b64encode(body) == b"eyJhbW91bnQiOjEyNTB9"
    assert signature("whsec", 1700000000, body) != signature("whsec", 1700000001, body)
    assert signature("whsec", 1700000000, b"") == (
        "sha256=" + hmac.new(b"whsec", b"1700000000:", hashlib.sha256).hexdigest()
    )


def headers_of(*args: Any, **kw: Any) -> dict[str, str]:
    return {k: v for k, v in build_request(*args, **kw).headers}


def test_the_request_carries_the_iii_headers_then_the_configured_ones_then_auth() -> None:
    inv = Invocation(
        url="https://x.example/h",
        method="GET",
        headers=(("x-team", "billing"), ("Authorization", "from-config")),
        auth=BearerAuth("T"),
    )
    req = build_request(
        "billing::charge",
        inv,
        {"a": 1, "_caller_worker_id": "w1"},
        Credentials(BearerAuth("T"), "tok"),
        timestamp=1700000000,
        request_id="0b5a-id",
    )
    assert req.method == "GET" and req.url == "https://x.example/h"
    assert orjson.loads(req.body) == {"a": 1, "_caller_worker_id": "w1"}  # a body for GET too
    headers = dict(req.headers)
    assert headers["Content-Type"] == "application/json"
    assert headers["x-iii-Function-Path"] == "billing::charge"
    assert headers["x-iii-Invocation-ID"] == "0b5a-id"
    assert headers["x-iii-Timestamp"] == "1700000000"
    assert headers["x-team"] == "billing"
    assert headers["Authorization"] == "Bearer tok"  # auth wins over a configured header
    assert len(req.headers) == 6  # one Authorization, not two


def test_api_key_and_hmac_headers() -> None:
    inv = Invocation(url="https://x.example/h")
    keyed = headers_of(
        "f", inv, None, Credentials(ApiKeyAuth("X-Key", "K"), "k3y"), timestamp=1, request_id="i"
    )
    assert keyed["X-Key"] == "k3y"
    req = build_request(
        "f", inv, {"n": 1}, Credentials(HmacAuth("S"), "sec"), timestamp=1700000000, request_id="i"
    )
    assert dict(req.headers)["x-iii-Signature"] == signature("sec", 1700000000, req.body)
    assert req.body == b'{"n":1}'
    assert build_request("f", inv, None, None, timestamp=1, request_id="i").body == b"null"


# -- the reply ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "body", "result", "code", "message"),
    [
        (200, "OK", b"", None, None, None),
        (204, "No Content", b"", None, None, None),
        (200, "OK", b'{"ok": true}', {"ok": True}, None, None),
        (201, "Created", b"[1, 2]", [1, 2], None, None),
        (200, "OK", b"  \n", None, None, None),
        (200, "OK", b"<html>", None, "invalid_response", "Failed to parse response body as JSON"),
        (302, "Found", b"", None, None, None),
        (301, "Moved", b'{"to": "x"}', {"to": "x"}, None, None),
        (304, "Not Modified", b"not json", None, None, None),
        (
            422,
            "Unprocessable",
            b'{"error": {"code": "bad", "message": "Nope"}}',
            None,
            "bad",
            "Nope",
        ),
        (400, "Bad Request", b'{"error": {"code": 5}}', None, "http_error", "HTTP request failed"),
        (400, "Bad Request", b'{"error": "str"}', None, "http_error", "HTTP request failed"),
        (500, "Internal", b'{"error": {"message": "boom"}}', None, "http_error", "boom"),
        (502, "Bad Gateway", b"down", None, "http_error", "HTTP 502 Bad Gateway"),
        (503, "", b"", None, "http_error", "HTTP 503 Service Unavailable"),
        (404, "Not Found", b'{"detail": "x"}', None, "http_error", "HTTP 404 Not Found"),
        (599, "", b"", None, "http_error", "HTTP 599"),
    ],
)
def test_reply_mapping(
    status: int,
    reason: str,
    body: bytes,
    result: Any,
    code: str | None,
    message: str | None,
) -> None:
    outcome = map_response(status, reason, body)
    assert outcome.code == code
    if code is None:
        assert outcome.result == result
    else:
        assert outcome.message is not None and outcome.message.startswith(message or "")


def test_the_cause_chain_names_every_distinct_cause() -> None:
    try:
        try:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        except OSError as inner:
            raise RuntimeError("connect failed") from inner
    except RuntimeError as exc:
        assert cause_chain(exc) == "connect failed: [Errno 111] Connection refused"
    assert cause_chain(TimeoutError()) == "TimeoutError"
