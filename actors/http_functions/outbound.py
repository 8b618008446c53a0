"""One outgoing request of an HTTP-invoked function and the mapping of its reply (PROTOCOL.md
§10.2, §10.3; WORKERS.md §4.3), as pure functions: the clock, the request id and the secrets
come in as arguments, the reply comes in as status, reason and body bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http
from typing import Any, Final

import attrs
import orjson

from actors.http_functions.invocation import (
    ApiKeyAuth,
    BearerAuth,
    Credentials,
    Invocation,
)

__all__ = [
    "HTTP_ERROR",
    "HTTP_REQUEST_FAILED",
    "HTTP_RESPONSE_FAILED",
    "INVALID_RESPONSE",
    "Outcome",
    "Request",
    "build_request",
    "map_response",
    "signature",
]

HTTP_REQUEST_FAILED: Final = "http_request_failed"
HTTP_RESPONSE_FAILED: Final = "http_response_failed"
INVALID_RESPONSE: Final = "invalid_response"
HTTP_ERROR: Final = "http_error"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<lower hex of HMAC-SHA256(secret, "<timestamp>:<base64(body)>")>`` (standard
    base64, padded)."""
    message = f"{timestamp}:".encode() + base64.b64encode(body)
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@attrs.frozen
class Request:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def build_request(
    function_id: str,
    invocation: Invocation,
    data: Any,
    credentials: Credentials | None,
    *,
    timestamp: int,
    request_id: str,
) -> Request:
    """The request for one call: JSON body (for every method), the iii headers, the
    configured headers, then auth (so auth wins over a configured header of the same name)."""
    body = orjson.dumps(data)
    headers: dict[str, tuple[str, str]] = {}

    def put(name: str, value: str) -> None:
        headers[name.lower()] = (name, value)

    put("Content-Type", "application/json")
    put("x-iii-Function-Path", function_id)
    put("x-iii-Invocation-ID", request_id)
    put("x-iii-Timestamp", str(timestamp))
    for name, value in invocation.headers:
        put(name, value)
    if credentials is not None:
        auth = credentials.auth
        if isinstance(auth, BearerAuth):
            put("Authorization", f"Bearer {credentials.secret}")
        elif isinstance(auth, ApiKeyAuth):
            put(auth.header, credentials.secret)
        else:
            put("x-iii-Signature", signature(credentials.secret, timestamp, body))
    return Request(invocation.method, invocation.url, tuple(headers.values()), body)


@attrs.frozen
class Outcome:
    """A call's result, or its error (``code`` set)."""

    result: Any = None
    code: str | None = None
    message: str | None = None


def _json(body: bytes) -> tuple[bool, Any]:
    try:
        return True, orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, None


def _status_line(status: int, reason: str) -> str:
    if not reason:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return f"{status} {reason}".rstrip()


def map_response(status: int, reason: str, body: bytes) -> Outcome:
    """The reply as the function's outcome (§10.3)."""
    if 200 <= status < 300:
        if not body.strip():
            return Outcome(None)
        ok, value = _json(body)
        if not ok:
            preview = body[:200].decode("utf-8", "replace")
            return Outcome(
                code=INVALID_RESPONSE,
                message=f"Failed to parse response body as JSON (HTTP {status}): {preview!r}",
            )
        return Outcome(value)
    if status < 400:
        ok, value = _json(body)
        return Outcome(value if ok else None)
    ok, value = _json(body)
    if ok and isinstance(value, dict) and "error" in value:
        err = value["error"]
        code = err.get("code") if isinstance(err, dict) else None
        text = err.get("message") if isinstance(err, dict) else None
        return Outcome(
            code=code if isinstance(code, str) else HTTP_ERROR,
            message=text if isinstance(text, str) else "HTTP request failed",
        )
    return Outcome(code=HTTP_ERROR, message=f"HTTP {_status_line(status, reason)}")


def cause_chain(exc: BaseException) -> str:
    """``outer: inner: innermost`` — each distinct text once, the type where there is none."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current) or type(current).__name__
        if text not in parts:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return ": ".join(parts)
