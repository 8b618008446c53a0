"""Capability negotiation and the ``functionregistered`` acknowledgement (OBSERVE.md §2, §4),
driven through the bus with no sockets."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from supervisor.engine.bus import Bus
from supervisor.engine.connection import Connection, Session
from supervisor.engine.features import ENGINE_FEATURES, declared_features
from supervisor.engine.functions import FunctionEntry
from supervisor.engine.runner import build_bus
from transport import messages as m

SDK025 = ["observe.v1", "local-dispatch.v1", "large-messages.v1"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Peer:
    """A connection attached to the bus whose outbox we read directly."""

    def __init__(self, bus: Bus, session: Session | None = None) -> None:
        self.bus = bus
        self.conn = Connection(kind="test", session=session or Session())
        bus.attach(self.conn)

    def register_worker(self, name: str | None = "w", **data: Any) -> None:
        payload = {"name": name, "pid": 7, **data}
        self.send(
            m.InvokeFunction("engine::workers::register", payload, action=m.TriggerAction("void"))
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

    def acks(self) -> list[m.FunctionRegistered]:
        return [x for x in self.outbox() if isinstance(x, m.FunctionRegistered)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bus(clock: Clock) -> Bus:
    return build_bus(clock=clock, invocation_deadline=60.0, namespace_grace_ms=5000)


def sdk025(bus: Bus, *functions: str, namespace: str | None = None, **kw: Any) -> Peer:
    """The 0.25 SDK's connect sequence: functions first, then engine::workers::register."""
    peer = Peer(bus)
    for fid in functions:
        peer.send(m.RegisterFunction(id=fid))
    peer.register_worker(features=kw.pop("features", SDK025), namespace=namespace, **kw)
    return peer


# -- workerregistered and the declared features --------------------------------------------


def test_workerregistered_lists_the_engine_features_once_as_the_first_frame(bus: Bus) -> None:
    peer = Peer(bus)
    peer.register_worker(features=SDK025)
    frames = peer.outbox()
    greetings = [x for x in frames if isinstance(x, m.WorkerRegistered)]
    assert frames[0] is greetings[0] and len(greetings) == 1
    assert greetings[0].features == ["observe.v1", "local-dispatch.v1"] == list(ENGINE_FEATURES)
    assert greetings[0].worker_id == peer.conn.worker_id


def test_declared_features_are_stored_on_the_connection(bus: Bus) -> None:
    peer = sdk025(bus)
    assert peer.conn.features == frozenset(SDK025)


def test_an_older_sdk_declares_no_features(bus: Bus) -> None:
    peer = Peer(bus)
    peer.register_worker()
    assert peer.conn.features == frozenset()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["observe.v1", "teleport.v9"], {"observe.v1"}),  # unknown strings are ignored
        (["observe.v1", 3, None, {"x": 1}], {"observe.v1"}),  # so are non-strings
        ("observe.v1", set()),  # not an array: none
        ({"observe.v1": True}, set()),
        (None, set()),
        ([], set()),
    ],
)
def test_malformed_features_read_as_the_known_strings_only(raw: Any, expected: set[str]) -> None:
    assert declared_features(raw) == frozenset(expected)


def test_malformed_features_do_not_fail_the_registration(bus: Bus) -> None:
    peer = Peer(bus)
    peer.register_worker(features={"observe.v1": True})
    assert peer.conn.registered and peer.conn.features == frozenset()


def test_a_second_register_keeps_the_first_features(bus: Bus) -> None:
    peer = sdk025(bus)
    peer.register_worker(features=[])
    assert peer.conn.features == frozenset(SDK025)
    late = Peer(bus)
    late.register_worker()
    late.register_worker(features=SDK025)
    assert late.conn.features == frozenset()


# -- functionregistered ---------------------------------------------------------------------


