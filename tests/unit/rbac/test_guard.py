"""The RBAC guard on a real bus (no sockets): auth and hook failures, their deadlines (trio's
mock clock: no real waiting), the prefix and the ids the worker sent."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from supervisor.engine.bus import Bus
from supervisor.engine.connection import Connection
from supervisor.engine.edge import BusEdge
from supervisor.engine.functions import FunctionEntry
from supervisor.engine.rbac import ListenerPolicy, RbacSession, parse_auth_result
from supervisor.engine.rbac_guard import AuthRefused, PrefixedConnection, RbacGuard
from supervisor.engine.runner import build_bus
from transport import messages as m


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def silent_function(bus: Bus, function_id: str) -> None:
    """A function whose worker never answers."""
    owner = Connection(kind="local")
    owner.namespace = "default"
    bus.connections[owner.worker_id] = owner
    bus.functions.put(FunctionEntry(function_id=function_id, namespace="default", owners=[owner]))


def guard_for(policy: ListenerPolicy) -> tuple[Bus, RbacGuard]:
    bus = build_bus(clock=trio.current_time)
    return bus, RbacGuard(BusEdge(bus), policy)


def test_auth_function_not_registered_gives_its_not_found_text() -> None:
    async def main() -> None:
        _, guard = guard_for(ListenerPolicy(rbac=True, auth_function_id="my::auth"))
        with pytest.raises(AuthRefused) as info:
            await guard.authenticate([], "", "127.0.0.1")
        assert info.value.message == "Function my::auth not found in namespace default"

    run(main)


def test_auth_function_that_never_answers_times_out_with_a_clear_reason() -> None:
    async def main() -> None:
        bus, guard = guard_for(ListenerPolicy(rbac=True, auth_function_id="my::auth"))
        silent_function(bus, "my::auth")
        start = trio.current_time()
        with pytest.raises(AuthRefused) as info:
            await guard.authenticate([], "", "127.0.0.1")
        assert info.value.message == "auth function 'my::auth' did not answer within 10000 ms"
        assert trio.current_time() - start == pytest.approx(10.0)

    run(main)


def test_auth_function_result_becomes_the_session() -> None:
    async def main() -> None:
        bus, guard = guard_for(ListenerPolicy(rbac=True, auth_function_id="my::auth"))
        seen: list[dict[str, Any]] = []

        def auth(ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
            seen.append(data)
            return {"context": {"user": "u"}, "function_registration_prefix": "t"}

        bus.add_builtin("my::auth", auth)
        session = await guard.authenticate([(b"X-Token", b"abc")], "a=1", "10.0.0.1")
        assert seen == [
            {"headers": {"x-token": "abc"}, "query_params": {"a": ["1"]}, "ip_address": "10.0.0.1"}
        ]
        assert session.context == {"user": "u"}
        conn = guard.connection_for(session, kind="websocket", label=None, peer=None)
        assert isinstance(conn, PrefixedConnection)
        assert conn.session is session

    run(main)


def pinned(guard: RbacGuard, **auth: Any) -> Connection:
    session = parse_auth_result(auth, guard.policy)
    conn = guard.connection_for(session, kind="websocket", label=None, peer=None)
    conn.namespace = "default"
    conn.buffered = None
    guard.bus.connections[conn.worker_id] = conn
    return conn


def outbox(conn: Connection) -> list[Any]:
    out = []
    while True:
        try:
            out.append(conn._recv.receive_nowait())  # type: ignore[union-attr]
        except Exception:
            return out


def test_registration_hook_that_never_answers_denies_after_its_deadline() -> None:
    async def main() -> None:
        bus, guard = guard_for(ListenerPolicy(rbac=True, on_function_registration="my::hook"))
        silent_function(bus, "my::hook")
        conn = pinned(guard)
        start = trio.current_time()
        await guard.handle(conn, m.RegisterFunction(id="f"))
        assert trio.current_time() - start == pytest.approx(10.0)
        assert bus.functions.get(("default", "f")) is None
        assert outbox(conn) == []  # a denial is silent for functions (§13.8)

    run(main)


def test_trigger_hook_that_never_answers_is_reported_as_hook_timeout() -> None:
    async def main() -> None:
        bus, guard = guard_for(ListenerPolicy(rbac=True, on_trigger_registration="my::hook"))
        silent_function(bus, "my::hook")
        conn = pinned(guard)
        msg = m.RegisterTrigger(id="t1", trigger_type="cron", function_id="f", config={})
        await guard.handle(conn, msg)
        assert "t1" not in bus.bindings
        (result,) = outbox(conn)
        assert result == m.TriggerRegistrationResult(
            id="t1",
            trigger_type="cron",
            function_id="f",
            error=m.ErrorBody("hook_timeout", "hook 'my::hook' did not answer within 10000 ms"),
        )

    run(main)


def test_middleware_that_never_answers_gives_the_caller_middleware_timeout() -> None:
    """Bounded at 30 s instead of the engine's 300 s deadline; the bus (its timers driven by
    the edge) ends the call, so nothing of it stays in flight."""

    async def main() -> None:
        bus, guard = guard_for(ListenerPolicy(middleware_function_id="my::mw"))
        silent_function(bus, "my::mw")
        bus.add_builtin("svc::f", lambda ctx, data: {"ok": True})
        conn = pinned(guard)
        async with trio.open_nursery() as nursery:
            await nursery.start(guard.edge.run)
            await guard.handle(
                conn, m.InvokeFunction(function_id="svc::f", data={}, invocation_id="i1")
            )
            await trio.sleep(29.9)
            assert outbox(conn) == []
            await trio.sleep(0.2)
            (result,) = outbox(conn)
            assert result.invocation_id == "i1"
            assert result.error == m.ErrorBody(
                "middleware_timeout", "middleware 'my::mw' did not answer within 30000 ms"
            )
            assert len(bus.table) == 0
            nursery.cancel_scope.cancel()

    run(main)


def test_hook_rename_and_prefix_store_p_x_and_remember_the_sent_id() -> None:
    async def main() -> None:
        bus, guard = guard_for(ListenerPolicy(rbac=True, on_function_registration="my::hook"))
        bus.add_builtin("my::hook", lambda ctx, data: {"function_id": "renamed"})
        conn = pinned(guard, function_registration_prefix="t")
        await guard.handle(conn, m.RegisterFunction(id="f"))
        assert bus.functions.get(("default", "t::renamed")) is not None
        session = conn.session
        assert isinstance(session, RbacSession)
        assert session.sent_id("t::renamed") == "f"
        assert session.sent_id("other") == "other"
        # calls sent to the connection carry the id its SDK knows
        assert conn.send(m.InvokeFunction(function_id="t::renamed", data={}))
        assert conn._recv is not None
        assert conn._recv.receive_nowait().function_id == "renamed"
        await guard.handle(conn, m.UnregisterFunction(id="renamed"))
        assert bus.functions.get(("default", "t::renamed")) is None

    run(main)


def test_local_dispatch_only_without_middleware_and_when_callable() -> None:
    exposed = ListenerPolicy.from_config(attrs_block(expose=['match("pub::*")'], middleware=None))
    diverted = ListenerPolicy.from_config(attrs_block(expose=['match("pub::*")'], middleware="mw"))
    assert exposed is not None and diverted is not None
    assert parse_auth_result({}, exposed).local_dispatch_allowed("default", "pub::a")
    assert not parse_auth_result({}, exposed).local_dispatch_allowed("default", "priv::a")
    assert not parse_auth_result({}, diverted).local_dispatch_allowed("default", "pub::a")


def attrs_block(expose: list[Any], middleware: str | None) -> Any:
    from manifests.blocks.worker_manager import ListenerBlock, RbacBlock

    return ListenerBlock(
        rbac=RbacBlock(expose_functions=tuple(expose)), middleware_function_id=middleware
    )


def test_registrations_wait_for_the_namespace_and_hooks_see_it() -> None:
    async def main() -> None:
        bus, guard = guard_for(ListenerPolicy(rbac=True, on_function_registration="my::hook"))
        seen: list[str] = []

        def hook(ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
            seen.append(data["namespace"])
            return {}

        bus.add_builtin("my::hook", hook)
        session = parse_auth_result({}, guard.policy)
        conn = guard.connection_for(session, kind="websocket", label=None, peer=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(guard.edge.run)
            bus.attach(conn)
            await guard.handle(conn, m.RegisterFunction(id="a"))
            await guard.handle(conn, m.RegisterFunction(id="b"))
            assert seen == [] and not conn.functions  # held until the namespace is known
            bus.registrar.pin(conn, "orders")
            await guard.handle(conn, m.RegisterFunction(id="c"))  # behind the held ones
            await trio.testing.wait_all_tasks_blocked()
            assert seen == ["orders", "orders", "orders"]
            assert conn.functions == {("orders", "a"), ("orders", "b"), ("orders", "c")}
            assert session.held is None
            nursery.cancel_scope.cancel()

    run(main)


def test_held_registrations_are_dropped_when_the_connection_leaves() -> None:
    async def main() -> None:
        bus, guard = guard_for(ListenerPolicy(rbac=True))
        session = parse_auth_result({}, guard.policy)
        conn = guard.connection_for(session, kind="websocket", label=None, peer=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(guard.edge.run)
            bus.attach(conn)
            await guard.handle(conn, m.RegisterFunction(id="a"))
            bus.cleanup(conn)
            await trio.testing.wait_all_tasks_blocked()
            assert session.held is None
            assert bus.functions.get(("default", "a")) is None
            nursery.cancel_scope.cancel()

    run(main)


def test_rbac_session_cannot_stand_in_for_builtins_or_the_listener_machinery() -> None:
    async def main() -> None:
        bus, guard = guard_for(
            ListenerPolicy(rbac=True, auth_function_id="my::auth", middleware_function_id="my::mw")
        )
        conn = pinned(guard)
        for fid in ("my::auth", "my::mw", "engine::functions::list"):
            await guard.handle(conn, m.RegisterFunction(id=fid))
            assert conn._recv is not None
            rejected = conn._recv.receive_nowait()
            assert isinstance(rejected, m.RegistrationRejected)
            assert (rejected.code, rejected.function_id) == ("FUNCTION_NAMESPACE_CONFLICT", fid)
        assert bus.functions.get(("default", "my::auth")) is None
        entry = bus.functions.get(("default", "engine::functions::list"))
        assert entry is not None and entry.builtin is not None
        await guard.handle(conn, m.RegisterFunction(id="mine::ok"))
        assert bus.functions.get(("default", "mine::ok")) is not None

    run(main)


def exposing(*patterns: str) -> ListenerPolicy:
    policy = ListenerPolicy.from_config(attrs_block(expose=list(patterns), middleware=None))
    assert policy is not None
    return policy


def replies(conn: Connection) -> list[Any]:
    out = []
    assert conn._recv is not None
    while True:
        try:
            out.append(conn._recv.receive_nowait())
        except trio.WouldBlock:
            return out


def test_registertrigger_of_a_type_outside_allowed_trigger_types_is_dropped_silently() -> None:
    async def main() -> None:
        bus, guard = guard_for(exposing('match("pub::*")'))
        conn = pinned(guard, allowed_trigger_types=["engine::functions-available"])
        refused = m.RegisterTrigger(
            id="b1", trigger_type="engine::workers-available", function_id="pub::f", config={}
        )
        await guard.handle(conn, refused)
        assert "b1" not in bus.bindings
        assert replies(conn) == []  # silent (§6.8.1 step 3)
        allowed = attrs.evolve(refused, id="b2", trigger_type="engine::functions-available")
        await guard.handle(conn, allowed)
        assert bus.bindings["b2"].function_id == "pub::f"

    run(main)


def test_engine_register_trigger_checks_type_prefix_and_target() -> None:
    async def main() -> None:
        bus, guard = guard_for(exposing('match("engine::register_trigger")', 'match("t::pub::*")'))
        conn = pinned(
            guard,
            allowed_trigger_types=["engine::functions-available"],
            function_registration_prefix="t",
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(guard.edge.run)

            async def call(trigger_type: str, function_id: str) -> m.InvocationResult:
                data = {"trigger_type": trigger_type, "function_id": function_id, "config": {}}
                session = conn.session
                assert isinstance(session, RbacSession)
                msg = m.InvokeFunction("engine::register_trigger", data, str(uuid.uuid4()))
                guard.invoke(conn, session, msg)
                await trio.testing.wait_all_tasks_blocked()
                (reply,) = replies(conn)
                assert isinstance(reply, m.InvocationResult)
                return reply

            refused = await call("engine::workers-available", "pub::f")
            assert refused.error == m.ErrorBody(
                "FORBIDDEN",
                "Trigger type 'engine::workers-available' is not allowed for this session.",
            )
            hidden = await call("engine::functions-available", "secret")
            assert hidden.error == m.ErrorBody(
                "FORBIDDEN", "function 't::secret' not allowed in namespace 'default'"
            )
            bound = await call("engine::functions-available", "pub::f")
            assert bound.error is None
            assert bus.bindings[bound.result["id"]].function_id == "t::pub::f"
            nursery.cancel_scope.cancel()

    run(main)
