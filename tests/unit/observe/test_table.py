"""The observer table on fake time (OBSERVE.md §4–§8): lifecycle and error codes, the owner
handshake with revisions, activations (fires, in-flight bound, loop guard), the grace of a
departed observing worker, tombstones and reports. No sockets, no sleeping."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.engine.observe.detail import detail
from supervisor.engine.observe.records import ACK_DEADLINE, GRACE, Event
from tests.unit.observe.fakes import World, conn, of, outbox
from transport import messages as m

OLD = frozenset[str]()  # a 0.23 worker: declares nothing


@pytest.fixture
def world() -> World:
    return World()


def event(depth: int = 0, status: str = "success", **parts: Any) -> Event:
    return Event(
        function_id="orders::create",
        namespace="default",
        invocation_id="inv-1",
        status=status,
        parts=parts or {"input": {"n": 1}, "output": {"ok": True}},
        started_at_ms=1234,
        duration_ms=2.5,
        depth=depth,
    )


def test_an_observer_waits_pending_until_source_and_target_register(world: World) -> None:
    watcher = conn("watcher")
    res = world.observe(watcher)
    assert (res.state, res.error.code) == ("pending", "SOURCE_UNAVAILABLE")
    world.register(conn("shop", OLD), "orders::create")
    assert world.table.observers["o1"].state == "pending"
    assert of(watcher, m.ObserverStateChanged) == []  # pending -> pending is not reported
    world.register(watcher, "audit::log")
    (changed,) = of(watcher, m.ObserverStateChanged)
    assert (changed.id, changed.state, changed.fires, changed.reason) == ("o1", "active", 0, None)
    assert world.table.watched[("default", "orders::create")].observers[0].id == "o1"


@pytest.mark.parametrize(
    ("fields", "code", "text"),
    [
        ({"max_fires": 0}, "INVALID_ARGS", "max_fires must be an integer >= 1"),
        ({"expires_in_ms": "soon"}, "INVALID_ARGS", "expires_in_ms"),
        ({"max_in_flight": True}, "INVALID_ARGS", "max_in_flight"),
        ({"source": {"function_id": " "}}, "INVALID_ARGS", "source.function_id"),
        ({"target": "audit::log"}, "INVALID_ARGS", "target must be an object"),
        ({"source": {"function_id": "f", "on": "always"}}, "INVALID_ARGS", "source.on"),
        ({"source": {"function_id": "f", "capture": ["body"]}}, "INVALID_ARGS", "capture"),
        ({"source": {"function_id": "f", "deliver": "all"}}, "INVALID_ARGS", "source.deliver"),
        ({"source": {"function_id": "f", "args": [1]}}, "INVALID_ARGS", "source.args"),
        ({"source": {"function_id": "f", "namespace": ""}}, "INVALID_ARGS", "source.namespace"),
        (
            {"source": {"function_id": "f", "filters": {"input.op": "insert"}}},
            "INVALID_FILTER",
            "literal values need an operator",
        ),
        ({"source": {"function_id": "audit::log"}}, "SELF_TARGET", "its own observer's target"),
    ],
)
def test_stage_a_failures_answer_error_and_store_nothing(
    world: World, fields: dict[str, Any], code: str, text: str
) -> None:
    res = world.observe(conn("watcher"), **fields)
    assert res.state == "error" and res.error.code == code and text in res.error.message
    assert world.table.observers == {}


def test_a_session_denied_the_source_or_target_gets_forbidden(world: World) -> None:
    world.host.denied[("default", "audit::log")] = "function 'audit::log' not allowed"
    res = world.observe(conn("w"))
    assert (res.state, res.error.code) == ("error", "FORBIDDEN")
    assert res.error.message == "function 'audit::log' not allowed"


def test_args_on_an_auto_source_are_invalid_args_without_any_owner_frame(world: World) -> None:
    owner = conn("shop")
    world.register(owner, "orders::create")
    outbox(owner)
    res = world.observe(conn("w"), source={"function_id": "orders::create", "args": {"a": 1}})
    assert (res.state, res.error.code) == ("error", "INVALID_ARGS")
    assert res.error.message == "orders::create takes no args"
    assert outbox(owner) == []


def test_args_format_of_an_owner_source_is_checked_before_any_hook(world: World) -> None:
    owner = conn("cron")
    schema = {"type": "object", "required": ["expression"]}
    world.register(owner, "cron::tick", {"delivery": "owner", "args_format": schema})
    outbox(owner)
    w = conn("w")
    bad = world.observe(w, "bad", source={"function_id": "cron::tick", "args": {"x": 1}})
    assert (bad.state, bad.error.code) == ("error", "INVALID_ARGS")
    assert "expression" in bad.error.message and outbox(owner) == []
    good = world.observe(
        w, "good", source={"function_id": "cron::tick", "args": {"expression": "*"}}
    )
    assert good.state == "pending"
    (added,) = of(owner, m.ObserverAdded)
    assert added.observer["args"] == {"expression": "*"} and added.revision == 1


def test_not_observable_when_the_source_disallows_it(world: World) -> None:
    world.register(conn("shop"), "orders::create", {"allow": False})
    res = world.observe(conn("w"))
    assert (res.state, res.error.code) == ("error", "NOT_OBSERVABLE")


def test_owner_handshake_active_only_after_the_ack(world: World) -> None:
    owner, w = conn("shop"), conn("w")
    world.register(owner, "orders::create")
    world.register(w, "audit::log")
    assert world.observe(w, source={"function_id": "orders::create", "filters": {}}).state == (
        "pending"
    )
    (added,) = of(owner, m.ObserverAdded)
    assert added.observer == {
        "id": "o1",
        "args": {},
        "filters": {},
        "target": "audit::log",
        "capture": ["input", "output", "caller"],
        "on": "success",
    }
    ack = m.ObserverAck("orders::create", "o1", added.revision)
    world.table.ack(conn("stranger"), ack, world.host.t)  # not the owner: ignored
    assert world.table.observers["o1"].state == "pending"
    world.table.ack(owner, ack, world.host.t)
    assert [s.state for s in of(w, m.ObserverStateChanged)] == ["active"]


def test_a_stale_ack_is_ignored_and_a_rejection_becomes_the_error_reason(world: World) -> None:
    owner, w = conn("shop"), conn("w")
    world.register(owner, "orders::create")
    world.register(w, "audit::log")
    world.observe(w)
    (added,) = of(owner, m.ObserverAdded)
    world.register(owner, "orders::create")  # replay: re-announced at the current revision
    rev, listed = world.last_registered
    assert rev == added.revision and [o["id"] for o in listed] == ["o1"]
    world.table.ack(owner, m.ObserverAck("orders::create", "o1", rev - 1), world.host.t)
    assert world.table.observers["o1"].state == "pending"
    err = m.ErrorBody("INVALID_CRON_EXPRESSION", "bad expression")
    world.table.ack(owner, m.ObserverAck("orders::create", "o1", rev, error=err), world.host.t)
    (changed,) = of(w, m.ObserverStateChanged)
    assert (changed.state, changed.reason) == ("error", err)
    (removed,) = of(owner, m.ObserverRemoved)
    assert (removed.id, removed.revision) == ("o1", rev + 1)
    assert "o1" not in world.table.observers


def test_no_ack_in_time_is_owner_timeout(world: World) -> None:
    owner, w = conn("shop"), conn("w")
    world.register(owner, "orders::create")
    world.register(w, "audit::log")
    world.observe(w)
    assert world.table.next_wakeup() == world.host.t + ACK_DEADLINE
    world.table.tick(world.host.t + ACK_DEADLINE - 0.001)
    assert world.table.observers["o1"].state == "pending"
    world.table.tick(world.host.t + ACK_DEADLINE)
    (changed,) = of(w, m.ObserverStateChanged)
    assert (changed.state, changed.reason.code) == ("error", "OWNER_TIMEOUT")


def test_revisions_never_decrease_across_owners(world: World) -> None:
    first, w = conn("shop"), conn("w")
    entry = world.register(first, "orders::create")
    world.observe(w, "a")
    world.observe(w, "b")
    revs = [x.revision for x in of(first, m.ObserverAdded)]
    assert revs == [1, 2]
    world.unregister(entry)
    second = conn("shop2")
    world.register(second, "orders::create")
    rev, listed = world.last_registered
    assert rev == 2 and sorted(o["id"] for o in listed) == ["a", "b"]
    world.table.unobserve(w, m.Unobserve("a"), world.host.t)
    (removed,) = of(second, m.ObserverRemoved)
    assert removed.revision == 3


def fired(world: World) -> list[Any]:
    return [a.job for a in world.host.activations]


def active_world(**fields: Any) -> tuple[World, Any]:
    world = World()
    owner, w = conn("shop", OLD), conn("w")
    world.register(owner, "orders::create")
    world.register(w, "audit::log")
    assert world.observe(w, **fields).state == "active"
    return world, w


def test_an_event_activates_the_target_with_the_envelope_and_caller() -> None:
    world, _ = active_world(metadata={"team": "a"})
    world.table.fire(world.table.observers["o1"], event(depth=2))
    (job,) = fired(world)
    assert job.data == {
        "observer_id": "o1",
        "activation_id": "act-1",
        "function_id": "orders::create",
        "namespace": "default",
        "invocation_id": "inv-1",
        "status": "success",
        "input": {"n": 1},
        "output": {"ok": True},
        "started_at_ms": 1234,
        "duration_ms": 2.5,
    }
    assert job.caller == {
        "worker_name": "iii-engine",
        "function_id": "orders::create",
        "invocation_id": "inv-1",
    }
    assert (job.depth, job.metadata, job.activation_id) == (3, {"team": "a"}, "act-1")


def test_deliver_input_sends_the_input_itself() -> None:
    world, _ = active_world(
        source={"function_id": "orders::create", "deliver": "input", "capture": []}
    )
    assert world.table.observers["o1"].spec.capture == ("input",)
    world.table.fire(world.table.observers["o1"], event())
    assert fired(world)[0].data == {"n": 1}


def test_max_fires_disposes_after_the_last_activation_is_dispatched() -> None:
    world, w = active_world(max_fires=1)
    obs = world.table.observers["o1"]
    world.table.fire(obs, event())
    world.table.fire(obs, event())
    assert len(fired(world)) == 1
    (changed,) = of(w, m.ObserverStateChanged)
    assert (changed.state, changed.reason.code, changed.fires) == ("disposed", "MAX_FIRES", 1)
    assert changed.reason.message == "fired 1 time"
    res = world.observe(w)  # a replay after disposal: the tombstone answers
    assert (res.state, res.error.code) == ("disposed", "MAX_FIRES")


def test_expiry_is_a_timer_and_disposes_with_expired() -> None:
    world, w = active_world(expires_in_ms=300)
    assert world.host.wakes[0] == world.host.t + 0.3
    world.table.tick(world.host.t + 0.299)
    assert world.table.observers["o1"].state == "active"
    world.table.tick(world.host.t + 0.3)
    (changed,) = of(w, m.ObserverStateChanged)
    assert (changed.state, changed.reason.code) == ("disposed", "EXPIRED")
    assert ("default", "orders::create") not in world.table.watched


def test_the_loop_guard_drops_activations_deeper_than_eight() -> None:
    world, _ = active_world()
    obs = world.table.observers["o1"]
    for depth in range(10):
        world.table.fire(obs, event(depth=depth))
    assert [j.depth for j in fired(world)] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert obs.dropped == {"LOOP_GUARD": 2} and obs.state == "active" and obs.fires == 8


def test_max_in_flight_queues_and_nothing_accepted_is_lost() -> None:
    world, _ = active_world(max_in_flight=2)
    obs = world.table.observers["o1"]
    for _ in range(5):
        world.table.fire(obs, event())
    assert len(world.host.activations) == 2 and len(obs.queue) == 3
    for i in range(5):
        world.host.activations[i].on_done({"ok": True}, None)
    assert len(world.host.activations) == 5 and obs.in_flight == 0
    assert len({a.job.activation_id for a in world.host.activations}) == 5


def test_unobserve_disposes_silently_and_only_from_the_observing_worker() -> None:
    world, w = active_world()
    world.table.unobserve(conn("other"), m.Unobserve("o1"), world.host.t)
    assert world.table.observers["o1"].state == "active"
    world.table.unobserve(w, m.Unobserve("o1"), world.host.t)
    assert "o1" not in world.table.observers and outbox(w) == []
    assert world.table.watched == {}


def test_a_departed_observer_is_kept_for_the_grace_and_rebound_by_a_replay() -> None:
    world, w = active_world()
    w.closing = True
    world.table.connection_gone(w.worker_id, world.host.t)
    obs = world.table.observers["o1"]
    assert obs.reason is not None
    assert (obs.state, obs.reason.code) == ("suspended", "OBSERVER_DISCONNECTED")
    world.table.fire(obs, event())
    assert fired(world) == [] and obs.dropped == {"INACTIVE": 1}
    again = conn("w")
    res = world.observe(again)
    assert res.state == "active" and world.table.observers["o1"].conn is again
    world.table.tick(world.host.t + GRACE)  # the grace timer no longer applies
    assert world.table.observers["o1"].state == "active"


def test_the_grace_elapsing_disposes_with_observer_gone() -> None:
    world, w = active_world()
    w.closing = True
    world.table.connection_gone(w.worker_id, world.host.t)
    world.table.tick(world.host.t + GRACE)
    assert "o1" not in world.table.observers
    assert world.table.tombstones["o1"].reason.code == "OBSERVER_GONE"


def test_an_id_held_by_another_live_connection_is_a_conflict() -> None:
    world, _ = active_world()
    res = world.observe(conn("thief"))
    assert (res.state, res.error.code) == ("error", "OBSERVER_ID_CONFLICT")


def test_reports_activate_only_matched_active_observers_of_the_senders_function() -> None:
    world = World()
    owner, w = conn("shop"), conn("w")
    world.register(owner, "orders::create")
    world.register(w, "audit::log")
    world.observe(w, "o1", source={"function_id": "orders::create", "capture": ["input"]})
    world.observe(w, "o2")
    for added in of(owner, m.ObserverAdded):
        ack = m.ObserverAck("orders::create", added.observer["id"], added.revision)
        world.table.ack(owner, ack, world.host.t)
    item = {
        "function_id": "orders::create",
        "invocation_id": "local-1",
        "matched": ["o1"],
        "status": "success",
        "input": None,
        "output": None,
        "started_at_ms": 7,
        "duration_ms": 1,
        "observe_depth": 3,
    }
    world.table.reported(conn("stranger"), [item])
    assert fired(world) == [] and world.table.observers["o1"].dropped == {"INACTIVE": 1}
    world.table.reported(owner, [item])
    (job,) = fired(world)
    assert job.data["input"] is None and "output" not in job.data  # captured parts only
    assert job.data["invocation_id"] == "local-1" and job.depth == 4


def test_owner_calls_go_to_the_stored_target_and_answer_the_owner() -> None:
    world = World()
    owner, w = conn("cron"), conn("w")
    world.register(owner, "cron::tick", {"delivery": "owner"})
    world.register(w, "audit::log")
    world.observe(w, source={"function_id": "cron::tick"}, metadata={"m": 1})
    answers: list[Any] = []
    call = m.InvokeFunction(
        "whatever", {"tick": 1}, activation={"observer_id": "o1"}, observe_depth=2
    )
    world.table.owner_call(owner, call, lambda r, e: answers.append((r, e)))
    assert answers[0][1].code == "OBSERVER_NOT_ACTIVE"
    assert answers[0][1].message == "observer o1 is pending"
    (added,) = of(owner, m.ObserverAdded)
    world.table.ack(owner, m.ObserverAck("cron::tick", "o1", added.revision), world.host.t)
    world.table.owner_call(owner, call, lambda r, e: answers.append((r, e)))
    (act,) = world.host.activations
    assert act.entry.function_id == "audit::log"
    assert (act.job.data, act.job.metadata, act.job.depth) == ({"tick": 1}, {"m": 1}, 3)
    assert act.job.caller["worker_name"] == "cron"
    act.on_done({"done": True}, None)
    assert answers[1] == ({"done": True}, None)


def test_detail_shows_filters_and_drop_counters() -> None:
    world, _ = active_world(
        source={"function_id": "orders::create", "filters": {"input.n": {"$gte": 2}}}
    )
    obs = world.table.observers["o1"]
    world.table.fire(obs, event(depth=8))
    shown = detail(world.table, "o1")
    assert shown is not None
    assert shown["dropped"] == {"LOOP_GUARD": 1}
    assert shown["source"]["filters"] == {"input.n": {"$gte": 2}}
    assert detail(world.table, "nope") is None


def test_observeresult_warns_of_roots_an_observer_can_never_see() -> None:
    world = World()
    world.register(conn("shop", OLD), "orders::create")
    world.register(conn("cron", OLD), "cron::tick", {"delivery": "owner"})
    w = conn("w")
    world.register(w, "audit::log")
    quiet = world.observe(w, "a", source={"function_id": "orders::create"})
    assert quiet.warnings is None
    res = world.observe(
        w, "b", source={"function_id": "orders::create", "filters": {"error.code": {"$eq": "x"}}}
    )
    assert res.warnings == [
        "filters read 'error', which can never be present (calls seen with on \"success\" "
        "never carry it)"
    ]
    res = world.observe(
        w,
        "c",
        source={"function_id": "cron::tick", "deliver": "output", "capture": ["input"]},
    )
    assert res.warnings == ["capture extended with 'output' for deliver"]
