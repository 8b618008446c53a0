"""The bus's synchronous core driven with explicit times: deadlines, the namespace grace, the
functions-available event, coalesced "changed" events, "drained", hooks and owner picking.

Nothing here sleeps or needs trio: time is the argument of ``tick``/``expire``/...
"""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.engine.bus import Bus
from supervisor.engine.connection import Connection
from supervisor.engine.functions import FunctionEntry
from supervisor.engine.invocations import Pending
from supervisor.engine.runner import build_bus
from tests.unit.bus.test_routing import Clock, Worker, new_id
from transport import messages as m


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bus(clock: Clock) -> Bus:
    return build_bus(clock=clock, invocation_deadline=60.0, namespace_grace_ms=5000)


def listen(bus: Bus, type_id: str) -> Worker:
    """A worker bound to one of the engine's event trigger types."""
    w = Worker(bus, f"listener-{new_id()[:8]}")
    w.register("on::event")
    w.send(m.RegisterTrigger(id=new_id(), trigger_type=type_id, function_id="on::event"))
    w.outbox()
    return w


# -- deadlines ----------------------------------------------------------------------------


def test_a_call_expires_exactly_at_its_deadline(bus: Bus, clock: Clock) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    inv = b.call("f", {})
    assert bus.table.next_deadline() == clock.now + 60.0
    assert bus.expire(clock.now + 59.999) == 0
    assert b.of(m.InvocationResult) == []
    assert bus.expire(clock.now + 60.0) == 1
    (res,) = b.of(m.InvocationResult)
    assert (res.invocation_id, res.error.code) == (inv, "invocation_timeout")
    assert res.error.message == "Invocation of f exceeded the engine deadline of 60000 ms"
    assert len(bus.table) == 0 and a.conn.calls_in == set()


def test_an_internal_call_with_its_own_timeout_ends_with_its_own_error(
    bus: Bus, clock: Clock
) -> None:
    """The RBAC machinery and edge.call bound their calls below the engine deadline; the bus
    ends them then, so nothing stays in flight, and a late answer is ignored."""
    a = Worker(bus, "a")
    a.register("f")
    outcomes: list[tuple[Any, Any]] = []
    expiry = m.ErrorBody("middleware_timeout", "middleware 'f' did not answer within 5000 ms")
    bus.internal_invoke(
        "f", {}, on_done=lambda r, e: outcomes.append((r, e)), timeout=5.0, expiry=expiry
    )
    (fwd,) = a.of(m.InvokeFunction)
    assert bus.table.next_deadline() == clock.now + 5.0
    assert bus.expire(clock.now + 4.999) == 0 and outcomes == []
    assert bus.expire(clock.now + 5.0) == 1
    assert outcomes == [(None, expiry)]
    assert len(bus.table) == 0 and a.conn.calls_in == set()
    a.send(m.InvocationResult(invocation_id=fwd.invocation_id, function_id="f", result=1))
    assert outcomes == [(None, expiry)]  # the late answer changes nothing
    bus.internal_invoke("f", {}, on_done=lambda r, e: outcomes.append((r, e)))
    assert bus.table.next_deadline() == clock.now + 60.0  # without one: the engine deadline


def test_answered_calls_leave_no_deadline_behind(bus: Bus, clock: Clock) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    for _ in range(100):
        b.call("f", {})
        (fwd,) = a.of(m.InvokeFunction)
        a.send(m.InvocationResult(invocation_id=fwd.invocation_id, function_id="f", result=1))
    assert bus.table.next_deadline() is None
    assert bus.expire(clock.now + 3600) == 0
    assert len(b.of(m.InvocationResult)) == 100


def test_the_wakeup_callback_is_asked_for_each_new_deadline(bus: Bus, clock: Clock) -> None:
    asked: list[float] = []
    bus.on_wakeup = asked.append
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    asked.clear()
    b.call("f", {})
    clock.now += 1
    b.call("f", {})
    assert asked == [1060.0, 1061.0]


def test_tick_runs_what_is_due_and_says_when_to_come_back(bus: Bus, clock: Clock) -> None:
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    b.call("f", {})
    start = clock.now
    clock.now += 30
    b.call("f", {})
    assert bus.tick(start + 10) == start + 60
    assert bus.tick(start + 60) == start + 90  # the first expired, the second is next
    assert len(b.of(m.InvocationResult)) == 1


# -- namespace grace ----------------------------------------------------------------------