def test_buffered_registrations_are_acknowledged_after_the_features_are_known(bus: Bus) -> None:
    peer = sdk025(bus, "orders::create", "orders::list", namespace="shop")
    acks = peer.acks()
    assert [a.id for a in acks] == ["orders::create", "orders::list"]
    for ack in acks:
        assert (ack.namespace, ack.revision, ack.local_dispatch, ack.observers) == (
            "shop",
            0,
            True,
            [],
        )


def test_functionregistered_is_written_with_every_field() -> None:
    from transport import codec

    ack = m.FunctionRegistered(
        id="f", namespace="default", revision=0, local_dispatch=False, observers=[]
    )
    assert codec.to_dict(ack) == {
        "type": "functionregistered",
        "id": "f",
        "namespace": "default",
        "revision": 0,
        "local_dispatch": False,
        "observers": [],
    }


def test_registration_after_register_is_acknowledged_at_once(bus: Bus) -> None:
    peer = sdk025(bus)
    peer.outbox()
    peer.send(m.RegisterFunction(id="late::fn"))
    (ack,) = peer.acks()
    assert (ack.id, ack.namespace, ack.local_dispatch) == ("late::fn", "default", True)


def test_an_older_sdk_gets_no_functionregistered(bus: Bus) -> None:
    peer = Peer(bus)
    peer.send(m.RegisterFunction(id="a::f"))
    peer.register_worker()
    peer.send(m.RegisterFunction(id="a::g"))
    assert peer.acks() == []
    assert ("default", "a::g") in bus.functions


def test_re_registration_by_the_same_connection_is_acknowledged_again(bus: Bus) -> None:
    peer = sdk025(bus, "f")
    peer.send(m.RegisterFunction(id="f", description="again"))
    assert [a.id for a in peer.acks()] == ["f", "f"]


def test_observe_without_local_dispatch_gets_local_dispatch_false(bus: Bus) -> None:
    peer = sdk025(bus, "f", features=["observe.v1"])
    (ack,) = peer.acks()
    assert ack.local_dispatch is False


def test_local_dispatch_without_observe_gets_no_ack(bus: Bus) -> None:
    peer = sdk025(bus, "f", features=["local-dispatch.v1"])
    assert peer.acks() == []


def test_a_conflicting_registration_gets_a_rejection_and_no_ack(bus: Bus) -> None:
    sdk025(bus, "shared::fn")
    other = sdk025(bus, "shared::fn", name="other")
    frames = other.outbox()
    assert not [x for x in frames if isinstance(x, m.FunctionRegistered)]
    (rejected,) = [x for x in frames if isinstance(x, m.RegistrationRejected)]
    assert rejected.code == "FUNCTION_NAMESPACE_CONFLICT"


def test_a_reserved_id_outside_default_gets_no_ack(bus: Bus) -> None:
    peer = sdk025(bus, "engine::mine", namespace="team")
    assert peer.acks() == []


def test_a_registration_refused_by_a_hook_gets_no_ack(bus: Bus) -> None:
    class Refuse:
        def on_registration(self, conn: Connection, msg: Any) -> str | None:
            return "no" if isinstance(msg, m.RegisterFunction) else None

    bus.hooks.add(Refuse())
    peer = sdk025(bus, "f")
    assert peer.acks() == []


def test_an_http_invoked_registration_that_is_not_stored_gets_no_ack(bus: Bus) -> None:
    peer = sdk025(bus)
    peer.send(m.RegisterFunction(id="hook::f", invocation={"url": "http://127.0.0.1:9/x"}))
    assert ("default", "hook::f") not in bus.functions
    assert peer.acks() == []


def test_a_session_that_refuses_local_calls_gets_local_dispatch_false(bus: Bus) -> None:
    @attrs.define(eq=False)
    class Guarded(Session):
        def local_dispatch_allowed(self, namespace: str, function_id: str) -> bool:
            return function_id != "secret::f"

    peer = Peer(bus, Guarded())
    peer.send(m.RegisterFunction(id="secret::f"))
    peer.send(m.RegisterFunction(id="open::f"))
    peer.register_worker(features=SDK025)
    assert {a.id: a.local_dispatch for a in peer.acks()} == {"secret::f": False, "open::f": True}


