"""Status socket framing, sans I/O: one JSON object per line in both directions.

Rules (SUPERVISOR.md §13.2): a request line may be at most 64 KiB — longer gets
``REQUEST_TOO_LARGE`` and the connection closes, since the stream cannot be resynchronised
reliably; malformed JSON gets ``BAD_REQUEST`` and the connection stays usable; surrounding
whitespace and CRLF are tolerated; ``id`` is any JSON value and is echoed back.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

__all__ = [
    "MAX_REQUEST",
    "PROTOCOL_VERSION",
    "Request",
    "ProtocolError",
    "RequestTooLarge",
    "LineReader",
    "parse_request",
    "encode",
    "ok",
    "fail",
    "event",
    "done",
    "parse_duration",
    "ERROR_CODES",
]

MAX_REQUEST = 64 * 1024
PROTOCOL_VERSION = 1

ERROR_CODES = (
    "BAD_REQUEST",
    "REQUEST_TOO_LARGE",
    "UNKNOWN_COMMAND",
    "INVALID_ARGUMENT",
    "UNKNOWN_WORKER",
    "PERMISSION_DENIED",
    "SHUTTING_DOWN",
    "CONFIG_INVALID",
    "TIMEOUT",
    "BUSY",
    "INTERNAL",
)


class ProtocolError(Exception):
    """A request that gets an error reply; ``code`` is one of ``ERROR_CODES``."""

    def __init__(
        self, code: str, message: str, *, request_id: Any = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details


class RequestTooLarge(ProtocolError):
    def __init__(self, size: int) -> None:
        super().__init__(
            "REQUEST_TOO_LARGE",
            f"request line exceeds {MAX_REQUEST} bytes (got {size} without a newline); "
            "the connection is closed",
        )


@attrs.frozen
class Request:
    id: Any
    cmd: str
    args: dict[str, Any]


class LineReader:
    """Bytes in, complete request lines out; enforces the per-line cap."""

    def __init__(self, max_line: int = MAX_REQUEST) -> None:
        self.max_line = max_line
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines: list[bytes] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl == -1:
                break
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if len(line) > self.max_line:
                raise RequestTooLarge(len(line))
            lines.append(line)
        if len(self._buf) > self.max_line:
            raise RequestTooLarge(len(self._buf))
        return lines


def parse_request(line: bytes) -> Request | None:
    """A ``Request``; None for a blank line; ``ProtocolError(BAD_REQUEST)`` otherwise."""
    text = line.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(
            "BAD_REQUEST", f"malformed JSON: {exc}; send one JSON object per line"
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError(
            "BAD_REQUEST", 'a request must be a JSON object like {"id":1,"cmd":"status"}'
        )
    rid = obj.get("id")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ProtocolError(
            "BAD_REQUEST", 'missing "cmd" (a string); try {"cmd":"hello"}', request_id=rid
        )
    args = obj.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError("BAD_REQUEST", '"args" must be a JSON object', request_id=rid)
    return Request(rid, cmd, args)


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def ok(request_id: Any, result: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


def fail(request_id: Any, code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"id": request_id, "ok": False, "error": err}


def event(request_id: Any, name: str, **fields: Any) -> dict[str, Any]:
    return {"id": request_id, "event": name, **fields}


def done(request_id: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "done": True}


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, name: str = "timeout") -> float | None:
    """``"30s"``, ``"500ms"`` or a number of seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProtocolError("INVALID_ARGUMENT", f'{name}: expected a duration like "30s"')
    if isinstance(value, int | float):
        if value < 0:
            raise ProtocolError("INVALID_ARGUMENT", f"{name}: must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ProtocolError(
        "INVALID_ARGUMENT", f'{name}: expected a duration like "30s" or "500ms", got {value!r}'
    )