def test_a_silent_worker_is_pinned_to_default_when_its_grace_ends(bus: Bus, clock: Clock) -> None:
    start = clock.now
    a = Worker(bus)
    a.register("f")  # buffered: nothing registered yet, so no functions event is due
    assert bus.next_wakeup() == start + 5.0
    assert bus.pin_overdue(start + 4.999) == 0
    assert ("default", "f") not in bus.functions
    clock.now = start + 5.0
    assert bus.pin_overdue(clock.now) == 1
    assert bus.functions[("default", "f")].owner is a.conn
    assert bus.next_wakeup() == start + 5.0 + 1.0  # only the functions event is left


def test_graces_end_in_connection_order_and_announced_workers_are_skipped(
    bus: Bus, clock: Clock
) -> None:
    start = clock.now
    early = Worker(bus)
    clock.now += 2
    announced = Worker(bus)
    announced.announce("svc", "team")
    clock.now += 1
    late = Worker(bus)
    assert bus.pin_overdue(start + 5) == 1
    assert early.conn.namespace == "default" and late.conn.namespace is None
    assert announced.conn.namespace == "team"
    assert bus.next_wakeup() == start + 8
    assert bus.pin_overdue(start + 8) == 1
    assert late.conn.namespace == "default"


def test_a_worker_that_left_during_its_grace_is_not_pinned(bus: Bus, clock: Clock) -> None:
    a = Worker(bus)
    a.leave()
    assert bus.pin_overdue(clock.now + 10) == 0


# -- engine::functions-available ----------------------------------------------------------


def test_functions_available_fires_once_a_second_with_the_whole_list(
    bus: Bus, clock: Clock
) -> None:
    listener = listen(bus, "engine::functions-available")
    clock.now += 2
    bus.tick(clock.now)
    listener.outbox()  # the listener's own registration settles first
    start = clock.now
    w = Worker(bus, "w")
    for i in range(50):
        w.register(f"w::f{i}")
    assert bus.next_wakeup() == start + 1.0
    assert not bus.publish_functions(start + 0.5)
    assert bus.publish_functions(start + 1.0)
    (event,) = listener.of(m.InvokeFunction)
    ids = [f["function_id"] for f in event.data["functions"]]
    assert event.data["event"] == "functions_changed"
    assert sum(1 for i in ids if i.startswith("w::")) == 50 and ids == sorted(ids)
    assert not bus.publish_functions(start + 5.0)  # nothing changed since


def test_functions_available_is_not_built_when_nobody_listens(bus: Bus, clock: Clock) -> None:
    w = Worker(bus, "w")
    w.register("f")
    assert bus.publish_functions(clock.now + 1.0) is False


def test_a_change_that_is_undone_within_the_second_still_fires(bus: Bus, clock: Clock) -> None:
    listener = listen(bus, "engine::functions-available")
    bus.tick(clock.now + 2)
    listener.outbox()
    w = Worker(bus, "w")
    w.register("f")
    w.send(m.UnregisterFunction(id="f"))
    assert bus.publish_functions(clock.now + 3)  # the revision moved: listeners re-read


# -- "changed" and "drained" --------------------------------------------------------------


def test_a_thousand_registrations_make_one_changed_event_per_flush(bus: Bus) -> None:
    seen: list[tuple[str, int]] = []
    bus.add_observer(
        lambda ev: seen.append((ev.kind, ev.worker.revision)) if ev.kind == "changed" else None
    )
    asked: list[int] = []
    bus.on_changes = lambda: asked.append(1)
    w = Worker(bus, "w")
    for i in range(1000):
        w.register(f"w::f{i}")
    assert seen == [] and asked == [1]  # the edge is asked once to flush
    bus.flush_changes()
    assert seen == [("changed", 1000)]
    bus.flush_changes()
    assert seen == [("changed", 1000)]


def test_views_read_function_lists_only_when_asked(bus: Bus) -> None:
    w = Worker(bus, "w")
    for i in range(3):
        w.register(f"w::f{i}")
    (view,) = [v for v in bus.workers() if v.name == "w"]
    assert view.revision == 3
    assert view.function_ids == ("w::f0", "w::f1", "w::f2")


