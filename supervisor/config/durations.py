"""Parsers for the operator-facing units of ``supervise:``: durations, sizes and signal names.

Each raises :class:`UnitError` with the message that the config report shows (SUPERVISOR.md §4.2).
"""

from __future__ import annotations

import re
import signal

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+")
_DURATION_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)")
_SIZE_SCALE = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


class UnitError(ValueError):
    """A value that is not a valid duration, size or signal; ``str()`` is the message."""


def _plain_number(text: str) -> bool:
    return re.fullmatch(r"\d+(?:\.\d+)?", text) is not None


def parse_duration(value: object) -> float:
    """``500ms``, ``30s``, ``10m``, ``1h`` or ``1m30s`` → seconds. A bare number is an error."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise UnitError("must be a duration such as 500ms, 30s, 10m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise UnitError("must not be negative")
        raise UnitError(f"duration needs a unit (e.g. {_number_text(value)}s)")
    text = str(value).strip()
    if _plain_number(text):
        raise UnitError(f"duration needs a unit (e.g. {text}s)")
    if not _DURATION.fullmatch(text):
        raise UnitError("must be a duration such as 500ms, 30s, 10m or 1h")
    return sum(float(n) * _DURATION_SCALE[u] for n, u in _DURATION_PART.findall(text))


def parse_size(value: object) -> int:
    """``512MiB``, ``10KiB``, ``1GiB``, ``100B`` or a plain integer (bytes) → bytes."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list | float):
        raise UnitError("must be a size such as 512KiB, 10MiB or 1GiB")
    if isinstance(value, int):
        if value < 0:
            raise UnitError("must not be negative")
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    match = _SIZE.fullmatch(text)
    if match is None:
        raise UnitError("must be a size such as 512KiB, 10MiB or 1GiB (sizes take KiB, MiB or GiB)")
    return int(float(match.group(1)) * _SIZE_SCALE[match.group(2)])


def parse_signal(value: object) -> int:
    """``TERM``, ``SIGTERM`` or ``sigterm`` → the signal number."""
    if not isinstance(value, str) or not value.strip():
        raise UnitError("must be a signal name such as TERM or SIGTERM")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UnitError(
            f"unknown signal {value.strip()!r} (use a name such as TERM or SIGTERM)"
        ) from None


def _number_text(value: int | float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
