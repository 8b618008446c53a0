"""traceparent parsing (W3C trace context level 1) and the per-task call context."""

from __future__ import annotations

import pytest

from transport.tracecontext import (
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    trace_fields,
)

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_parses() -> None:
    assert parse_traceparent(TP) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    # A later version may append fields after a dash.
    assert parse_traceparent("01" + TP[2:] + "-extra") is not None


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        "tp",
        TP[:-1],
        TP + "-extra",  # version 00 has exactly four fields
        "ff" + TP[2:],  # the forbidden version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # not hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        TP.upper(),  # upper-case hex is not valid
        " " + TP,
    ],
)
def test_anything_else_is_treated_as_absent(value: object) -> None:
    assert parse_traceparent(value) is None


def test_new_ids_make_a_valid_traceparent() -> None:
    trace_id, span_id = new_trace_id(), new_span_id()
    assert (len(trace_id), len(span_id)) == (32, 16)
    assert parse_traceparent(format_traceparent(trace_id, span_id)) == (trace_id, span_id, "01")
    assert new_trace_id() != trace_id


def test_trace_fields_for_log_lines() -> None:
    assert trace_fields(TP) == {"trace_id": TP[3:35], "span_id": TP[36:52]}
    assert trace_fields(None) == {} and trace_fields("junk") == {}


def test_bulk_made_traceparents_are_valid_sampled_and_distinct() -> None:
    from transport.tracecontext import new_span_ids, new_traceparents

    tps = new_traceparents(3000)
    assert len(tps) == 3000 and len(set(tps)) == 3000
    for tp in tps:
        parsed = parse_traceparent(tp)
        assert parsed is not None and parsed[2] == "01" and len(tp) == 55
    assert len({tp[3:35] for tp in tps}) == 3000  # trace ids distinct too
    spans = new_span_ids(3000)
    assert len(set(spans)) == 3000
    assert all(len(s) == 16 and int(s, 16) > 0 and s == s.lower() for s in spans)


def test_a_draw_with_an_all_zero_id_in_it_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from transport import tracecontext

    real = os.urandom
    draws: list[int] = []

    def rigged(size: int) -> bytes:
        draws.append(size)
        return bytes(size) if len(draws) == 1 else real(size)  # the first draw: all zeros

    monkeypatch.setattr(tracecontext.os, "urandom", rigged)
    (tp,) = tracecontext.new_traceparents(1)
    assert parse_traceparent(tp) is not None and len(draws) == 2
    draws.clear()
    (span,) = tracecontext.new_span_ids(1)
    assert int(span, 16) > 0 and len(draws) == 2
