"""The trace context of one HTTP request (PROTOCOL.md §7.6): a valid ``traceparent`` header is
continued, anything else starts a new trace; ``baggage`` is passed on as it came.

``enter`` makes it the context of the task serving the request: the calls the actor makes for
it (middleware, condition, handler) carry it, and its log lines carry its ``trace_id``.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from transport.tracecontext import current, new_span_id, new_trace_id, parse_traceparent

__all__ = ["enter", "request_trace"]


def request_trace(raw_headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, str | None]:
    """(traceparent, baggage) for the invocation a request makes."""
    traceparent: str | None = None
    baggage: str | None = None
    for name, value in raw_headers:
        size = len(name)
        if size == 11 and name.lower() == b"traceparent":
            traceparent = value.decode("latin-1").strip()
        elif size == 7 and name.lower() == b"baggage":
            baggage = value.decode("latin-1").strip() or None
    if parse_traceparent(traceparent) is None:
        traceparent = f"00-{new_trace_id()}-{new_span_id()}-01"
    assert traceparent is not None
    return traceparent, baggage


def enter(raw_headers: Iterable[tuple[bytes, bytes]]) -> str:
    """Make the request's trace context current in this task; returns its traceparent."""
    traceparent, baggage = request_trace(raw_headers)
    current.set((traceparent, baggage))
    structlog.contextvars.bind_contextvars(trace_id=traceparent[3:35], span_id=traceparent[36:52])
    return traceparent
