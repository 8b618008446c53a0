"""SDK telemetry frames → fire-and-forget ``iii-observability::ingest`` calls, bounded.

The forwarder drives the real synchronous bus; the observability actor is a test connection
whose outbox we read.
"""

from __future__ import annotations

import orjson
import pytest

from manifests.blocks.observability import INGEST_FUNCTION_ID
from supervisor.engine.bus import Bus
from supervisor.engine.runner import build_bus
from supervisor.engine.telemetry import TelemetryForwarder
from tests.unit.bus.test_routing import Clock, Worker
from transport import messages as m

SPANS = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": []}]}


@pytest.fixture
def bus() -> Bus:
    return build_bus(clock=Clock(), invocation_deadline=60.0)


def frame(prefix: bytes, body: object = SPANS) -> bytes:
    return prefix + orjson.dumps(body)


def test_frames_are_dropped_cheaply_while_nobody_ingests(bus: Bus) -> None:
    fwd = TelemetryForwarder(bus)
    assert fwd.offer(frame(b"OTLP"), "w1") is False
    assert (fwd.dropped_unregistered, fwd.forwarded, len(bus.table)) == (1, 0, 0)


def test_each_prefix_becomes_one_ingest_call_with_the_agreed_shape(bus: Bus) -> None:
    actor = Worker(bus, "iii-observability")
    actor.register(INGEST_FUNCTION_ID)
    fwd = TelemetryForwarder(bus)
    for prefix in (b"OTLP", b"MTRC", b"LOGS"):
        assert fwd.offer(frame(prefix), "w1") is True
    calls = actor.of(m.InvokeFunction)
    assert [c.function_id for c in calls] == [INGEST_FUNCTION_ID] * 3
    assert [c.data for c in calls] == [
        {"kind": k, "body": SPANS, "source": "worker", "worker_id": "w1"}
        for k in ("OTLP", "MTRC", "LOGS")
    ]
    assert fwd.in_flight == 3
    for c in calls:
        actor.send(m.InvocationResult(c.invocation_id, c.function_id, None))
    assert fwd.in_flight == 0 and len(bus.table) == 0


def test_a_flood_beyond_the_bound_is_dropped_and_counted(bus: Bus) -> None:
    actor = Worker(bus, "iii-observability")
    actor.register(INGEST_FUNCTION_ID)
    fwd = TelemetryForwarder(bus, max_in_flight=4)
    sent = [fwd.offer(frame(b"OTLP"), None) for _ in range(10)]
    assert sent == [True] * 4 + [False] * 6
    assert (fwd.in_flight, fwd.dropped_busy, len(bus.table)) == (4, 6, 4)
    first = actor.of(m.InvokeFunction)[0]
    actor.send(m.InvocationResult(first.invocation_id, first.function_id, None))
    assert fwd.offer(frame(b"OTLP"), None) is True  # a slot freed: forwarding resumes


def test_bad_bodies_are_dropped_and_counted(bus: Bus) -> None:
    actor = Worker(bus, "iii-observability")
    actor.register(INGEST_FUNCTION_ID)
    fwd = TelemetryForwarder(bus)
    assert fwd.offer(b"OTLP{not json", None) is False
    assert fwd.offer(frame(b"LOGS", [1, 2]), None) is False
    assert fwd.offer(frame(b"XXXX"), None) is False
    assert (fwd.dropped_invalid, fwd.forwarded) == (3, 0)
    assert actor.of(m.InvokeFunction) == []


def test_the_actor_leaving_fails_its_in_flight_ingests_and_frees_the_slots(bus: Bus) -> None:
    actor = Worker(bus, "iii-observability")
    actor.register(INGEST_FUNCTION_ID)
    fwd = TelemetryForwarder(bus, max_in_flight=2)
    fwd.offer(frame(b"OTLP"), None)
    fwd.offer(frame(b"OTLP"), None)
    actor.leave()
    assert fwd.in_flight == 0
    assert fwd.offer(frame(b"OTLP"), None) is False
    assert fwd.dropped_unregistered == 1


def test_a_builtin_a_worker_registered_over_comes_back_when_the_worker_goes(bus: Bus) -> None:
    """engine::log::* are the bus's until the observability actor registers its own, and the
    bus's again while the actor is gone (a restart), so SDK logging never meets a missing id."""
    key = ("default", "engine::log::info")
    builtin = bus.functions.get(key)
    assert builtin is not None and builtin.builtin is not None
    actor = Worker(bus, "iii-observability", kind="local")
    actor.register("engine::log::info")
    actor.register("engine::log::info")  # registered again by the same worker: still shadowed
    entry = bus.functions.get(key)
    assert entry is not None and entry.owner is actor.conn
    caller = Worker(bus, "caller")
    inv = caller.call("engine::log::info", {"message": "to the actor"})
    assert [c.function_id for c in actor.of(m.InvokeFunction) if c.invocation_id == inv] == [
        "engine::log::info"
    ]
    actor.leave()
    assert bus.functions.get(key) is builtin
    inv = caller.call("engine::log::info", {"message": "to the bus"})
    (res,) = [r for r in caller.of(m.InvocationResult) if r.invocation_id == inv]
    assert res.error is None
