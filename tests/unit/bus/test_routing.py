"""The bus's routing tables, driven by messages with no sockets (PROTOCOL.md §4–§9)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from supervisor.engine.bus import Bus
from supervisor.engine.connection import Connection
from supervisor.engine.runner import build_bus
from transport import messages as m


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_id() -> str:
    return str(uuid.uuid4())


class Worker:
    """A connection attached to the bus whose outbox we read directly."""

    def __init__(
        self,
        bus: Bus,
        name: str | None = None,
        namespace: str | None = None,
        *,
        kind: str = "test",
    ):
        self.bus = bus
        self.conn = Connection(kind=kind)
        bus.attach(self.conn)
        self.outbox()  # the workerregistered greeting
        if name is not None or namespace is not None:
            self.announce(name, namespace)

    def announce(self, name: str | None, namespace: str | None = None) -> None:
        data: dict[str, Any] = {"name": name, "pid": 4242, "namespace": namespace}
        self.send(
            m.InvokeFunction("engine::workers::register", data, action=m.TriggerAction("void"))
        )

    def send(self, msg: Any) -> None:
        self.bus.handle(self.conn, msg)

    def outbox(self) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self.conn._recv.receive_nowait())  # type: ignore[union-attr]
            except Exception:
                return out

    def of(self, cls: type) -> list[Any]:
        return [x for x in self.outbox() if isinstance(x, cls)]

    def register(self, fid: str, **kw: Any) -> None:
        self.send(m.RegisterFunction(id=fid, **kw))

    def call(self, fid: str, data: Any = None, **kw: Any) -> str:
        inv = new_id()
        self.send(m.InvokeFunction(function_id=fid, data=data, invocation_id=inv, **kw))
        return inv

    def leave(self) -> None:
        self.bus.cleanup(self.conn)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bus(clock: Clock) -> Bus:
    return build_bus(clock=clock, invocation_deadline=60.0)


def test_call_is_routed_to_the_owner_and_the_result_relayed(bus: Bus) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("math::add")
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    inv = b.call("math::add", {"x": 1}, metadata={"tenant": "t"}, traceparent=tp)
    (forwarded,) = a.of(m.InvokeFunction)
    assert forwarded.invocation_id == inv
    assert forwarded.data == {"x": 1, "_caller_worker_id": b.conn.worker_id}
    assert forwarded.metadata == {"tenant": "t"}
    assert forwarded.traceparent.startswith(tp[:36])  # the caller's trace, the engine's span
    assert forwarded.namespace is None and forwarded.action is None
    a.send(m.InvocationResult(invocation_id=inv, function_id="math::add", result={"sum": 3}))
    (result,) = b.of(m.InvocationResult)
    assert (result.invocation_id, result.result, result.error) == (inv, {"sum": 3}, None)
    assert bus.metrics is not None
    assert bus.metrics.cells[("default", "math::add", a.conn.worker_id)].count == 1


def test_non_object_payloads_are_passed_unchanged(bus: Bus) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    b.call("f", [1, 2])
    assert a.of(m.InvokeFunction)[0].data == [1, 2]


def test_unknown_function_gives_function_not_found(bus: Bus) -> None:
    b = Worker(bus, "b")
    inv = b.call("nope::x")
    (result,) = b.of(m.InvocationResult)
    assert result.invocation_id == inv
    assert result.error.code == "function_not_found"
    assert result.error.message == "Function nope::x not found in namespace default."


def test_function_not_found_names_other_namespaces(bus: Bus) -> None:
    Worker(bus, "x", "orders").register("orders::create")
    Worker(bus, "y", "alpha").register("orders::create")
    b = Worker(bus, "b")
    b.call("orders::create")
    assert b.of(m.InvocationResult)[0].error.message == (
        "Function orders::create not found in namespace default. "
        "It is registered in namespace(s): alpha, orders."
    )


def test_invoke_resolves_only_in_the_named_namespace(bus: Bus) -> None:
    a = Worker(bus, "a", "team")
    a.register("svc::f")
    b = Worker(bus, "b")
    b.call("svc::f", {}, namespace="team")
    assert len(a.of(m.InvokeFunction)) == 1


def test_blank_namespace_is_invalid(bus: Bus) -> None:
    b = Worker(bus, "b")
    b.call("f", {}, namespace="  ")
    err = b.of(m.InvocationResult)[0].error
    assert err.code == "INVALID_NAMESPACE"
    assert "`namespace` is empty" in err.message


def test_handler_error_reaches_the_caller(bus: Bus) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    inv = b.call("f", {})
    a.send(
        m.InvocationResult(
            invocation_id=inv, function_id="f", error=m.ErrorBody("invocation_failed", "boom", "tb")
        )
    )
    err = b.of(m.InvocationResult)[0].error
    assert (err.code, err.message, err.stacktrace) == ("invocation_failed", "boom", "tb")
    assert bus.metrics is not None
    assert bus.metrics.cells[("default", "f", a.conn.worker_id)].errors == 1


def test_void_call_reaches_the_handler_and_sends_nothing_back(bus: Bus) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    b.send(
        m.InvokeFunction(
            function_id="f", data={}, action=m.TriggerAction("void"), invocation_id=new_id()
        )
    )
    (forwarded,) = a.of(m.InvokeFunction)
    assert forwarded.invocation_id is not None
    a.send(m.InvocationResult(invocation_id=forwarded.invocation_id, function_id="f", result=1))
    assert b.of(m.InvocationResult) == []
    assert len(bus.table) == 0


def test_void_call_to_unknown_function_is_silent(bus: Bus) -> None:
    b = Worker(bus, "b")
    b.send(m.InvokeFunction(function_id="nope", data={}, action=m.TriggerAction("void")))
    assert b.of(m.InvocationResult) == []


def test_result_from_a_stranger_is_ignored(bus: Bus) -> None:
    a, b, c = Worker(bus, "a"), Worker(bus, "b"), Worker(bus, "c")
    a.register("f")
    inv = b.call("f", {})
    c.send(m.InvocationResult(invocation_id=inv, function_id="f", result="forged"))
    assert b.of(m.InvocationResult) == []
    a.send(m.InvocationResult(invocation_id=inv, function_id="f", result="real"))
    assert b.of(m.InvocationResult)[0].result == "real"


def test_callee_departure_stops_in_flight_calls(bus: Bus) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    inv = b.call("f", {})
    a.leave()
    (result,) = b.of(m.InvocationResult)
    assert result.invocation_id == inv
    assert (result.error.code, result.error.message) == ("invocation_stopped", "Invocation stopped")
    assert ("default", "f") not in bus.functions
    assert len(bus.table) == 0


def test_caller_departure_drops_its_calls_and_ignores_late_results(bus: Bus) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    inv = b.call("f", {})
    b.leave()
    assert len(bus.table) == 0
    a.send(m.InvocationResult(invocation_id=inv, function_id="f", result=1))  # ignored


def test_engine_deadline_fails_a_call_nobody_answers(bus: Bus, clock: Clock) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    b.call("f", {})
    clock.now += 61
    assert bus.expire(clock.now) == 1
    assert b.of(m.InvocationResult)[0].error.code == "invocation_timeout"


def test_function_conflict_is_rejected_and_the_owner_keeps_serving(bus: Bus) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    b.register("f")
    (rej,) = b.of(m.RegistrationRejected)
    assert (rej.code, rej.function_id, rej.owner_worker_id) == (
        "FUNCTION_NAMESPACE_CONFLICT",
        "f",
        a.conn.worker_id,
    )
    assert bus.functions[("default", "f")].owner is a.conn
    assert not b.conn.closing


def test_same_id_in_two_namespaces_is_no_conflict(bus: Bus) -> None:
    a, b = Worker(bus, "a", "one"), Worker(bus, "b", "two")
    a.register("f")
    b.register("f")
    assert b.of(m.RegistrationRejected) == []


def test_reregistering_your_own_function_is_harmless(bus: Bus) -> None:
    a = Worker(bus, "a")
    a.register("f", description="one")
    a.register("f", description="two")
    assert a.of(m.RegistrationRejected) == []
    assert bus.functions[("default", "f")].description == "two"


def test_engine_prefix_is_reserved_outside_default(bus: Bus) -> None:
    a = Worker(bus, "a", "team")
    a.register("engine::mine")
    (rej,) = a.of(m.RegistrationRejected)
    assert (rej.code, rej.owner_worker_id, rej.namespace) == (
        "FUNCTION_NAMESPACE_CONFLICT",
        "",
        "team",
    )


def test_a_worker_may_not_register_over_an_engine_built_in(bus: Bus) -> None:
    """PROTOCOL.md §6.3 / §19.1 item 9: upstream lets a worker overwrite a built-in in
    default; here it is refused like the reserved prefix, and the built-in keeps serving."""
    a = Worker(bus, "a")
    a.register("engine::functions::list")
    (rej,) = a.of(m.RegistrationRejected)
    assert (rej.code, rej.namespace, rej.function_id, rej.owner_worker_id) == (
        "FUNCTION_NAMESPACE_CONFLICT",
        "default",
        "engine::functions::list",
        "",
    )
    entry = bus.functions[("default", "engine::functions::list")]
    assert entry.in_engine and entry.owners == []
    a.call("engine::functions::list", {})
    (res,) = a.of(m.InvocationResult)
    assert res.error is None and "functions" in res.result
    assert ("default", "engine::functions::list") not in a.conn.functions


def test_an_engine_prefixed_id_that_is_no_built_in_stays_registrable_in_default(
    bus: Bus,
) -> None:
    a = Worker(bus, "queue")
    a.register("engine::queue::enqueue")  # the standalone queue worker does this (§8.4)
    assert a.of(m.RegistrationRejected) == []
    assert bus.functions[("default", "engine::queue::enqueue")].owners == [a.conn]


def test_our_own_actors_may_stand_in_for_a_built_in(bus: Bus) -> None:
    actor = Worker(bus, "iii-observability", kind="local")
    actor.register("engine::log::info")
    assert actor.of(m.RegistrationRejected) == []
    assert bus.functions[("default", "engine::log::info")].owners == [actor.conn]
    # while it holds the id, a worker meets the ordinary lease conflict (its worker id)
    other = Worker(bus, "other")
    other.register("engine::log::info")
    (rej,) = other.of(m.RegistrationRejected)
    assert rej.owner_worker_id == actor.conn.worker_id


def test_worker_name_conflict_rejects_the_newcomer(bus: Bus) -> None:
    a = Worker(bus, "svc")
    b = Worker(bus, "svc")
    (rej,) = b.of(m.RegistrationRejected)
    assert (rej.code, rej.worker_name, rej.owner_worker_id) == (
        "WORKER_NAMESPACE_CONFLICT",
        "svc",
        a.conn.worker_id,
    )
    assert b.conn.closing


def test_a_restarted_worker_reclaims_its_name_and_ids_at_once(bus: Bus) -> None:
    a = Worker(bus, "svc")
    a.register("f")
    a.conn.closing = True  # its reader saw EOF; clean-up not finished yet
    b = Worker(bus, "svc")
    b.register("f")
    assert b.of(m.RegistrationRejected) == []
    assert bus.functions[("default", "f")].owner is b.conn
    a.leave()  # the old connection's clean-up must not remove the new owner's function
    assert bus.functions[("default", "f")].owner is b.conn
    assert bus.names[("default", "svc")] is b.conn


def test_registrations_wait_for_the_namespace(bus: Bus) -> None:
    a = Worker(bus)
    a.register("svc::f")
    assert bus.functions.get(("team", "svc::f")) is None
    assert bus.functions.get(("default", "svc::f")) is None
    a.announce("a", "team")
    assert bus.functions[("team", "svc::f")].owner is a.conn


def test_rejected_worker_applies_nothing(bus: Bus) -> None:
    Worker(bus, "svc")
    b = Worker(bus)
    b.register("g")
    b.announce("svc")
    assert ("default", "g") not in bus.functions


def test_grace_pins_to_default(bus: Bus, clock: Clock) -> None:
    a = Worker(bus)
    a.register("f")
    clock.now += bus.namespace_grace
    assert bus.pin_overdue(clock.now) == 1
    assert ("default", "f") in bus.functions


def test_blank_declared_namespace_fails_the_announce(bus: Bus) -> None:
    a = Worker(bus)
    inv = new_id()
    a.send(
        m.InvokeFunction(
            "engine::workers::register", {"name": "x", "namespace": " "}, invocation_id=inv
        )
    )
    err = a.of(m.InvocationResult)[0].error
    assert err.code == "INVALID_NAMESPACE"
    assert a.conn.namespace is None


def test_trigger_is_delivered_to_its_provider(bus: Bus) -> None:
    p, c = Worker(bus, "provider"), Worker(bus, "consumer")
    p.send(m.RegisterTriggerType(id="webhook", description="d"))
    c.send(
        m.RegisterTrigger(
            id="t1",
            trigger_type="webhook",
            function_id="f",
            config={"url": "/a"},
            metadata={"k": 1},
        )
    )
    (reg,) = p.of(m.RegisterTrigger)
    assert (reg.id, reg.function_id, reg.config, reg.metadata) == (
        "t1",
        "f",
        {"url": "/a"},
        {"k": 1},
    )
    assert reg.namespace is None and reg.trigger_namespace is None


def test_trigger_is_parked_until_its_provider_connects(bus: Bus) -> None:
    c = Worker(bus, "consumer")
    c.send(m.RegisterTrigger(id="t1", trigger_type="webhook", function_id="f", config=None))
    assert bus.bindings["t1"].bound_to is None
    p = Worker(bus, "provider")
    p.send(m.RegisterTriggerType(id="webhook", description="d"))
    (reg,) = p.of(m.RegisterTrigger)
    assert reg.id == "t1"
    assert bus.bindings["t1"].bound_to == ("default", "webhook")


def test_owner_disconnect_unregisters_at_the_provider(bus: Bus) -> None:
    p, c = Worker(bus, "provider"), Worker(bus, "consumer")
    p.send(m.RegisterTriggerType(id="webhook", description="d"))
    c.send(m.RegisterTrigger(id="t1", trigger_type="webhook", function_id="f", config=None))
    p.outbox()
    c.leave()
    (unreg,) = p.of(m.UnregisterTrigger)
    assert (unreg.id, unreg.trigger_type) == ("t1", "webhook")
    assert "t1" not in bus.bindings


def test_provider_disconnect_parks_bindings_for_the_next_provider(bus: Bus) -> None:
    p, c = Worker(bus, "provider"), Worker(bus, "consumer")
    p.send(m.RegisterTriggerType(id="webhook", description="d"))
    c.send(m.RegisterTrigger(id="t1", trigger_type="webhook", function_id="f", config=None))
    p.leave()
    assert bus.bindings["t1"].bound_to is None
    p2 = Worker(bus, "provider")
    p2.send(m.RegisterTriggerType(id="webhook", description="d"))
    assert [r.id for r in p2.of(m.RegisterTrigger)] == ["t1"]


def test_provider_error_parks_the_binding_and_tells_the_owner(bus: Bus) -> None:
    p, c = Worker(bus, "provider"), Worker(bus, "consumer")
    p.send(m.RegisterTriggerType(id="webhook", description="d"))
    c.send(m.RegisterTrigger(id="t1", trigger_type="webhook", function_id="f", config=None))
    err = m.ErrorBody("trigger_registration_failed", "bad url")
    p.send(m.TriggerRegistrationResult(id="t1", trigger_type="webhook", function_id="f", error=err))
    assert bus.bindings["t1"].bound_to is None
    (fwd,) = c.of(m.TriggerRegistrationResult)
    assert fwd.error == err


def test_ack_from_a_non_provider_is_ignored(bus: Bus) -> None:
    p, c, x = Worker(bus, "provider"), Worker(bus, "consumer"), Worker(bus, "x")
    p.send(m.RegisterTriggerType(id="webhook", description="d"))
    c.send(m.RegisterTrigger(id="t1", trigger_type="webhook", function_id="f", config=None))
    x.send(
        m.TriggerRegistrationResult(
            id="t1", trigger_type="webhook", function_id="f", error=m.ErrorBody("x", "y")
        )
    )
    assert bus.bindings["t1"].bound_to == ("default", "webhook")


def test_unregistertriggertype_removes_the_provider(bus: Bus) -> None:
    p, c = Worker(bus, "provider"), Worker(bus, "consumer")
    p.send(m.RegisterTriggerType(id="webhook", description="d"))
    c.send(m.RegisterTrigger(id="t1", trigger_type="webhook", function_id="f", config=None))
    p.send(m.UnregisterTriggerType(id="webhook"))
    assert ("default", "webhook") not in bus.providers
    assert bus.bindings["t1"].bound_to is None


def test_namespaced_provider_takes_over_bindings_of_its_home(bus: Bus) -> None:
    dflt = Worker(bus, "p0")
    dflt.send(m.RegisterTriggerType(id="hook", description="d"))
    c = Worker(bus, "c", "team")
    c.send(m.RegisterTrigger(id="t1", trigger_type="hook", function_id="f", config=None))
    assert bus.bindings["t1"].bound_to == ("default", "hook")
    dflt.outbox()
    team = Worker(bus, "p1", "team")
    team.send(m.RegisterTriggerType(id="hook", description="d"))
    assert [u.id for u in dflt.of(m.UnregisterTrigger)] == ["t1"]
    (reg,) = team.of(m.RegisterTrigger)
    assert reg.trigger_namespace == "team"


def test_blank_trigger_namespace_is_refused(bus: Bus) -> None:
    c = Worker(bus, "c")
    c.send(
        m.RegisterTrigger(
            id="t1", trigger_type="x", function_id="f", config=None, trigger_namespace=""
        )
    )
    assert c.of(m.TriggerRegistrationResult)[0].error.code == "INVALID_NAMESPACE"
    assert "t1" not in bus.bindings


def test_duplicate_binding_id_replaces_and_unregisters_the_old(bus: Bus) -> None:
    p, c = Worker(bus, "provider"), Worker(bus, "consumer")
    p.send(m.RegisterTriggerType(id="webhook", description="d"))
    c.send(m.RegisterTrigger(id="t1", trigger_type="webhook", function_id="f", config=1))
    c.send(m.RegisterTrigger(id="t1", trigger_type="webhook", function_id="g", config=2))
    out = p.outbox()
    assert [type(x).__name__ for x in out] == [
        "RegisterTrigger",
        "UnregisterTrigger",
        "RegisterTrigger",
    ]
    assert bus.bindings["t1"].function_id == "g"


def test_reattach_with_the_right_token_evicts_the_old_connection(bus: Bus) -> None:
    old = Worker(bus, "svc")
    old.register("f")
    new = Worker(bus)
    new.send(m.Reattach(previous_worker_id=old.conn.worker_id, reattach_token="wrong"))
    assert old.conn.worker_id in bus.connections
    new.send(
        m.Reattach(previous_worker_id=old.conn.worker_id, reattach_token=old.conn.reattach_token)
    )
    assert old.conn.worker_id not in bus.connections
    assert ("default", "f") not in bus.functions
    new.announce("svc")
    assert new.of(m.RegistrationRejected) == []


def test_json_ping_gets_pong(bus: Bus) -> None:
    a = Worker(bus, "a")
    a.send(m.Ping())
    assert a.of(m.Pong) == [m.Pong()]


def test_enqueue_without_a_queue_provider(bus: Bus) -> None:
    b = Worker(bus, "b")
    inv = b.call("payments::charge", {}, action=m.TriggerAction("enqueue", "payments"))
    (res,) = b.of(m.InvocationResult)
    assert res.invocation_id == inv
    assert res.error.code == "enqueue_error"
    assert "engine::queue::enqueue" in res.error.message


def test_enqueue_goes_through_the_queue_provider(bus: Bus) -> None:
    q, b = Worker(bus, "queue"), Worker(bus, "b")
    q.register("engine::queue::enqueue")
    inv = b.call("payments::charge", {"o": 1}, action=m.TriggerAction("enqueue", "payments"))
    (fwd,) = q.of(m.InvokeFunction)
    assert fwd.data["queue"] == "payments"
    assert fwd.data["data"] == {"o": 1}
    receipt = fwd.data["messageReceiptId"]
    q.send(m.InvocationResult(invocation_id=fwd.invocation_id, function_id=fwd.function_id))
    (res,) = b.of(m.InvocationResult)
    assert res.invocation_id == inv
    assert res.result == {"messageReceiptId": receipt}


def test_functions_list_builtin(bus: Bus) -> None:
    a, b = Worker(bus, "orders-worker"), Worker(bus, "b")
    a.register("orders::create", description="Create an order")
    a.register("orders::hidden", metadata={"internal": True})
    b.call("engine::functions::list", {})
    ids = [f["function_id"] for f in b.of(m.InvocationResult)[0].result["functions"]]
    assert ids == ["orders::create"]
    b.call("engine::functions::list", {"include_internal": True})
    ids = [f["function_id"] for f in b.of(m.InvocationResult)[0].result["functions"]]
    assert "orders::hidden" in ids and "engine::functions::list" in ids


def test_builtin_input_must_be_an_object(bus: Bus) -> None:
    b = Worker(bus, "b")
    b.call("engine::functions::list", [1])
    assert b.of(m.InvocationResult)[0].error.code == "deserialization_error"


def test_channels_create(bus: Bus) -> None:
    b = Worker(bus, "b")
    b.call("engine::channels::create", {"buffer_size": 5000})
    refs = b.of(m.InvocationResult)[0].result
    assert refs["writer"]["direction"] == "write" and refs["reader"]["direction"] == "read"
    assert refs["writer"]["channel_id"] == refs["reader"]["channel_id"]
    channel = bus.channels.channels[refs["reader"]["channel_id"]]
    assert channel.buffer_size == 1024


def test_workers_available_event_fires_to_bindings(bus: Bus) -> None:
    watcher = Worker(bus, "watcher")
    watcher.register("on::workers")
    watcher.send(
        m.RegisterTrigger(
            id="w", trigger_type="engine::workers-available", function_id="on::workers", config={}
        )
    )
    newcomer = Worker(bus, "new")
    events = [x.data for x in watcher.of(m.InvokeFunction)]
    assert {"event": "worker_metadata_updated", "worker_id": newcomer.conn.worker_id} in events
    newcomer.leave()
    events = [x.data for x in watcher.of(m.InvokeFunction)]
    assert events == [{"event": "worker_disconnected", "worker_id": newcomer.conn.worker_id}]


def test_observers_see_registration_and_departure(bus: Bus) -> None:
    seen: list[tuple[str, str | None]] = []
    # attach() also reports "connected" (the old fixture bypassed it); this test is about
    # what follows.
    bus.add_observer(
        lambda ev: seen.append((ev.kind, ev.worker.name)) if ev.kind != "connected" else None
    )
    a = Worker(bus, "a")
    a.leave()
    assert seen == [("registered", "a"), ("disconnected", "a")]


def test_a_draining_worker_finishes_running_calls_and_refuses_new_ones(bus: Bus) -> None:
    a, b = Worker(bus, "svc"), Worker(bus, "b")
    a.register("f")
    running = b.call("f", {})
    bus.set_draining(a.conn.worker_id)
    b.call("f", {})
    (refused,) = b.of(m.InvocationResult)
    assert refused.error.code == "invocation_stopped"
    assert refused.error.message == "Worker 'svc' is stopping"
    a.send(m.InvocationResult(invocation_id=running, function_id="f", result=1))
    assert b.of(m.InvocationResult)[0].result == 1


def test_registration_changes_are_observed(bus: Bus) -> None:
    seen: list[tuple[str, tuple[str, ...]]] = []
    bus.add_observer(lambda ev: seen.append((ev.kind, ev.worker.function_ids)))
    a = Worker(bus, "a")
    a.register("f")
    bus.flush_changes()  # "changed" events are coalesced until the edge flushes them
    assert seen[-1] == ("changed", ("f",))


def test_channels_batch_create_and_delete(bus: Bus) -> None:
    b = Worker(bus, "b")
    b.call("engine::channels::create", {"count": 3})
    refs = b.of(m.InvocationResult)[0].result["channels"]
    assert len(refs) == 3 and len({r["reader"]["channel_id"] for r in refs}) == 3
    doomed = [r["reader"] for r in refs[:2]] + [
        {"channel_id": refs[2]["reader"]["channel_id"], "access_key": "wrong"}
    ]
    b.call("engine::channels::delete", {"channels": doomed})
    assert b.of(m.InvocationResult)[0].result == {"deleted": 2}
    assert list(bus.channels.channels) == [refs[2]["reader"]["channel_id"]]
    b.call("engine::channels::create", {"count": 0})
    assert b.of(m.InvocationResult)[0].error.code == "INVALID_ARGUMENTS"


def test_enqueue_receipts_are_random_uuid4_strings() -> None:
    from supervisor.engine.enqueue import receipt_id

    receipts = {receipt_id() for _ in range(10_000)}
    assert len(receipts) == 10_000
    for r in list(receipts)[:500]:
        parsed = uuid.UUID(r)
        assert str(parsed) == r and parsed.version == 4 and parsed.variant == uuid.RFC_4122
