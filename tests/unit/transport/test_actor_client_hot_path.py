"""The actor client's task-free forms (the queue's per-job path): inline functions answering at
once or later, ``call`` with its callback and its one timer, on virtual time over an in-memory
stream (the bus side is a plain StreamCarrier reading what the client sends)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from transport import codec
from transport import messages as m
from transport.carrier import StreamCarrier
from transport.client import DEFERRED, BusClient, FunctionError, InvocationContext
from transport.oversize import Oversized
from transport.tracecontext import current


class Bus:
    """The far end of the client's link: sends it messages, reads what it sends back."""

    def __init__(self, carrier: StreamCarrier) -> None:
        self.carrier = carrier

    async def send(self, msg: Any) -> None:
        await self.carrier.send_many([codec.encode(msg)])

    async def next(self, tag: type, timeout: float = 5.0) -> Any:
        with trio.fail_after(timeout):
            while True:
                raw = await self.carrier.receive()
                assert not isinstance(raw, Oversized)
                msg = codec.decode(raw)
                if isinstance(msg, m.InvokeFunction) and msg.function_id.startswith("engine::"):
                    continue  # the client's announcement
                if isinstance(msg, tag):
                    return msg


@asynccontextmanager
async def linked(client_setup: Any = None) -> AsyncIterator[tuple[BusClient, Bus]]:
    ours, theirs = trio.testing.memory_stream_pair()
    client = BusClient(StreamCarrier(ours), name="t")
    if client_setup is not None:
        client_setup(client)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client, Bus(StreamCarrier(theirs))
        nursery.cancel_scope.cancel()


async def test_an_inline_function_answers_from_the_reader_at_once_or_when_it_replies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deferred: list[InvocationContext] = []

    def double(data: Any, ctx: InvocationContext) -> Any:
        if data == "later":
            deferred.append(ctx)
            return DEFERRED
        if data == "bad":
            raise FunctionError("nope", "bad input")
        return data * 2

    def setup(client: BusClient) -> None:
        client.register_inline("t::double", double)

    async with linked(setup) as (client, bus):
        registered = await bus.next(m.RegisterFunction)
        assert registered.id == "t::double"
        ids = [str(uuid.uuid4()) for _ in range(3)]
        await bus.send(m.InvokeFunction("t::double", 21, ids[0], traceparent="tp"))
        answer = await bus.next(m.InvocationResult)
        assert (answer.invocation_id, answer.result, answer.error) == (ids[0], 42, None)
        assert answer.traceparent == "tp"
        await bus.send(m.InvokeFunction("t::double", "bad", ids[1]))
        answer = await bus.next(m.InvocationResult)
        assert answer.invocation_id == ids[1] and answer.error.code == "nope"
        await bus.send(m.InvokeFunction("t::double", "later", ids[2]))
        with trio.move_on_after(1):
            await bus.next(m.InvocationResult)
            pytest.fail("a deferred invocation answered before reply()")
        client.reply(deferred[0], {"done": True})
        answer = await bus.next(m.InvocationResult)
        assert (answer.invocation_id, answer.result) == (ids[2], {"done": True})


async def test_call_hands_the_outcome_to_its_callback_once_and_times_out_on_one_timer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outcomes: dict[str, list[tuple[Any, str | None]]] = {"ok": [], "err": [], "slow": []}
    timed_out = trio.Event()

    def collect(key: str) -> Any:
        def done(result: Any, error: FunctionError | None) -> None:
            outcomes[key].append((result, None if error is None else error.code))
            if key == "slow":
                timed_out.set()

        return done

    async with linked() as (client, bus):
        client.call("f::ok", 1, collect("ok"), timeout=10)
        client.call("f::err", 2, collect("err"), timeout=10)
        client.call("f::slow", 3, collect("slow"), timeout=30)
        sent = {}
        for _ in range(3):
            call = await bus.next(m.InvokeFunction)
            sent[call.function_id] = call.invocation_id
        await bus.send(m.InvocationResult(sent["f::ok"], "f::ok", "fine"))
        await bus.send(m.InvocationResult(sent["f::ok"], "f::ok", "again"))  # ignored
        await bus.send(
            m.InvocationResult(sent["f::err"], "f::err", None, m.ErrorBody("boom", "it broke"))
        )
        started = trio.current_time()
        await timed_out.wait()
        assert trio.current_time() - started == pytest.approx(30, abs=0.01)
        await bus.send(m.InvocationResult(sent["f::slow"], "f::slow", "too late"))  # ignored
        await trio.sleep(1)
    assert outcomes == {
        "ok": [("fine", None)],
        "err": [(None, "boom")],
        "slow": [(None, "TIMEOUT")],
    }