def test_a_connection_pinned_by_the_grace_is_acknowledged_when_it_registers(
    bus: Bus, clock: Clock
) -> None:
    peer = Peer(bus)
    peer.send(m.RegisterFunction(id="slow::f"))
    clock.now += 6
    bus.tick(clock.now)
    assert ("default", "slow::f") in bus.functions
    assert peer.acks() == []  # no features yet: no ack
    peer.register_worker(features=SDK025)
    (ack,) = peer.acks()
    assert (ack.id, ack.local_dispatch) == ("slow::f", True)


# -- the observer directory seam ------------------------------------------------------------


class Directory:
    """A stand-in observer table that records what the bus told it."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, str, str, bool]] = []
        self.removed: list[tuple[str, str]] = []

    def function_stored(
        self, entry: FunctionEntry, conn: Connection, sent_id: str
    ) -> tuple[int, list[dict[str, Any]]]:
        self.stored.append((entry.namespace, entry.function_id, sent_id, conn.registered))
        info = {"id": "obs-1", "args": {}, "filters": {}, "target": "t", "capture": [], "on": "x"}
        return 7, [info]

    def function_removed(self, entry: FunctionEntry, conn: Connection) -> None:
        self.removed.append((entry.namespace, entry.function_id))


def test_functionregistered_carries_the_directory_revision_and_observers(bus: Bus) -> None:
    directory = Directory()
    bus.observer_directory = directory
    peer = sdk025(bus, "f")
    (ack,) = peer.acks()
    assert ack.revision == 7
    assert ack.observers == [
        {"id": "obs-1", "args": {}, "filters": {}, "target": "t", "capture": [], "on": "x"}
    ]
    assert directory.stored == [("default", "f", "f", False)]


def test_the_directory_hears_of_registrations_of_older_sdks_too(bus: Bus) -> None:
    directory = Directory()
    bus.observer_directory = directory
    peer = Peer(bus)
    peer.register_worker()
    peer.send(m.RegisterFunction(id="g"))
    assert directory.stored == [("default", "g", "g", True)]
    assert peer.acks() == []


def test_the_directory_hears_when_an_owner_stops_owning_a_function(bus: Bus) -> None:
    directory = Directory()
    bus.observer_directory = directory
    peer = sdk025(bus, "f", "g")
    peer.send(m.UnregisterFunction(id="f"))
    assert directory.removed == [("default", "f")]
    bus.cleanup(peer.conn)
    assert directory.removed == [("default", "f"), ("default", "g")]


# -- frames that wait for the namespace and the features ------------------------------------


def test_deferred_frames_run_after_the_buffered_registrations_once_pinned(bus: Bus) -> None:
    seen: list[tuple[str, frozenset[str], bool]] = []

    def run(conn: Connection, msg: Any) -> None:
        seen.append((msg, conn.features, ("default", "f") in bus.functions))

    peer = Peer(bus)
    peer.send(m.RegisterFunction(id="f"))
    bus.registrar.defer(peer.conn, "observe-1", run)
    assert seen == []  # namespace pending: held
    peer.register_worker(features=SDK025)
    assert seen == [("observe-1", frozenset(SDK025), True)]
    bus.registrar.defer(peer.conn, "observe-2", run)  # pinned: runs at once
    assert [s[0] for s in seen] == ["observe-1", "observe-2"]


def test_deferred_frames_of_a_departed_connection_never_run(bus: Bus) -> None:
    seen: list[Any] = []
    peer = Peer(bus)
    bus.registrar.defer(peer.conn, "x", lambda conn, msg: seen.append(msg))
    bus.cleanup(peer.conn)
    assert seen == []
