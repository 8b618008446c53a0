"""JSON type names for error messages ("expected an object, got array"), shared by the codec's
users: the actors' payload and config checks all name types the same way."""

from __future__ import annotations

from typing import Any


def json_type(value: Any) -> str:
    """The JSON name of a value's type: null, boolean, integer, number, string, array, object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
