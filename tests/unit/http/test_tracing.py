"""iii-http's trace context per request: a valid traceparent header continued, else a new trace."""

from __future__ import annotations

from actors.http.tracing import request_trace
from transport.tracecontext import parse_traceparent

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_an_incoming_traceparent_header_is_continued_with_its_baggage() -> None:
    headers = [(b"Host", b"x"), (b"TraceParent", TP.encode()), (b"baggage", b"tenant=acme")]
    assert request_trace(headers) == (TP, "tenant=acme")


def test_no_or_a_bad_header_starts_a_new_trace() -> None:
    for headers in ([], [(b"traceparent", b"00-zz-zz-01")]):
        traceparent, baggage = request_trace(headers)
        assert parse_traceparent(traceparent) is not None and baggage is None
    assert request_trace([])[0] != request_trace([])[0]
