"""The engine's part of HTTP-invoked functions (PROTOCOL.md §6.3 step 7, §10;
supervisor/engine/external.py), driven by messages with no sockets: a stand-in for the
iii-http-functions actor answers the engine's validation and call requests by hand."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from manifests.blocks.http_functions import INVOKE_FUNCTION_ID, REGISTER_FUNCTION_ID
from supervisor.engine.bus import Bus
from supervisor.engine.connection import Connection
from supervisor.engine.runner import build_bus
from tests.unit.bus.test_routing import Clock, Worker
from transport import messages as m

INVOCATION = {"url": "https://pay.example/charge", "auth": {"type": "bearer", "token_key": "T"}}


class Actor(Worker):
    """The actor's connection: a local link that registers the two functions."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.conn = Connection(kind="local")
        bus.attach(self.conn)
        self.outbox()
        self.announce("iii-http-functions")

    def up(self) -> None:
        self.register(REGISTER_FUNCTION_ID)
        self.register(INVOKE_FUNCTION_ID)

    def requests(self) -> list[m.InvokeFunction]:
        return self.of(m.InvokeFunction)

    def answer(self, request: m.InvokeFunction, result: Any = None, **error: str) -> None:
        err = m.ErrorBody(**error) if error else None
        assert request.invocation_id is not None
        self.send(m.InvocationResult(request.invocation_id, request.function_id, result, err))


@pytest.fixture
def bus() -> Bus:
    return build_bus(clock=Clock(), invocation_deadline=60.0)


def ids(bus: Bus) -> set[str]:
    return {fid for _, fid in bus.functions}


def test_a_registration_is_validated_by_the_actor_then_owned_by_its_worker(bus: Bus) -> None:
    actor = Actor(bus)
    actor.up()
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION, description="Charge")

    (request,) = actor.requests()
    assert request.function_id == REGISTER_FUNCTION_ID
    assert request.data == {
        "function_id": "billing::charge",
        "namespace": "default",
        "invocation": INVOCATION,
    }
    assert "billing::charge" in ids(bus)  # stored at once: calls wait for the answer
    actor.answer(request, {"function_id": "billing::charge"})

    entry = bus.functions[("default", "billing::charge")]
    assert entry.owners == [owner.conn] and entry.description == "Charge"
    assert entry.pick() is None  # the engine runs it: never sent to the owner
    assert ("default", "billing::charge") in owner.conn.functions
    assert owner.of(m.InvokeFunction) == []


def test_a_refusal_drops_the_registration_and_tells_the_worker_nothing(bus: Bus) -> None:
    actor = Actor(bus)
    actor.up()
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation={"url": "http://evil.example/"})
    (request,) = actor.requests()
    actor.answer(request, code="url_validation_failed", message="URL not in allowlist")
    assert "billing::charge" not in ids(bus)
    assert owner.outbox() == []
    # the id is free again
    other = Worker(bus, "other")
    other.register("billing::charge")
    assert bus.functions[("default", "billing::charge")].owners == [other.conn]


def test_without_the_actor_configured_the_registration_is_dropped(bus: Bus) -> None:
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION)
    assert "billing::charge" not in ids(bus)
    assert not bus.registrar.external.pending(("default", "billing::charge"))


def test_with_the_actor_configured_a_registration_waits_until_it_is_up(bus: Bus) -> None:
    bus.registrar.external.expected = True
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION)
    actor = Actor(bus)
    assert actor.requests() == []
    actor.up()
    (request,) = actor.requests()
    actor.answer(request, {})
    assert bus.functions[("default", "billing::charge")].owners == [owner.conn]


def test_an_actor_that_leaves_mid_validation_is_asked_again_by_its_successor(bus: Bus) -> None:
    bus.registrar.external.expected = True
    first = Actor(bus)
    first.up()
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION)
    assert len(first.requests()) == 1
    first.leave()
    second = Actor(bus)
    second.up()
    (request,) = second.requests()
    second.answer(request, {})
    assert bus.functions[("default", "billing::charge")].owners == [owner.conn]


def test_the_registration_holds_the_lease_while_the_actor_answers(bus: Bus) -> None:
    actor = Actor(bus)
    actor.up()
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION)
    rival = Worker(bus, "rival")
    rival.register("billing::charge")
    (rejected,) = rival.of(m.RegistrationRejected)
    assert rejected.code == "FUNCTION_NAMESPACE_CONFLICT"
    assert rejected.owner_worker_id == owner.conn.worker_id
    (request,) = actor.requests()
    actor.answer(request, {})
    assert bus.functions[("default", "billing::charge")].owners == [owner.conn]


def test_unregistering_or_leaving_while_the_actor_answers_discards_its_yes(bus: Bus) -> None:
    actor = Actor(bus)
    actor.up()
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION)
    owner.send(m.UnregisterFunction(id="billing::charge"))
    gone = Worker(bus, "gone")
    gone.register("billing::refund", invocation=INVOCATION)
    gone.leave()
    for request in actor.requests():
        actor.answer(request, {})
    assert not {"billing::charge", "billing::refund"} & ids(bus)