async def test_answered_calls_leave_no_deadlines_piling_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    answered = 0

    def done(result: Any, error: FunctionError | None) -> None:
        nonlocal answered
        answered += 1

    async with linked() as (client, bus):
        for _ in range(5_000):
            client.call("f", None, done, timeout=300)
            call = await bus.next(m.InvokeFunction)
            await bus.send(m.InvocationResult(call.invocation_id, "f", None))
            await trio.testing.wait_all_tasks_blocked()
        assert answered == 5_000
        assert len(client._deadlines) <= 2 * 1024 + 2  # compacted, not 5,000 entries


def test_call_ids_are_canonical_uuid4_strings_and_never_repeat() -> None:
    from transport.client import _InvocationIds
    from transport.codec import _CANONICAL_UUID

    ids = _InvocationIds()
    seen = [ids.next() for _ in range(10_000)]
    assert len(set(seen)) == len(seen)
    assert all(_CANONICAL_UUID.fullmatch(i) and uuid.UUID(i).version == 4 for i in seen)
    assert _InvocationIds().next()[:24] != seen[0][:24]  # each client its own random prefix


async def test_on_a_socket_a_burst_is_answered_from_the_reader_in_order() -> None:
    """A local link (a real socketpair): the answers to frames that arrived together are
    written by the reader at the end of the burst, in order, before and after a handler that
    answers from a task (the writer's path)."""
    a, b = trio.socket.socketpair()
    ours, theirs = trio.SocketStream(a), trio.SocketStream(b)

    def echo(data: Any, ctx: InvocationContext) -> Any:
        return data

    async def slow(data: Any, ctx: InvocationContext) -> Any:
        await trio.sleep(0.01)
        return data

    client = BusClient(StreamCarrier(ours), name="t")
    assert client._direct
    client.register_inline("t::echo", echo)
    client.register_function("t::slow", slow)
    bus = Bus(StreamCarrier(theirs))
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        ids = [str(uuid.uuid4()) for _ in range(200)]
        burst = [m.InvokeFunction("t::echo", i, ids[i]) for i in range(100)]
        burst.append(m.InvokeFunction("t::slow", "slow", ids[100]))
        burst += [m.InvokeFunction("t::echo", i, ids[i]) for i in range(101, 200)]
        await bus.carrier.send_many([codec.encode(msg) for msg in burst])
        answers = [await bus.next(m.InvocationResult) for _ in range(200)]
        nursery.cancel_scope.cancel()
    fast = [a.result for a in answers if a.result != "slow"]
    assert fast == [i for i in range(200) if i != 100]
    assert answers[-1].result == "slow"
    assert [a.invocation_id for a in answers if a.result != "slow"] == ids[:100] + ids[101:]


def test_an_inline_handler_runs_in_the_trace_context_of_its_call() -> None:
    """An inline handler has no task of its own, so the client sets the call's trace context
    around it, as a handler task has it (what it logs or fires carries it), and leaves the
    reader's as it was."""
    client = BusClient(None, name="t")  # type: ignore[arg-type]
    seen: list[Any] = []

    def handler(data: Any, ctx: InvocationContext) -> Any:
        seen.append(current.get())
        return DEFERRED

    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client._run_inline(handler, m.InvokeFunction("f", {}, "i1", traceparent=tp))
    client._run_inline(handler, m.InvokeFunction("f", {}, "i2"))
    assert seen == [(tp, None), (None, None)]
    assert current.get() == (None, None)
