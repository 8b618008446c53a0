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


def json_kind(value: Any) -> str:
    """A value's JSON type as prose for error messages: "null", "a boolean", "a number", "a
    string", "an array", "an object"; anything else (not JSON) as "a <Python type name>"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
