"""The span hook: traces continued or started, the callee's traceparent a child of the engine
span, spans kept only while iii-observability::ingest is registered, batched OTLP/JSON."""

from __future__ import annotations

from typing import Any

from manifests.blocks.observability import INGEST_FUNCTION_ID
from supervisor.engine.bus import Bus
from supervisor.engine.runner import build_bus
from supervisor.engine.tracing import Tracing
from tests.unit.bus.test_routing import Clock, Worker
from transport import messages as m
from transport.tracecontext import parse_traceparent

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def traced(batch_size: int = 256) -> tuple[Bus, Clock, Tracing]:
    clock = Clock()
    bus = build_bus(clock=clock, invocation_deadline=60.0, tracing=False)
    tracing = bus.tracing = Tracing(bus, batch_size=batch_size)
    bus.hooks.add(tracing)
    return bus, clock, tracing


def answer(worker: Worker, err: m.ErrorBody | None = None) -> m.InvokeFunction:
    (msg,) = worker.of(m.InvokeFunction)
    worker.send(m.InvocationResult(msg.invocation_id, msg.function_id, {"ok": 1}, err))
    return msg


def test_an_incoming_traceparent_is_continued_with_the_engine_span_as_parent() -> None:
    bus, clock, _ = traced()
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    b.call("f", {}, traceparent=TP, baggage="tenant=acme")
    msg = answer(a)
    parsed = parse_traceparent(msg.traceparent)
    assert parsed is not None
    trace_id, span_id, flags = parsed
    assert (trace_id, flags) == ("4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert span_id != "00f067aa0ba902b7"
    assert msg.baggage == "tenant=acme"  # passed on as it came


def test_a_call_without_a_traceparent_starts_a_trace() -> None:
    bus, clock, _ = traced()
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    b.call("f", {})
    first = answer(a)
    b.call("f", {}, traceparent="garbage")  # malformed: treated as absent
    second = answer(a)
    p1, p2 = parse_traceparent(first.traceparent), parse_traceparent(second.traceparent)
    assert p1 is not None and p2 is not None and p1[0] != p2[0]


def test_no_tracing_hook_passes_the_context_verbatim() -> None:
    bus = build_bus(clock=Clock(), tracing=False)
    assert bus.tracing is None
    assert not any(isinstance(getattr(h, "__self__", None), Tracing) for h in bus.hooks.dispatch)
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    b.call("f", {}, traceparent="opaque")
    assert answer(a).traceparent == "opaque"


def test_without_the_ingest_function_nothing_is_kept() -> None:
    bus, clock, tracing = traced()
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    for _ in range(3):
        b.call("f", {}, traceparent=TP)
        answer(a)
    assert tracing.batch.rows == [] and tracing.flushes == 0


def test_spans_are_batched_to_the_ingest_function_in_the_compact_form() -> None:
    bus, clock, tracing = traced(batch_size=3)
    sink, a, b = Worker(bus, "obs"), Worker(bus, "a"), Worker(bus, "b")
    sink.register(INGEST_FUNCTION_ID)
    a.register("f")
    for i in range(3):
        b.call("f", {}, traceparent=TP)
        clock.now += 0.010
        answer(a, m.ErrorBody("invocation_failed", "boom") if i == 2 else None)
    assert tracing.batch.rows == [] and tracing.flushes == 1
    (ingest,) = sink.of(m.InvokeFunction)
    assert ingest.function_id == INGEST_FUNCTION_ID
    data: dict[str, Any] = ingest.data
    assert (data["kind"], data["source"], data["worker_id"]) == ("SPANS", "engine", None)
    body = data["body"]
    assert (body["service_name"], body["scope"]) == ("iii", "iii-supervisor")
    # One shape for the three spans: same function, namespace, callee and caller.
    assert body["shapes"] == [
        [
            "call f",
            [
                ["iii.function.id", "f"],
                ["iii.namespace", "default"],
                ["iii.worker.id", a.conn.worker_id],
                ["iii.caller.worker_id", b.conn.worker_id],
            ],
        ]
    ]
    rows = body["spans"]
    assert [len(r) for r in rows] == [5, 5, 7]
    for tp, parent, shape, start, end, *_ in rows:
        assert tp[3:35] == "4bf92f3577b34da6a3ce929d0e0e4736" and tp != TP
        assert parent == "00f067aa0ba902b7" and shape == 0
        assert abs(end - start - 10_000_000) < 1000
    assert rows[2][5:] == ["invocation_failed", "boom"]
    # The flush's own call to the ingest function makes no span.
    sink.send(m.InvocationResult(ingest.invocation_id, INGEST_FUNCTION_ID, None))
    assert tracing.batch.rows == []


def test_spans_kept_before_the_ingest_function_left_are_dropped() -> None:
    bus, clock, tracing = traced()
    sink, a, b = Worker(bus, "obs"), Worker(bus, "a"), Worker(bus, "b")
    sink.register(INGEST_FUNCTION_ID)
    a.register("f")
    b.call("f", {})
    answer(a)
    assert len(tracing.batch.rows) == 1
    sink.leave()
    tracing.flush()
    assert tracing.flushes == 0 and tracing.batch.rows == []


def test_batches_beyond_the_in_flight_bound_are_dropped_and_counted() -> None:
    bus, clock, tracing = traced(batch_size=1)
    tracing.max_in_flight = 2
    sink, a, b = Worker(bus, "obs"), Worker(bus, "a"), Worker(bus, "b")
    sink.register(INGEST_FUNCTION_ID)
    a.register("f")
    for _ in range(4):  # the sink answers none of them
        b.call("f", {})
        answer(a)
    assert (tracing.flushes, tracing.in_flight, tracing.dropped_spans) == (2, 2, 2)
    first, second = sink.of(m.InvokeFunction)
    sink.send(m.InvocationResult(first.invocation_id, INGEST_FUNCTION_ID, None))
    b.call("f", {})
    answer(a)  # room again: sent
    assert (tracing.flushes, tracing.in_flight, tracing.dropped_spans) == (3, 2, 2)
    assert len(sink.of(m.InvokeFunction)) == 1


def test_a_call_without_context_from_a_worker_serving_one_call_joins_that_call() -> None:
    bus, clock, _ = traced()
    a, b, c = Worker(bus, "a"), Worker(bus, "b"), Worker(bus, "c")
    a.register("outer")
    c.register("inner")
    b.call("outer", {}, traceparent=TP)
    (outer,) = a.of(m.InvokeFunction)
    a.call("inner", {})  # no traceparent: as an SDK 0.23 sync handler calls
    (inner,) = c.of(m.InvokeFunction)
    p_outer, p_inner = parse_traceparent(outer.traceparent), parse_traceparent(inner.traceparent)
    assert p_outer is not None and p_inner is not None
    assert p_inner[0] == p_outer[0] == TP[3:35]
    assert bus.table.get(inner.invocation_id).parent_span_id == p_outer[1]  # type: ignore[union-attr]


def test_with_several_calls_in_flight_to_the_caller_nothing_is_guessed() -> None:
    bus, clock, _ = traced()
    a, b, c = Worker(bus, "a"), Worker(bus, "b"), Worker(bus, "c")
    a.register("outer")
    c.register("inner")
    b.call("outer", {}, traceparent=TP)
    b.call("outer", {}, traceparent=TP)
    a.outbox()
    a.call("inner", {})
    (inner,) = c.of(m.InvokeFunction)
    parsed = parse_traceparent(inner.traceparent)
    assert parsed is not None and parsed[0] != TP[3:35]


def test_the_iii_observability_entry_switches_the_hooks(tmp_path: Any) -> None:
    from supervisor.config.loader import load
    from supervisor.engine.runner import observability_switches

    path = tmp_path / "config.yaml"
    cases = {
        "workers: []\n": (True, True),  # the injected default entry: both on
        "workers:\n  - name: iii-observability\n    config:\n      enabled: false\n": (
            False,
            True,
        ),
        "workers:\n  - name: iii-observability\n    config:\n      metrics_enabled: false\n": (
            True,
            False,
        ),
    }
    for text, expected in cases.items():
        path.write_text(text)
        assert observability_switches(load(path).engine) == expected, text


def test_live_spans_announce_a_long_call_once_and_its_end_replaces_it() -> None:
    clock = Clock()
    bus = build_bus(clock=clock, invocation_deadline=60.0, tracing=False)
    tracing = bus.tracing = Tracing(bus, live=True, flush_interval=0.2)
    bus.hooks.add(tracing)
    sink, a, b = Worker(bus, "obs"), Worker(bus, "a"), Worker(bus, "b")
    sink.register(INGEST_FUNCTION_ID)
    a.register("slow")
    a.register("quick")
    b.call("slow", {}, traceparent=TP)
    (slow,) = a.of(m.InvokeFunction)
    clock.now += 0.1
    b.call("quick", {})
    (quick,) = a.of(m.InvokeFunction)
    tracing.flush()  # neither is old enough yet
    assert sink.of(m.InvokeFunction) == []
    clock.now += 0.15
    tracing.flush()
    tracing.flush()  # announced once
    (live,) = sink.of(m.InvokeFunction)
    (row,) = live.data["body"]["spans"]
    assert row[0] == slow.traceparent and row[4] == 0  # a pending span: no end yet
    a.send(m.InvocationResult(slow.invocation_id, "slow", {"ok": 1}))
    a.send(m.InvocationResult(quick.invocation_id, "quick", {"ok": 1}))
    tracing.flush()
    (done,) = sink.of(m.InvokeFunction)
    rows = done.data["body"]["spans"]
    assert sorted(r[0] == slow.traceparent and r[4] > 0 for r in rows) == [False, True]
    assert tracing._announced == set()


def test_live_spans_follow_the_field_then_the_env_and_are_opt_in() -> None:
    from supervisor.engine.tracing import live_spans_of

    assert not live_spans_of({"exporter": "memory"}, env={})
    assert live_spans_of({"exporter": "memory", "live_spans": True}, env={})
    assert not live_spans_of({"live_spans": False}, env={"OTEL_LIVE_SPANS": "1"})
    assert live_spans_of({"exporter": "both"}, env={"OTEL_LIVE_SPANS": "1"})
    assert not live_spans_of({}, env={"OTEL_LIVE_SPANS": "false"})


def test_live_spans_schedule_a_flush_for_a_call_that_starts_a_trace() -> None:
    clock = Clock()
    bus = build_bus(clock=clock, invocation_deadline=60.0, tracing=False)
    spawned: list[Any] = []
    bus.spawn = spawned.append
    tracing = bus.tracing = Tracing(bus, live=True, flush_interval=0.2)
    bus.hooks.add(tracing)
    sink, a, b = Worker(bus, "obs"), Worker(bus, "a"), Worker(bus, "b")
    sink.register(INGEST_FUNCTION_ID)
    a.register("slow")
    b.call("slow", {})  # no traceparent: a new trace
    (call,) = a.of(m.InvokeFunction)
    assert parse_traceparent(call.traceparent) is not None
    assert spawned == [tracing._flush_later]  # so it is announced even if nothing else ends
