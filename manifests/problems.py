"""One configuration problem, and the small helpers that phrase problems the same way everywhere.

Messages follow SUPERVISOR.md §4.3: ``<file>:<line>: <dotted.path>: <problem>[ — hint]``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

PathPart = str | int

# C0/C1 controls plus the bidi overrides and isolates ("trojan source"): never echoed in keys.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@attrs.frozen
class ConfigProblem:
    """One error (or warning) found in a configuration file, located by file, line and path."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        parts = [self.file if self.line is None else f"{self.file}:{self.line}"]
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


def clean_key(key: object) -> str:
    """A key as it may be printed: control and bidi-override characters stripped."""
    return _UNPRINTABLE.sub("", str(key))


def dotted(path: Sequence[PathPart]) -> str:
    """``("workers", 2, "supervise", "restart")`` → ``workers[2].supervise.restart``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + clean_key(part)
    return out


def did_you_mean(key: str, known: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean scripts.start?)`` when a known key is close enough, else ``""``."""
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if not match:
        return ""
    return f" (did you mean {prefix}{match[0]}?)"


def type_name(value: object) -> str:
    """How a YAML value's type is named in messages ("a list", "an integer", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def show_value(value: object) -> str:
    """A short rendering of a scalar for messages about built-in config blocks."""
    if isinstance(value, dict | list | tuple) or value is None:
        return type_name(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
