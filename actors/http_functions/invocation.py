"""The ``invocation`` of an HTTP-invoked function (PROTOCOL.md §5.3, WORKERS.md §4.2), parsed
strictly, and its auth resolved against the environment (pure: the environment is an argument).

``parse_invocation`` turns the wire object into an :class:`Invocation` or raises
:class:`InvocationRejected` saying which field is wrong; ``resolve_auth`` reads the secret the
auth names from the engine's environment (the ``*_key`` fields name variables, never secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from manifests.blocks.http_functions import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS
from transport.jsonshape import json_type

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "MAX_TIMEOUT_MS",
    "METHODS",
    "ApiKeyAuth",
    "Auth",
    "BearerAuth",
    "Credentials",
    "HmacAuth",
    "Invocation",
    "InvocationRejected",
    "parse_invocation",
    "resolve_auth",
]

METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
# DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS (the client's hard cap, PROTOCOL.md §7.7) are the block's:
# the engine bounds its wait for this actor's answer by the same timeout.


class InvocationRejected(Exception):
    """An ``invocation`` that cannot be used; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.frozen
class BearerAuth:
    token_key: str


@attrs.frozen
class ApiKeyAuth:
    header: str
    value_key: str


@attrs.frozen
class HmacAuth:
    secret_key: str


Auth = BearerAuth | ApiKeyAuth | HmacAuth


@attrs.frozen
class Invocation:
    url: str
    method: str = "POST"
    timeout_ms: int = DEFAULT_TIMEOUT_MS  # already capped at MAX_TIMEOUT_MS
    headers: tuple[tuple[str, str], ...] = ()
    auth: Auth | None = None


@attrs.frozen
class Credentials:
    """The auth with its secret read: what the outgoing request adds."""

    auth: Auth
    secret: str


def _string(raw: Mapping[str, Any], key: str, where: str) -> str:
    if key not in raw or raw[key] is None:
        raise InvocationRejected(f"`{where}.{key}` is required")
    value = raw[key]
    if not isinstance(value, str):
        raise InvocationRejected(f"`{where}.{key}`: expected a string, got {json_type(value)}")
    if not value:
        raise InvocationRejected(f"`{where}.{key}` is empty")
    return value


def _auth(raw: Any) -> Auth | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvocationRejected(f"`invocation.auth`: expected an object, got {json_type(raw)}")
    kind = raw.get("type")
    if kind == "bearer":
        return BearerAuth(_string(raw, "token_key", "invocation.auth"))
    if kind == "api_key":
        return ApiKeyAuth(
            _string(raw, "header", "invocation.auth"),
            _string(raw, "value_key", "invocation.auth"),
        )
    if kind == "hmac":
        return HmacAuth(_string(raw, "secret_key", "invocation.auth"))
    raise InvocationRejected(
        f"`invocation.auth.type`: unknown auth type {kind!r} (expected bearer, api_key or hmac)"
    )


def parse_invocation(raw: Any) -> Invocation:
    """The wire ``invocation`` object, checked field by field (unknown keys are ignored, as
    upstream's serde structs do)."""
    if not isinstance(raw, dict):
        raise InvocationRejected(f"`invocation`: expected an object, got {json_type(raw)}")
    url = _string(raw, "url", "invocation")
    method = raw.get("method")
    if method is None:
        method = "POST"
    if not isinstance(method, str) or method not in METHODS:
        shown = method if isinstance(method, str) else json_type(method)
        raise InvocationRejected(
            f"`invocation.method`: unsupported method {shown!r} (one of {', '.join(METHODS)})"
        )
    timeout = raw.get("timeout_ms")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_MS
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise InvocationRejected(
            f"`invocation.timeout_ms`: expected a positive integer, got {timeout!r}"
        )
    headers = raw.get("headers", {})
    if not isinstance(headers, dict):
        raise InvocationRejected(
            f"`invocation.headers`: expected an object, got {json_type(headers)}"
        )
    pairs: list[tuple[str, str]] = []
    for name, value in headers.items():
        if not isinstance(value, str):
            raise InvocationRejected(
                f"`invocation.headers.{name}`: expected a string, got {json_type(value)}"
            )
        if not _header_ok(name, value):
            raise InvocationRejected(f"`invocation.headers.{name}`: not a valid HTTP header")
        pairs.append((name, value))
    return Invocation(
        url=url,
        method=method,
        timeout_ms=min(timeout, MAX_TIMEOUT_MS),
        headers=tuple(pairs),
        auth=_auth(raw.get("auth")),
    )


_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _header_ok(name: str, value: str) -> bool:
    """A header name is an RFC 9110 token; a value has no CR, LF or NUL (no injection)."""
    return (
        bool(name)
        and all(c in _TOKEN_CHARS for c in name)
        and not any(c in value for c in "\r\n\0")
        and value.isascii()
    )


def resolve_auth(auth: Auth | None, env: Mapping[str, str]) -> Credentials | None:
    """The auth's secret from ``env``; a variable that is not set is refused by name."""
    if auth is None:
        return None
    if isinstance(auth, BearerAuth):
        key, field = auth.token_key, "token_key"
    elif isinstance(auth, ApiKeyAuth):
        if not _header_ok(auth.header, ""):
            raise InvocationRejected(
                f"`invocation.auth.header`: {auth.header!r} is not a valid HTTP header name"
            )
        key, field = auth.value_key, "value_key"
    else:
        key, field = auth.secret_key, "secret_key"
    secret = env.get(key)
    if secret is None:
        raise InvocationRejected(
            f"auth {field} names environment variable {key!r}, which is not set in the engine"
        )
    if not _header_ok("x", secret) and not isinstance(auth, HmacAuth):
        raise InvocationRejected(
            f"environment variable {key!r} holds a value that cannot be sent in a header"
        )
    return Credentials(auth, secret)
