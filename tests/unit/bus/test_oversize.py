"""payload_too_large: what the bus answers for a message over the limit, either way, and how a
connection sends large messages (whole, through the carrier's write_large) or refuses them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from supervisor.engine.bus import Bus
from supervisor.engine.connection import LARGE, Connection
from supervisor.engine.oversize import OversizeGuard
from supervisor.engine.runner import build_bus
from tests.unit.bus.test_routing import Clock, Worker
from transport import codec
from transport import messages as m
from transport.oversize import MAX_MESSAGE, Oversized

MIB = 1024 * 1024


@pytest.fixture
def bus() -> Bus:
    return build_bus(clock=Clock(), invocation_deadline=60.0)


def refused(msg: dict[str, Any], size: int) -> Oversized:
    raw = orjson.dumps(msg)
    return Oversized(size, MAX_MESSAGE, raw[:40], raw[-200:])


def test_a_call_too_big_for_the_callee_fails_for_its_caller(bus: Bus) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    inv = b.call("f", {"x": 1})
    (forwarded,) = a.of(m.InvokeFunction)
    OversizeGuard(bus).outbound(a.conn, forwarded, 70 * MIB)
    (res,) = b.of(m.InvocationResult)
    assert (res.invocation_id, res.error.code) == (inv, "payload_too_large")
    assert res.error.message.startswith(
        f"invokefunction for f is {70 * MIB} bytes; the limit is {MAX_MESSAGE} bytes per message"
    )
    assert len(bus.table) == 0 and a.conn.calls_in == set()


def test_a_result_too_big_for_the_caller_is_replaced_by_an_error(bus: Bus) -> None:
    b = Worker(bus, "b")
    big = m.InvocationResult("id-1", "f", "x", None, "tp")
    OversizeGuard(bus).outbound(b.conn, big, 65 * MIB)
    (res,) = b.of(m.InvocationResult)
    assert (res.invocation_id, res.function_id, res.result) == ("id-1", "f", None)
    assert res.error.code == "payload_too_large" and res.traceparent == "tp"
    assert str(65 * MIB) in res.error.message


def test_an_oversized_call_from_a_worker_is_answered_to_it(bus: Bus) -> None:
    b = Worker(bus, "b")
    inv = "0b4c4d6e-0000-4000-8000-000000000001"
    msg = {"type": "invokefunction", "function_id": "f", "data": "…", "invocation_id": inv}
    OversizeGuard(bus).inbound(b.conn, refused(msg, 65 * MIB))
    (res,) = b.of(m.InvocationResult)
    assert (res.invocation_id, res.function_id, res.error.code) == (inv, "f", "payload_too_large")
    assert res.error.message.startswith(f"invokefunction for f is {65 * MIB} bytes")


def test_an_oversized_result_from_the_callee_fails_the_call(bus: Bus) -> None:
    a, b, c = Worker(bus, "a"), Worker(bus, "b"), Worker(bus, "c")
    a.register("f")
    inv = b.call("f", {})
    (fwd,) = a.of(m.InvokeFunction)
    msg = {"type": "invocationresult", "invocation_id": fwd.invocation_id, "function_id": "f"}
    guard = OversizeGuard(bus)
    guard.inbound(c.conn, refused({**msg, "result": "…"}, 66 * MIB))  # not the callee: ignored
    assert b.of(m.InvocationResult) == [] and len(bus.table) == 1
    guard.inbound(a.conn, refused({**msg, "result": "…"}, 66 * MIB))
    (res,) = b.of(m.InvocationResult)
    assert (res.invocation_id, res.error.code) == (inv, "payload_too_large")
    assert "invocationresult of f" in res.error.message


def test_an_oversized_message_without_an_id_is_only_logged(bus: Bus) -> None:
    b = Worker(bus, "b")
    OversizeGuard(bus).inbound(b.conn, refused({"type": "registerfunction", "id": "f"}, 70 * MIB))
    assert b.outbox() == []


# -- the connection's send path ---------------------------------------------------------------


class FakeCarrier:
    kind = "test"
    peer = None

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.large: list[bytes] = []

    @staticmethod
    def frame(payload: bytes) -> bytes:
        return b"<" + payload + b">"

    def try_write(self, data: bytes) -> bytes | None:
        self.raw.append(data)
        return b""

    async def write_raw(self, data: bytes) -> None:
        self.raw.append(data)

    async def write_large(self, payload: bytes) -> None:
        self.large.append(payload)


async def drain(conn: Connection, carrier: FakeCarrier) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.write_loop, carrier)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


def result_of(size: int) -> m.InvocationResult:
    return m.InvocationResult("id-1", "f", "r" * size)


async def test_small_messages_are_written_directly_large_ones_whole_by_the_writer() -> None:
    conn, carrier = Connection(kind="test"), FakeCarrier()
    conn.use_carrier(carrier)
    assert conn.send(m.Pong())
    assert carrier.raw == [b'<{"type":"pong"}>']
    big = result_of(LARGE + 10)
    assert conn.send(big)
    assert conn.send(m.Pong())  # queued behind the large one: order is kept
    await drain(conn, carrier)
    assert carrier.large == [codec.encode(big)]
    assert carrier.raw[1:] == [b'<{"type":"pong"}>']


async def test_a_message_over_the_connection_limit_is_handed_to_on_oversized() -> None:
    conn, carrier = Connection(kind="test"), FakeCarrier()
    conn.use_carrier(carrier)
    conn.max_message = 2 * MIB
    seen: list[tuple[str, int]] = []
    conn.on_oversized = lambda c, msg, size: seen.append((msg.TAG, size))
    big = result_of(3 * MIB)
    assert conn.send(big) is False
    assert conn.send(big, batch=True)  # queued unencoded: the writer finds out
    await drain(conn, carrier)
    size = len(codec.encode(big))
    assert seen == [("invocationresult", size), ("invocationresult", size)]
    assert carrier.raw == [] and carrier.large == []
