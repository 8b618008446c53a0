"""Helpers the built-in families share: argument checks."""

from __future__ import annotations

from typing import Any

from supervisor.engine.errors import InvocationFailed


def opt_str(data: dict[str, Any], key: str, fn: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvocationFailed(
            "deserialization_error",
            f"Failed to deserialize input for {fn}: `{key}` must be a string",
        )
    return value


def non_negative(data: dict[str, Any], key: str, fn: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvocationFailed(
            "deserialization_error",
            f"Failed to deserialize input for {fn}: `{key}` must be a non-negative integer",
        )
    return value
