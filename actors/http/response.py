"""Handler/middleware results → HTTP responses, and the engine's own replies (§3.4–§3.7). Pure.

A ``Reply`` is what goes on the wire: status, header pairs exactly as given (no charset is
ever appended) and the body bytes. Header values are carried as ``str`` holding the UTF-8
bytes one char per byte (latin-1), which is how the ASGI layer encodes them back.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import attrs
import orjson
import structlog

log = structlog.get_logger("iii-http")

JSON_CT = "application/json"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Headers = list[tuple[str, str]]


@attrs.define(slots=True)
class Reply:
    status: int
    headers: Headers
    body: bytes = b""


def error_id() -> str:
    """A short lower-case hex id derived from the current time, to correlate with logs."""
    return format(time.time_ns() // 1000, "x")


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def json_reply(status: int, value: Any, headers: Headers | None = None) -> Reply:
    return Reply(status, [("content-type", JSON_CT), *(headers or ())], dumps(value))


def envelope(status: int, code: str, message: str, *, eid: str | None = None) -> Reply:
    err: dict[str, str] = {"code": code, "message": message}
    if eid is not None:
        err["error_id"] = eid
    return json_reply(status, {"error": err})


def not_found() -> Reply:
    return envelope(404, "NOT_FOUND", "Not Found")


def method_not_allowed(allowed: tuple[str, ...]) -> Reply:
    return Reply(405, [("allow", ", ".join(allowed))])


def function_error(code: str, message: str, eid: str | None = None) -> Reply:
    """A condition, middleware or handler invocation error: 500 with an ``error_id``."""
    return envelope(500, code, message, eid=eid or error_id())


def internal_error(eid: str | None = None) -> Reply:
    return envelope(500, "INTERNAL_ERROR", "internal server error", eid=eid or error_id())


def condition_not_met() -> Reply:
    return json_reply(
        422,
        {
            "error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"},
            "skipped": True,
        },
    )


def middleware_timeout() -> Reply:
    return envelope(504, "MIDDLEWARE_TIMEOUT", "Middleware timeout")


def gateway_timeout() -> Reply:
    return Reply(504, [])


# The server frames bodies itself: a handler's length or transfer coding could only make
# the HTTP/1.1 layer fail the connection (h11 refuses mismatched framing).
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


def status_or_200(value: Any, high: int = 999) -> int:
    """A handler's status: an integer 200..``high``, else 200.

    The spec's range starts at 100, but a 1xx cannot be a final HTTP/1.1 response (the
    server would fail the connection), so 1xx is treated like any other invalid code.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= high:
        return value
    return 200


def _wire(value: str) -> str:
    # UTF-8 bytes as latin-1 chars: the ASGI layer encodes header values with latin-1.
    return value if value.isascii() else value.encode("utf-8").decode("latin-1")


def valid_header(name: str, value: str) -> bool:
    return bool(_TOKEN.match(name)) and not _BAD_VALUE.search(value)


def handler_headers(raw: Any) -> Headers:
    """An object ``{"Name": "value"}`` or an array of ``"Name: value"`` strings (§3.6)."""
    pairs: Headers = []
    if isinstance(raw, dict):
        for name, value in raw.items():
            if isinstance(value, str):
                pairs.append((name, value))
    elif isinstance(raw, list):
        for item in raw:
            if not isinstance(item, str):
                continue
            name, sep, value = item.partition(":")
            name = name.strip()
            if sep and name:
                pairs.append((name, value.strip()))
    out: Headers = []
    for name, value in pairs:
        if name.lower() in FRAMING_HEADERS:
            continue
        if valid_header(name, value):
            out.append((name, _wire(value)))
        else:
            log.warning("skipping invalid response header", header=name[:100])
    return out


def from_handler_result(result: dict[str, Any] | Any) -> Reply:
    """Mode A (§3.6): a non-null handler result read as a response envelope."""
    if not isinstance(result, dict):
        return json_reply(200, {})
    status = status_or_200(result.get("status_code"))
    headers = handler_headers(result.get("headers"))
    body = result.get("body", {})
    content_type = None
    for name, value in headers:
        if name.lower() == "content-type":
            content_type = value
    if content_type is None:
        headers.append(("content-type", JSON_CT))
        return Reply(status, headers, dumps(body))
    if isinstance(body, str):
        return Reply(status, headers, body.encode("utf-8"))
    if body is None:
        return Reply(status, headers, b"")
    return Reply(status, headers, dumps(body))


def from_middleware_respond(response: Any) -> Reply:
    """``{"action": "respond", "response": {...}}``: always JSON, headers override (§3.4)."""
    if not isinstance(response, dict):
        response = {}
    status = status_or_200(response.get("status_code"))
    extra = response.get("headers")
    headers = handler_headers(extra) if isinstance(extra, dict) else []
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.insert(0, ("content-type", JSON_CT))
    return Reply(status, headers, dumps(response.get("body")))


@attrs.define
class StreamHead:
    """Status and headers gathered from mode-B control messages before the first body frame."""

    status: int = 200
    headers: dict[str, tuple[str, str]] = attrs.Factory(dict)  # lower name → (name, value)

    def apply(self, text: str) -> None:
        """Apply one text frame; unknown or malformed frames are ignored."""
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type")
        if kind == "set_status":
            code = msg.get("status_code")
            # 100..599 per spec; 1xx cannot be a final response (see ``status_or_200``)
            if isinstance(code, int) and not isinstance(code, bool) and 200 <= code <= 599:
                self.status = code
        elif kind == "set_headers":
            headers = msg.get("headers")
            if isinstance(headers, dict):
                for name, value in headers.items():
                    lower = name.lower()
                    if lower in FRAMING_HEADERS:
                        continue
                    if isinstance(value, str) and valid_header(name, value):
                        self.headers[lower] = (name, _wire(value))

    def header_list(self) -> Headers:
        return list(self.headers.values())