def test_drained_is_reported_when_the_last_running_call_ends(bus: Bus) -> None:
    kinds: list[str] = []
    bus.add_observer(
        lambda ev: kinds.append(ev.worker.name or "") if ev.kind == "drained" else None
    )
    a, b = Worker(bus, "svc"), Worker(bus, "b")
    a.register("f")
    b.call("f", {})
    b.call("f", {})
    bus.set_draining(a.conn.worker_id)
    first, second = a.of(m.InvokeFunction)
    a.send(m.InvocationResult(invocation_id=first.invocation_id, function_id="f", result=1))
    assert kinds == []
    a.send(m.InvocationResult(invocation_id=second.invocation_id, function_id="f", result=2))
    assert kinds == ["svc"]


def test_draining_an_idle_worker_reports_drained_at_once(bus: Bus) -> None:
    kinds: list[str] = []
    bus.add_observer(lambda ev: kinds.append(ev.kind))
    a = Worker(bus, "svc")
    bus.set_draining(a.conn.worker_id)
    bus.set_draining(a.conn.worker_id)
    assert kinds.count("drained") == 1


# -- hooks ---------------------------------------------------------------------------------


class Recorder:
    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.dispatched: list[str] = []
        self.completed: list[tuple[str, str | None, float]] = []

    def on_dispatch(self, pending: Pending, data: Any) -> m.ErrorBody | None:
        self.dispatched.append(pending.function_id)
        if self.refuse and pending.function_id == self.refuse:
            return m.ErrorBody("FORBIDDEN", f"{pending.function_id} is not for you")
        return None

    def on_completion(
        self, pending: Pending, result: Any, err: m.ErrorBody | None, now: float
    ) -> None:
        self.completed.append((pending.function_id, err.code if err else None, now))


def test_hooks_see_dispatch_and_completion_and_may_refuse(bus: Bus, clock: Clock) -> None:
    hook = Recorder(refuse="secret")
    bus.hooks.add(hook)
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    a.register("secret")
    inv = b.call("f", {})
    clock.now += 0.25
    a.send(
        m.InvocationResult(invocation_id=a.of(m.InvokeFunction)[0].invocation_id, function_id="f")
    )
    b.call("secret", {})
    assert a.of(m.InvokeFunction) == []  # refused before it reached the callee
    results = b.of(m.InvocationResult)
    assert [r.invocation_id for r in results][0] == inv
    assert results[1].error.code == "FORBIDDEN"
    assert [f for f in hook.dispatched if not f.startswith("engine::")] == ["f", "secret"]
    completed = [c for c in hook.completed if not c[0].startswith("engine::")]
    assert completed == [("f", None, 1000.25), ("secret", "FORBIDDEN", 1000.25)]
    assert bus.metrics is not None
    row = next(r for r in bus.metrics.snapshot(clock.now)["functions"] if r["function_id"] == "f")
    assert (row["count"], row["errors"]) == (1, 0)
    assert abs(row["p99_ms"] - 250) <= 250 * 0.04


def test_a_registration_hook_can_refuse_a_registration(bus: Bus) -> None:
    class NoAdmin:
        def on_registration(self, conn: Connection, msg: Any) -> str | None:
            return "admin::* is reserved" if getattr(msg, "id", "").startswith("admin::") else None

    bus.hooks.add(NoAdmin())
    w = Worker(bus, "w")
    w.register("admin::drop")
    w.register("ok")
    assert ("default", "admin::drop") not in bus.functions
    assert ("default", "ok") in bus.functions


def test_an_object_with_no_hook_method_is_refused(bus: Bus) -> None:
    with pytest.raises(TypeError):
        bus.hooks.add(object())


# -- owners --------------------------------------------------------------------------------


def test_an_entry_with_several_owners_picks_them_in_turn_and_skips_draining(bus: Bus) -> None:
    a, b, c = Connection(kind="test"), Connection(kind="test"), Connection(kind="test")
    entry = FunctionEntry("f", "default", owners=[a, b, c])
    assert [entry.pick() for _ in range(6)] == [b, c, a, b, c, a]
    b.draining = True
    assert [entry.pick() for _ in range(4)] == [c, a, c, a]


def test_not_found_hints_come_from_the_namespace_index(bus: Bus) -> None:
    team, other, caller = Worker(bus), Worker(bus), Worker(bus, "caller")
    team.announce("t", "team")
    other.announce("o", "ops")
    team.register("svc::f")
    other.register("svc::f")
    caller.call("svc::f", {})
    (res,) = caller.of(m.InvocationResult)
    assert res.error.message == (
        "Function svc::f not found in namespace default. "
        "It is registered in namespace(s): ops, team."
    )
    other.leave()
    assert bus.functions.namespaces_of("svc::f") == ["team"]