def test_a_later_local_registration_by_the_same_worker_wins(bus: Bus) -> None:
    actor = Actor(bus)
    actor.up()
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION)
    owner.register("billing::charge")  # now a handler of its own
    (request,) = actor.requests()
    actor.answer(request, {})
    assert bus.functions[("default", "billing::charge")].pick() is owner.conn


def test_unregister_and_departure_remove_a_registered_external_function(bus: Bus) -> None:
    actor = Actor(bus)
    actor.up()
    owner = Worker(bus, "billing")
    for fid in ("billing::a", "billing::b"):
        owner.register(fid, invocation=INVOCATION)
    for request in actor.requests():
        actor.answer(request, {})
    assert {"billing::a", "billing::b"} <= ids(bus)
    owner.send(m.UnregisterFunction(id="billing::a"))
    assert "billing::a" not in ids(bus)
    owner.leave()
    assert "billing::b" not in ids(bus)


async def test_a_call_goes_to_the_actor_with_the_invocation_and_its_answer_comes_back(
    bus: Bus,
) -> None:
    async with trio.open_nursery() as nursery:
        bus.spawn = nursery.start_soon
        actor = Actor(bus)
        actor.up()
        owner = Worker(bus, "billing")
        owner.register("billing::charge", invocation=INVOCATION)
        actor.answer(actor.requests()[0], {})
        caller = Worker(bus, "shop")

        inv = caller.call("billing::charge", {"sku": "x"})
        await trio.testing.wait_all_tasks_blocked()
        (request,) = actor.requests()
        assert request.function_id == INVOKE_FUNCTION_ID
        assert request.data == {
            "function_id": "billing::charge",
            "namespace": "default",
            "invocation": INVOCATION,
            "data": {"sku": "x", "_caller_worker_id": caller.conn.worker_id},
        }
        actor.answer(request, {"charged": True})
        await trio.testing.wait_all_tasks_blocked()
        (reply,) = caller.of(m.InvocationResult)
        assert (reply.invocation_id, reply.function_id) == (inv, "billing::charge")
        assert reply.result == {"charged": True} and reply.error is None

        caller.call("billing::charge", ["not", "an", "object"])  # any JSON: no caller key
        await trio.testing.wait_all_tasks_blocked()
        (listed,) = actor.requests()
        assert listed.data["data"] == ["not", "an", "object"]
        actor.answer(listed, None)
        await trio.testing.wait_all_tasks_blocked()
        assert caller.of(m.InvocationResult)[0].error is None

        caller.call("billing::charge", {"sku": "y"})
        await trio.testing.wait_all_tasks_blocked()
        actor.answer(actor.requests()[0], code="http_error", message="HTTP 502 Bad Gateway")
        await trio.testing.wait_all_tasks_blocked()
        (failed,) = caller.of(m.InvocationResult)
        assert failed.error == m.ErrorBody("http_error", "HTTP 502 Bad Gateway")

        owner.register("billing::late", invocation=INVOCATION)
        early = caller.call("billing::late", {"sku": "w"})  # sent before the actor answered
        await trio.testing.wait_all_tasks_blocked()
        (validation,) = actor.requests()
        assert validation.function_id == REGISTER_FUNCTION_ID
        actor.answer(validation, {})
        await trio.testing.wait_all_tasks_blocked()
        (forwarded,) = actor.requests()
        assert forwarded.data["function_id"] == "billing::late"
        actor.answer(forwarded, {"late": True})
        await trio.testing.wait_all_tasks_blocked()
        (waited,) = caller.of(m.InvocationResult)
        assert (waited.invocation_id, waited.result) == (early, {"late": True})

        owner.register("billing::refused", invocation={"url": "http://10.0.0.1/"})
        caller.call("billing::refused", {})
        await trio.testing.wait_all_tasks_blocked()
        actor.answer(actor.requests()[0], code="url_validation_failed", message="Private IP")
        await trio.testing.wait_all_tasks_blocked()
        (refused,) = caller.of(m.InvocationResult)
        assert refused.error == m.ErrorBody(
            "function_not_found",
            "Function billing::refused not found in namespace default: "
            "its registration was refused (Private IP)",
        )
        assert "billing::refused" not in ids(bus)

        actor.leave()  # the actor is restarting: a clear error, at once
        caller.call("billing::charge", {"sku": "z"})
        await trio.testing.wait_all_tasks_blocked()
        (down,) = caller.of(m.InvocationResult)
        assert down.error is not None and down.error.code == "http_request_failed"
        assert "HTTP functions module not loaded" in down.error.message
        assert owner.of(m.InvokeFunction) == []
        nursery.cancel_scope.cancel()


