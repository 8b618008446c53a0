"""Readiness and drain wait on bus events, on virtual time with the fake bus.

Bus readiness completes once a connection's registrations have been quiet for the settle
time, a "changed" event postpones it, and the settle cap bounds it; a stop's drain ends when
"drained" (or "disconnected") arrives, when the child ends, or at ``drain_timeout``. Each test
also shows that nothing polls: the bus is read only when an event or a deadline wakes the waiter.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from supervisor.supervision.buslike import BusNotices
from supervisor.supervision.incarnation import ConnectionAttribution, Incarnation
from supervisor.supervision.procfs import ProcessTable
from supervisor.supervision.readiness import SETTLE, SETTLE_CAP, wait_bus_ready
from supervisor.supervision.restart import ExitStatus
from supervisor.supervision.spawn import SpawnRequest
from supervisor.supervision.stopping import drain
from tests.unit.supervision.fakes import Behaviour, FakeBus, FakeChild, WorkerView


def _incarnation() -> Incarnation:
    request = SpawnRequest(name="sdk", argv=("run-sdk",), shell=None, env={}, cwd="/")
    child = FakeChild(request, Behaviour())
    attribution = ConnectionAttribution("sdk", False, child, ProcessTable())
    return Incarnation(child=child, number=1, started_mono=0.0, attribution=attribution)


def _wired() -> tuple[FakeBus, BusNotices]:
    bus = FakeBus()
    notices = BusNotices()
    bus.add_observer(notices.hear)
    return bus, notices


async def _ready_time(
    nursery: trio.Nursery, bus: FakeBus, notices: BusNotices, run: Incarnation, wanted: set[str]
) -> list[float]:
    """Start ``wait_bus_ready``; the returned list gets the trio time it completed at."""
    done: list[float] = []

    async def wait() -> None:
        await wait_bus_ready(
            run, lambda: run.connections(bus.workers()), notices, wanted=wanted, settle=SETTLE
        )
        done.append(trio.current_time())

    nursery.start_soon(wait)
    await trio.testing.wait_all_tasks_blocked()
    return done


async def test_bus_readiness_completes_once_registrations_are_quiet_for_the_settle_time(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    done = await _ready_time(nursery, bus, notices, run, {"sdk::a"})
    await trio.sleep(5.0)
    assert done == []  # nothing connected
    bus.announce(WorkerView("c-1", pid=run.child.pid, function_ids=("sdk::a",)))
    t0 = trio.current_time()
    reads = bus.reads
    await trio.sleep(1.0)
    assert done == [pytest.approx(t0 + SETTLE, abs=1e-9)]
    assert done[0] - t0 >= SETTLE
    assert run.ever_connected
    # One read when the event woke it, one when the quiet period ended: no polling.
    assert bus.reads - reads == 2


async def test_a_changed_event_postpones_bus_readiness(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    done = await _ready_time(nursery, bus, notices, run, {"sdk::a"})
    bus.announce(WorkerView("c-1", pid=run.child.pid, function_ids=("sdk::a",)))
    t0 = trio.current_time()
    await trio.sleep(0.15)
    changed = bus.announce(WorkerView("c-1", pid=run.child.pid, function_ids=("sdk::a", "sdk::b")))
    assert changed.revision == 1
    t1 = trio.current_time()
    await trio.sleep(0.1)
    assert done == []  # quiet for 0.25 s since the first registration, but not since the change
    await trio.sleep(1.0)
    assert done == [pytest.approx(t1 + SETTLE, abs=1e-9)]
    assert done[0] - t0 == pytest.approx(0.15 + SETTLE, abs=1e-9)


async def test_an_event_that_changes_no_registration_does_not_postpone_readiness(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    done = await _ready_time(nursery, bus, notices, run, {"sdk::a"})
    bus.announce(WorkerView("c-1", pid=run.child.pid, function_ids=("sdk::a",)))
    t0 = trio.current_time()
    await trio.sleep(0.1)
    bus.announce(WorkerView("other", pid=1, function_ids=("x::y",)))  # another worker's
    await trio.sleep(1.0)
    assert done == [pytest.approx(t0 + SETTLE, abs=1e-9)]


async def test_registrations_that_never_settle_are_capped(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    done = await _ready_time(nursery, bus, notices, run, {"sdk::f0"})
    t0 = trio.current_time()
    for n in range(40):  # a change every 0.1 s for 4 s
        bus.announce(
            WorkerView(
                "c-1", pid=run.child.pid, function_ids=tuple(f"sdk::f{i}" for i in range(n + 1))
            )
        )
        await trio.sleep(0.1)
    assert done == [pytest.approx(t0 + SETTLE_CAP, abs=1e-9)]


async def test_readiness_waits_for_every_ready_function(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    done = await _ready_time(nursery, bus, notices, run, {"sdk::a", "sdk::b"})
    bus.announce(WorkerView("c-1", pid=run.child.pid, function_ids=("sdk::a",)))
    await trio.sleep(5.0)
    assert done == []  # settled, but sdk::b is missing
    bus.announce(WorkerView("c-1", pid=run.child.pid, function_ids=("sdk::a", "sdk::b")))
    t1 = trio.current_time()
    await trio.sleep(1.0)
    assert done == [pytest.approx(t1 + SETTLE, abs=1e-9)]


# -- drain ------------------------------------------------------------------------------------


async def _drain_time(
    bus: FakeBus, notices: BusNotices, run: Incarnation, ids: list[str], timeout: float
) -> float:
    t0 = trio.current_time()
    await drain(bus, notices, ids, run.child, timeout)
    return trio.current_time() - t0


async def test_drain_lasts_until_the_bus_reports_drained(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    bus.announce(WorkerView("c-1", pid=run.child.pid))
    bus.in_flight["c-1"] = 2

    async def calls_finish() -> None:
        await trio.sleep(1.0)
        bus.finish_call("c-1")
        await trio.sleep(2.01)  # off any polling grid: only the event can end the drain here
        bus.finish_call("c-1")

    nursery.start_soon(calls_finish)
    elapsed = await _drain_time(bus, notices, run, ["c-1"], 10.0)
    assert elapsed == pytest.approx(3.01, abs=1e-9)
    assert bus.draining == {"c-1"}
    assert notices.not_quiet == frozenset()  # tracking ends with the drain


async def test_drain_gives_up_at_drain_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    bus.announce(WorkerView("c-1", pid=run.child.pid))
    bus.in_flight["c-1"] = 1  # never finishes
    assert await _drain_time(bus, notices, run, ["c-1"], 5.0) == pytest.approx(5.0, abs=1e-9)
    assert notices.not_quiet == frozenset()


async def test_an_idle_connection_drains_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    bus.announce(WorkerView("c-1", pid=run.child.pid))
    bus.announce(WorkerView("c-2", pid=run.child.pid))
    assert await _drain_time(bus, notices, run, ["c-1", "c-2"], 5.0) == 0.0


async def test_drain_waits_for_every_connection_and_a_disconnect_counts_as_drained(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    bus.announce(WorkerView("c-1", pid=run.child.pid))
    bus.announce(WorkerView("c-2", pid=run.child.pid))
    bus.in_flight.update({"c-1": 1, "c-2": 1})

    async def ends() -> None:
        await trio.sleep(1.0)
        bus.finish_call("c-1")
        await trio.sleep(1.5)
        bus.close_worker("c-2")  # its calls fail with it

    nursery.start_soon(ends)
    assert await _drain_time(bus, notices, run, ["c-1", "c-2"], 10.0) == pytest.approx(2.5)


async def test_drain_ends_when_the_child_exits_by_itself(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus, notices = _wired()
    run = _incarnation()
    bus.announce(WorkerView("c-1", pid=run.child.pid))
    bus.in_flight["c-1"] = 1

    async def exits() -> None:
        await trio.sleep(1.5)
        assert isinstance(run.child, FakeChild)
        run.child.end(ExitStatus(code=0))

    nursery.start_soon(exits)
    assert await _drain_time(bus, notices, run, ["c-1"], 10.0) == pytest.approx(1.5)
