"""W3C trace context (PROTOCOL.md §5.5, §7.6): parse and make ``traceparent`` values, and the
context a call runs in.

``traceparent`` is ``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``. A value that does
not parse (wrong length, not hex, an all-zero id, version ``ff``) is treated as absent: the
receiver starts a new trace rather than continuing garbage. ``current`` is the trace context
of the call a task is handling (the actors' client sets it around each handler), so a call made
from inside a handler continues that handler's trace.
"""

from __future__ import annotations

import binascii
import contextvars
import os
import re
from random import getrandbits

__all__ = [
    "TraceParent",
    "current",
    "format_traceparent",
    "new_span_ids",
    "new_span_id",
    "new_trace_id",
    "new_traceparents",
    "parse_traceparent",
    "trace_fields",
]

# Lower-case hex only, as W3C trace context level 1 says; a later version may append fields.
_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?"
).fullmatch
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
    if type(value) is not str:
        return None
    match = _TRACEPARENT(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (rest and version == "00"):
        return None  # ff is forbidden; version 00 has exactly four fields
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


# Ids per draw: POOL_IDS * 24 random bytes at a time.
POOL_IDS = 4096
_ZERO_RUN = b"0" * 16
# One new traceparent per 56 bytes: "00-", the trace id, "-", the span id, "-01", a newline,
# where ``split`` cuts. The buffer starts with 5 bytes more, so that every trace id starts at a
# multiple of 8 and is copied 8 digits at a time; 3 more at the end make its length one.
_LEAD, _TAIL = 5, 3
_RECORD = b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01\n"
_TRACE_WORD = (_LEAD + 3) // 8  # the first trace id's first 8-byte word
_SPAN_AT = _LEAD + 36


def _random_hex(size: int) -> bytes:
    """``size`` random bytes (the kernel's CSPRNG) as lower-case hex with no run of 16 zeros
    anywhere, so no id cut from them is all-zero, which W3C forbids."""
    while True:
        text = binascii.hexlify(os.urandom(size))
        if _ZERO_RUN not in text:
            return text


def new_traceparents(count: int = POOL_IDS) -> list[str]:
    """``count`` sampled traceparents of new traces, made in C: strided copies of random hex
    into a template, and one ``split``. Formatting two fresh random numbers as hex for each
    cost the engine's dispatch hook ~5.6k instructions per call; drawing from this list costs a
    few hundred, and making it ~1k per id."""
    raw = _random_hex(count * 24)  # per id: 32 hex digits of trace id, then 16 of span id
    buf = bytearray(b"\n" * _LEAD + _RECORD * count + b"\n" * _TAIL)
    words, source = memoryview(buf).cast("Q"), memoryview(raw).cast("Q")  # 8 bytes each
    for k in range(4):  # the trace id, 8 digits at a time: 7 words per record, 6 per id
        words[_TRACE_WORD + k :: 7] = source[k::6]
    for k in range(16):  # the span id, not word-aligned: a byte at a time
        buf[_SPAN_AT + k :: 56] = raw[32 + k :: 48]
    return buf[_LEAD : len(buf) - _TAIL - 1].decode("ascii").split("\n")


def new_span_ids(count: int = POOL_IDS) -> list[str]:
    """``count`` random span ids (16 hex digits), made in C as ``new_traceparents``."""
    while True:
        text = os.urandom(count * 8).hex(" ", 8)
        if "0" * 16 not in text:  # no all-zero id
            return text.split(" ")


def new_trace_id() -> str:
    # Random, not secret: the Mersenne Twister (reseeded after fork) costs no system call.
    return f"{getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{getrandbits(64) or 1:016x}"


def format_traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


def trace_fields(traceparent: str | None) -> dict[str, str]:
    """``trace_id``/``span_id`` of a traceparent, for a log line (empty when there is none)."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return {}
    return {"trace_id": parsed[0], "span_id": parsed[1]}
