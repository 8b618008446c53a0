"""The observe family on a real bus core (no sockets): routed calls matched at completion,
the activation frame, caller stamping and depth forwarding, functionregistered listing the
attached set, owner calls, reports, local stats and engine::observers::get."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.engine.bus import Bus
from supervisor.engine.observe.hook import ObserveHook
from supervisor.engine.runner import build_bus
from tests.unit.bus.test_routing import Clock, Worker, new_id
from transport import messages as m

FEATURES = ["observe.v1", "local-dispatch.v1", "large-messages.v1"]


class Sdk025(Worker):
    """A worker that declares the 0.25 features."""

    def announce(self, name: str | None, namespace: str | None = None) -> None:
        data: dict[str, Any] = {"name": name, "namespace": namespace, "features": FEATURES}
        self.send(
            m.InvokeFunction("engine::workers::register", data, action=m.TriggerAction("void"))
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bus(clock: Clock) -> Bus:
    return build_bus(clock=clock, invocation_deadline=60.0)


def hook_of(bus: Bus) -> ObserveHook:
    hook = bus.observer_directory
    assert isinstance(hook, ObserveHook)
    return hook


def setup(bus: Bus, **source: Any) -> tuple[Worker, Sdk025, Sdk025]:
    """shop (0.23, hosts orders::create), watcher (0.25, hosts audit::log and observes)."""
    shop = Worker(bus, "shop")
    shop.register("orders::create")
    watcher = Sdk025(bus, "watcher")
    watcher.register("audit::log")
    watcher.outbox()
    src = {"function_id": "orders::create", **source}
    watcher.send(m.Observe("o1", src, {"function_id": "audit::log"}, metadata={"team": "a"}))
    (res,) = watcher.of(m.ObserveResult)
    assert res.state == "active", res
    return shop, watcher, Sdk025(bus, "client")


def test_a_matching_routed_call_activates_the_target_once(bus: Bus) -> None:
    shop, watcher, client = setup(bus, filters={"input.n": {"$gte": 2}})
    for n in (1, 5):
        inv = client.call("orders::create", {"n": n}, caller={"function_id": "c::fn"})
        (fwd,) = shop.of(m.InvokeFunction)
        assert fwd.caller is None and fwd.observe_depth is None  # a 0.23 callee: no fields
        shop.send(m.InvocationResult(inv, "orders::create", result={"ok": n}))
    (act,) = watcher.of(m.InvokeFunction)
    assert act.function_id == "audit::log" and act.metadata == {"team": "a"}
    assert act.observe_depth == 1
    assert act.activation == {"observer_id": "o1", "activation_id": act.invocation_id}
    assert act.caller == {
        "worker_name": "iii-engine",
        "function_id": "orders::create",
        "invocation_id": inv,
    }
    env = act.data
    assert list(env) == [
        "observer_id",
        "activation_id",
        "function_id",
        "namespace",
        "invocation_id",
        "status",
        "input",
        "output",
        "caller",
        "started_at_ms",
        "duration_ms",
    ]
    assert env["input"] == {"n": 5}  # no _caller_worker_id
    assert env["output"] == {"ok": 5} and env["status"] == "success"
    assert env["caller"] == {
        "worker_id": client.conn.worker_id,
        "worker_name": "client",
        "function_id": "c::fn",
    }
    watcher.send(m.InvocationResult(act.invocation_id, "audit::log", result=None))
    assert len(bus.table) == 0


def test_a_capable_callee_gets_the_stamped_caller_and_the_depth(bus: Bus) -> None:
    owner = Sdk025(bus, "owner")
    owner.register("svc::f")
    client = Sdk025(bus, "client")
    parent = {"function_id": "p", "invocation_id": "pi", "worker_id": 7, "parent": {"x": "y"}}
    client.call("svc::f", {}, caller={"function_id": "c", "parent": parent}, observe_depth=3)
    (fwd,) = owner.of(m.InvokeFunction)
    assert fwd.observe_depth == 3
    assert fwd.caller == {
        "worker_id": client.conn.worker_id,
        "worker_name": "client",
        "function_id": "c",
        "parent": {"function_id": "p", "invocation_id": "pi"},
    }


def test_on_error_fires_only_for_failures_and_carries_the_error(bus: Bus) -> None:
    shop, watcher, client = setup(bus, on="error", capture=["error"])
    for fail in (False, True):
        inv = client.call("orders::create", {"n": 1})
        shop.outbox()
        err = m.ErrorBody("invocation_failed", "boom") if fail else None
        shop.send(m.InvocationResult(inv, "orders::create", result=None, error=err))
    (act,) = watcher.of(m.InvokeFunction)
    assert act.data["status"] == "error" and "input" not in act.data
    assert act.data["error"] == {"code": "invocation_failed", "message": "boom"}


def test_functionregistered_lists_the_attached_observers(bus: Bus) -> None:
    watcher = Sdk025(bus, "watcher")
    watcher.register("audit::log")
    watcher.send(m.Observe("o1", {"function_id": "orders::create"}, {"function_id": "audit::log"}))
    assert watcher.of(m.ObserveResult)[0].state == "pending"
    owner = Sdk025(bus, "shop")
    owner.register("orders::create")
    (reg,) = owner.of(m.FunctionRegistered)
    assert (reg.revision, reg.local_dispatch) == (0, True)
    assert [o["id"] for o in reg.observers] == ["o1"]
    owner.send(m.ObserverAck("orders::create", "o1", 0))
    assert [s.state for s in watcher.of(m.ObserverStateChanged)] == ["active"]


def test_owner_calls_and_reports_reach_the_target(bus: Bus) -> None:
    owner = Sdk025(bus, "cron")
    owner.register("cron::tick", observe={"delivery": "owner"})
    watcher = Sdk025(bus, "watcher")
    watcher.register("audit::log")
    watcher.send(m.Observe("o1", {"function_id": "cron::tick"}, {"function_id": "audit::log"}))
    (added,) = owner.of(m.ObserverAdded)
    owner.send(m.ObserverAck("cron::tick", "o1", added.revision))
    inv = new_id()
    owner.send(m.InvokeFunction("audit::log", {"t": 1}, inv, activation={"observer_id": "o1"}))
    (act,) = watcher.of(m.InvokeFunction)
    assert act.data == {"t": 1} and act.caller["worker_name"] == "cron"
    watcher.send(m.InvocationResult(act.invocation_id, "audit::log", result={"r": 2}))
    (res,) = owner.of(m.InvocationResult)
    assert (res.invocation_id, res.result) == (inv, {"r": 2})
    item = {
        "function_id": "cron::tick",
        "invocation_id": "x",
        "matched": ["o1"],
        "status": "success",
        "input": {"e": 1},
        "started_at_ms": 1,
        "duration_ms": 0,
        "observe_depth": 0,
    }
    owner.send(m.InvocationsObserved([item]))
    (emitted,) = watcher.of(m.InvokeFunction)
    assert emitted.data["input"] == {"e": 1} and emitted.data["function_id"] == "cron::tick"


def test_local_stats_are_counted_per_function(bus: Bus) -> None:
    owner = Sdk025(bus, "shop")
    row = {"function_id": "f", "count": 3, "errors": 1, "duration_ms_sum": 4.5}
    drop = {"function_id": "f", "reason": "BUFFER_FULL", "count": 2}
    owner.send(m.LocalInvocationStats(10000, [row, "junk"], [drop]))
    counts = hook_of(bus).local[("default", "f")]
    assert (counts.count, counts.errors, counts.duration_ms_sum) == (3, 1, 4.5)
    assert counts.dropped == {"BUFFER_FULL": 2}
    assert bus.metrics is not None
    (row,) = [r for r in bus.metrics.snapshot(bus.clock())["functions"] if r["function_id"] == "f"]
    assert (row["count"], row["errors"]) == (3, 1)
    assert row["p50_ms"] == pytest.approx(1.5, rel=0.05)


def test_observers_get_reports_the_observer_and_not_found(bus: Bus) -> None:
    _, _, client = setup(bus, filters={"input.n": {"$gte": 2}})
    inv = client.call("engine::observers::get", {"id": "o1"})
    (res,) = client.of(m.InvocationResult)
    assert res.invocation_id == inv and res.result["observer"]["state"] == "active"
    assert res.result["observer"]["source"]["filters"] == {"input.n": {"$gte": 2}}
    client.call("engine::observers::get", {"id": "nope"})
    assert client.of(m.InvocationResult)[0].error.code == "NOT_FOUND"


def test_an_unwatched_function_leaves_nothing_on_its_calls(bus: Bus) -> None:
    shop, _, client = setup(bus)
    shop.register("other::fn")
    client.call("other::fn", {})
    (pending,) = [p for p in bus.table._pending.values()]
    assert pending.observed is None and pending.stamp is None


def test_bad_observe_frames_get_specific_answers_and_the_engine_serves_on(bus: Bus) -> None:
    shop, watcher, client = setup(bus)
    client.call("engine::observers::get", {})
    (res,) = client.of(m.InvocationResult)
    assert res.error.code == "INVALID_ARGUMENTS" and "`id`" in res.error.message
    inv = new_id()
    client.send(m.InvokeFunction("audit::log", {}, inv, activation={"observer_id": "nope"}))
    (res,) = client.of(m.InvocationResult)
    assert (res.invocation_id, res.error.code) == (inv, "OBSERVER_NOT_ACTIVE")
    assert res.error.message == "observer nope is unknown"
    client.send(m.InvocationsObserved("junk"))
    client.send(m.InvocationsObserved([1, {"function_id": 2}, {"function_id": "x"}]))
    client.send(m.LocalInvocationStats(functions={"no": "list"}, dropped_reports=3))
    client.send(m.Unobserve("nope"))
    client.send(m.ObserverAck("orders::create", "o1", 99))  # not the owner: ignored
    assert client.outbox() == [] and watcher.outbox() == []
    inv = client.call("orders::create", {"n": 1})  # still serving, still observed
    (fwd,) = shop.of(m.InvokeFunction)
    shop.send(m.InvocationResult(inv, "orders::create", result={"ok": True}))
    (act,) = watcher.of(m.InvokeFunction)
    assert act.data["input"] == {"n": 1}