async def test_calls_waiting_on_a_replaced_registration_end_at_once(bus: Bus) -> None:
    async with trio.open_nursery() as nursery:
        bus.spawn = nursery.start_soon
        bus.registrar.external.expected = True  # the actor is not up: validations wait
        owner = Worker(bus, "billing")
        owner.register("billing::charge", invocation=INVOCATION)
        caller = Worker(bus, "shop")
        caller.call("billing::charge", {"sku": "x"})
        await trio.testing.wait_all_tasks_blocked()
        assert caller.of(m.InvocationResult) == []  # waiting for the validation
        owner.register("billing::charge")  # replaced by a handler of its own
        await trio.testing.wait_all_tasks_blocked()
        (ended,) = caller.of(m.InvocationResult)
        assert ended.error is not None and ended.error.code == "function_not_found"
        nursery.cancel_scope.cancel()


async def test_calls_waiting_on_an_unregistered_registration_end_at_once(bus: Bus) -> None:
    async with trio.open_nursery() as nursery:
        bus.spawn = nursery.start_soon
        bus.registrar.external.expected = True
        owner = Worker(bus, "billing")
        caller = Worker(bus, "shop")
        for replace in (
            lambda: owner.register("billing::charge", invocation={"url": "https://b.example/"}),
            lambda: owner.send(m.UnregisterFunction(id="billing::charge")),
        ):
            owner.register("billing::charge", invocation=INVOCATION)
            caller.call("billing::charge", {"sku": "x"})
            await trio.testing.wait_all_tasks_blocked()
            assert caller.of(m.InvocationResult) == []
            replace()
            await trio.testing.wait_all_tasks_blocked()
            (ended,) = caller.of(m.InvocationResult)
            assert ended.error is not None and ended.error.code == "function_not_found"
        nursery.cancel_scope.cancel()


def test_a_removed_http_function_never_comes_back_as_a_shadowed_built_in(bus: Bus) -> None:
    actor = Actor(bus)
    actor.up()
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION)
    actor.answer(actor.requests()[0], {})
    owner.register("billing::charge")  # its own handler now
    owner.send(m.UnregisterFunction(id="billing::charge"))
    assert "billing::charge" not in ids(bus)
    owner.register("billing::charge", invocation=INVOCATION)
    actor.answer(actor.requests()[0], {})
    owner.send(m.UnregisterFunction(id="billing::charge"))
    other = Worker(bus, "other")
    other.register("billing::charge")
    other.leave()
    assert "billing::charge" not in ids(bus)


async def test_an_actor_that_never_answers_a_call_fails_it_within_its_timeout(
    bus: Bus, autojump_clock: trio.testing.MockClock
) -> None:
    """timeout_ms plus 2 s, not 75 s: the caller gets http_request_failed naming the actor,
    and the bus holds nothing of the call afterwards."""
    async with trio.open_nursery() as nursery:
        bus.spawn = nursery.start_soon
        actor = Actor(bus)
        actor.up()
        owner = Worker(bus, "billing")
        owner.register("billing::slow", invocation={**INVOCATION, "timeout_ms": 1500})
        actor.answer(actor.requests()[0], {})
        caller = Worker(bus, "shop")
        inv = caller.call("billing::slow", {})
        await trio.testing.wait_all_tasks_blocked()
        assert [r.function_id for r in actor.requests()] == [INVOKE_FUNCTION_ID]  # unanswered
        await trio.sleep(3.4)
        assert caller.of(m.InvocationResult) == []
        await trio.sleep(0.2)
        (failed,) = caller.of(m.InvocationResult)
        assert failed.invocation_id == inv
        assert failed.error == m.ErrorBody(
            "http_request_failed",
            "Cannot call billing::slow: iii-http-functions did not answer within 3500 ms "
            "(its timeout_ms plus 2000 ms)",
        )
        bus.expire(bus.clock() + 3600)  # the fake bus clock: whatever it holds is overdue
        assert len(bus.table) == 0 and actor.conn.calls_in == set()
        nursery.cancel_scope.cancel()


async def test_a_call_waiting_for_a_validation_that_never_comes_is_bounded_too(
    bus: Bus, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        bus.spawn = nursery.start_soon
        bus.registrar.external.expected = True  # the actor is not up: the validation waits
        owner = Worker(bus, "billing")
        owner.register("billing::charge", invocation=INVOCATION)  # default timeout: 30 s
        caller = Worker(bus, "shop")
        caller.call("billing::charge", {})
        await trio.sleep(31.9)
        assert caller.of(m.InvocationResult) == []
        await trio.sleep(0.2)
        (failed,) = caller.of(m.InvocationResult)
        assert failed.error == m.ErrorBody(
            "http_request_failed",
            "Cannot call billing::charge: its registration was not validated within 32000 ms "
            "(is iii-http-functions running?)",
        )
        nursery.cancel_scope.cancel()


def test_an_unanswered_validation_refuses_the_registration_after_30_s(bus: Bus) -> None:
    actor = Actor(bus)
    actor.up()
    owner = Worker(bus, "billing")
    owner.register("billing::charge", invocation=INVOCATION)
    (request,) = actor.requests()
    assert bus.expire(bus.clock() + 29.9) == 0
    assert "billing::charge" in ids(bus)
    assert bus.expire(bus.clock() + 30.0) == 1
    assert "billing::charge" not in ids(bus)
    actor.answer(request, {})  # too late: nothing comes back
    assert "billing::charge" not in ids(bus)
