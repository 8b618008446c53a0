"""HTTP request → handler payload (WORKERS.md §3.3) and middleware input (§3.4). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from actors.http.routes import Route


def _form_decode(raw: bytes) -> str:
    # application/x-www-form-urlencoded: '+' is a space, %XX a byte, then lossy UTF-8.
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def query_params(raw: bytes) -> dict[str, str]:
    """Percent-decoded, single-valued (the last value wins); ``key`` without ``=`` → ``""``."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for part in raw.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        out[_form_decode(key)] = _form_decode(value)
    return out


def _visible_ascii(value: str) -> bool:
    # The http crate's HeaderValue::to_str: visible ASCII (0x20-0x7e) or tab.
    if value.isascii() and value.isprintable():
        return True
    return all(c == "\t" or " " <= c <= "~" for c in value)


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Names lower-cased; non visible-ASCII values become ``""``; the last value wins."""
    out: dict[str, str] = {}
    for name, value in raw:
        text = value.decode("latin-1")
        out[name.decode("latin-1").lower()] = text if _visible_ascii(text) else ""
    return out


def is_json_request(raw: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when the (last) ``content-type`` header contains ``application/json`` (case-sensitive)."""
    found = False
    for name, value in raw:
        if name.lower() == b"content-type":
            found = b"application/json" in value
    return found


def parse_json_body(data: bytes) -> Any:
    """The parsed JSON body; empty or invalid JSON → ``None``."""
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def base_payload(
    route: Route,
    method: str,
    path_params: dict[str, str],
    query: dict[str, str],
    headers: dict[str, str],
    body: Any,
) -> dict[str, Any]:
    """The handler payload without the channel refs: what the condition function receives."""
    return {
        "query_params": query,
        "path_params": path_params,
        "headers": headers,
        "path": route.api_path,
        "method": method,
        "body": body,
        "trigger": {"type": "http", "path": route.api_path, "method": method},
    }


def handler_payload(
    base: dict[str, Any], request_body: dict[str, str], response: dict[str, str]
) -> dict[str, Any]:
    return {**base, "request_body": request_body, "response": response}


def middleware_input(
    method: str, path_params: dict[str, str], query: dict[str, str], headers: dict[str, str]
) -> dict[str, Any]:
    return {
        "phase": "preHandler",
        "request": {
            "path_params": path_params,
            "query_params": query,
            "headers": headers,
            "method": method,
        },
        "context": {},
    }
