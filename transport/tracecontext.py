"""W3C trace context (PROTOCOL.md §5.5, §7.6): parse and make ``traceparent`` values, and the
context a call runs in.

``traceparent`` is ``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``. A value that does
not parse (wrong length, not hex, an all-zero id, version ``ff``) is treated as absent: the
receiver starts a new trace rather than continuing garbage. ``current`` is the trace context
of the call a task is handling (the actors' client sets it around each handler), so a call made
from inside a handler continues that handler's trace.
"""

from __future__ import annotations

import contextvars
import os

__all__ = [
    "TraceParent",
    "current",
    "format_traceparent",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "trace_fields",
]

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

# (trace id, span id, flags) of a valid traceparent.
TraceParent = tuple[str, str, str]

# The (traceparent, baggage) of the call the current task is handling, if any.
current: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "iii_trace_context", default=(None, None)
)


def parse_traceparent(value: object) -> TraceParent | None:
    """(trace id, parent span id, flags) of a valid value; None for anything else."""
    if type(value) is not str or len(value) < 55:
        return None
    version = value[0:2]
    if value[2] != "-" or value[35] != "-" or value[52] != "-" or version == "ff":
        return None
    if len(value) > 55 and (version == "00" or value[55] != "-"):
        return None  # version 00 has exactly four fields; later versions may append more
    trace_id = value[3:35].lower()
    span_id = value[36:52].lower()
    flags = value[53:55].lower()
    if not _HEX.issuperset(version + trace_id + span_id + flags):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def format_traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


def trace_fields(traceparent: str | None) -> dict[str, str]:
    """``trace_id``/``span_id`` of a traceparent, for a log line (empty when there is none)."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return {}
    return {"trace_id": parsed[0], "span_id": parsed[1]}
