"""Input checks for built-in functions: a payload that does not fit fails before any work with
``deserialization_error`` (WORKERS.md §5.2), as upstream's typed inputs do. Unknown keys (such
as the engine's ``_caller_worker_id``) are ignored. Shared by every actor's functions."""

from __future__ import annotations

import builtins
from typing import Any, Final

from transport.client import FunctionError
from transport.jsonshape import json_type

__all__ = ["DESERIALIZATION_ERROR", "Payload"]

DESERIALIZATION_ERROR: Final = "deserialization_error"
_MISSING: Final = object()


class Payload:
    """A function's input object, read field by field with typed accessors."""

    def __init__(self, function_id: str, data: Any) -> None:
        self.function_id = function_id
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.error(f"invalid type: {json_type(data)}, expected an object")
        self.data: dict[str, Any] = data

    def error(self, detail: str) -> FunctionError:
        return FunctionError(
            DESERIALIZATION_ERROR, f"Failed to deserialize input for {self.function_id}: {detail}"
        )

    def has(self, key: str) -> bool:
        return key in self.data

    def any(self, *keys: str) -> Any:
        """The first present key's value (aliases), else a missing-field error for the first."""
        for key in keys:
            if key in self.data:
                return self.data[key]
        raise self.error(f"missing field `{keys[0]}`")

    def str(self, key: str) -> str:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            raise self.error(f"missing field `{key}`")
        if not isinstance(value, str):
            raise self.error(f"`{key}`: invalid type: {json_type(value)}, expected a string")
        return value

    # Annotations below ``str`` name the builtin explicitly: in the class body the method wins.
    def opt_str(self, key: builtins.str) -> builtins.str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.error(f"`{key}`: invalid type: {json_type(value)}, expected a string")
        return value

    def opt_int(self, key: builtins.str) -> int | None:
        """An integer field or None (booleans are not integers here, as in serde)."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"`{key}`: invalid type: {json_type(value)}, expected an integer")
        return value

    def opt_bool(self, key: builtins.str, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(f"`{key}`: invalid type: {json_type(value)}, expected a boolean")
        return value
