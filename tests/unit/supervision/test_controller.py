"""The child manager on virtual time with a fake launcher and a fake bus.

Whole crash loops, health kills, dependency gating and ordered shutdown run in milliseconds:
``autojump_clock`` jumps over every sleep once all tasks are blocked.
"""

from __future__ import annotations

import random
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import pytest
import trio
import trio.testing

from supervisor.config.model import Backoff, EngineConfig, Health, RestartMode
from supervisor.supervision.children import ChildManager, ShuttingDown, UnknownWorker
from supervisor.supervision.states import WorkerState
from tests.unit.supervision.fakes import (
    Behaviour,
    FakeBus,
    FakeLauncher,
    WorkerView,
    command_worker,
    config,
    eventually,
)

FAST = Backoff(initial=0.1, max=0.4, multiplier=2.0, jitter=0.0, reset_after=60.0)


class Harness:
    def __init__(self, manager: ChildManager, launcher: FakeLauncher, bus: FakeBus) -> None:
        self.manager = manager
        self.launcher = launcher
        self.bus = bus
        self.criticals: list[str] = []

    def state(self, name: str) -> WorkerState:
        return self.manager.get(name).state

    async def until(self, name: str, state: WorkerState, within: float = 120.0) -> None:
        with trio.fail_after(within):
            await self.manager.get(name).wait_for(lambda w: w.state is state)


class HarnessFactory(Protocol):
    async def __call__(
        self,
        cfg: EngineConfig,
        script: Callable[[str, int], Behaviour] | None = None,
        **kw: Any,
    ) -> Harness: ...


@pytest.fixture
async def harness_factory(nursery: trio.Nursery) -> AsyncIterator[HarnessFactory]:
    async def make(
        cfg: EngineConfig, script: Callable[[str, int], Behaviour] | None = None, **kw: Any
    ) -> Harness:
        bus = FakeBus()
        launcher = FakeLauncher(script)
        holder: list[Harness] = []
        manager = ChildManager(
            cfg,
            bus,
            launcher=launcher,
            rng=random.Random(3),
            on_critical=lambda name: holder[0].criticals.append(name),
            **kw,
        )
        h = Harness(manager, launcher, bus)
        holder.append(h)
        await nursery.start(manager.run)
        return h

    yield make


async def test_crash_loop_backs_off_then_fails_others_keep_running(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(
        command_worker("crasher", backoff=FAST, max_restarts=3, restart_window=30.0),
        command_worker("steady"),
    )

    def script(name: str, n: int) -> Behaviour:
        if name == "crasher":
            return Behaviour(exit_after=0.01, exit_code=1, output=("boom",))
        return Behaviour()

    h = await harness_factory(cfg, script)
    events: list[dict[str, object]] = []
    with h.manager.subscribe() as sub:
        await h.until("crasher", WorkerState.FAILED)
        while True:
            try:
                events.append(sub.receive_nowait())
            except trio.WouldBlock:
                break
    crasher = h.launcher.of("crasher")
    assert len(crasher) == 4  # 3 automatic restarts
    gaps = [b.started - a.ended_at for a, b in zip(crasher, crasher[1:], strict=False)]  # type: ignore[operator]
    assert gaps == pytest.approx([0.1 + 0.01, 0.2 + 0.01, 0.4 + 0.01], abs=1e-6)  # + spawn time
    w = h.manager.get("crasher").snapshot()
    assert w["last_error"]["code"] == "RESTART_INTENSITY"
    assert w["last_exit"]["code"] == 1 and w["last_exit"]["cause"] == "exited"
    assert "boom" in w["last_error"]["log_tail"]
    assert w["next_restart_at"] is None
    assert w["restarts"] == 3
    seq = [e["to"] for e in events if e.get("event") == "transition" and e["worker"] == "crasher"]
    assert seq[-1] == "failed" and seq.count("backoff") == 3
    await h.until("steady", WorkerState.READY)
    assert len(h.launcher.of("steady")) == 1
    assert "failed: crasher" in h.manager.summary()


async def test_jitter_spreads_simultaneous_restarts(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    jittery = Backoff(initial=1.0, max=30.0, multiplier=2.0, jitter=0.2)
    cfg = config(*(command_worker(f"w{i}", backoff=jittery) for i in range(5)))
    h = await harness_factory(
        cfg, lambda name, n: Behaviour(exit_after=0.5, exit_code=1) if n == 1 else Behaviour()
    )
    for i in range(5):
        await h.until(f"w{i}", WorkerState.READY)
    second_starts = sorted(h.launcher.of(f"w{i}")[1].started for i in range(5))
    assert len(set(second_starts)) == 5
    assert second_starts[-1] - second_starts[0] > 0.05  # not in lockstep


async def test_backoff_resets_after_reset_after_of_readiness(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(
        command_worker("w", backoff=Backoff(initial=1.0, max=30.0, jitter=0.0, reset_after=60.0))
    )

    def script(name: str, n: int) -> Behaviour:
        # three quick crashes, then one that runs for 100 s (ready after 1 s), then crashes.
        return Behaviour(exit_after=100.0 if n == 4 else 0.1, exit_code=1)

    h = await harness_factory(cfg, script)
    await eventually(lambda: len(h.launcher.of("w")) >= 6, 400, 0.5)
    c = h.launcher.of("w")
    assert c[1].started - c[0].ended_at == pytest.approx(1.01)  # type: ignore[operator]
    assert c[3].started - c[2].ended_at == pytest.approx(4.01)  # type: ignore[operator]
    # after 99 s of readiness, the next restart uses the initial delay again
    assert c[4].started - c[3].ended_at == pytest.approx(1.01)  # type: ignore[operator]


async def test_stop_during_backoff_cancels_the_restart(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("w", backoff=Backoff(initial=10.0, jitter=0.0)))
    h = await harness_factory(cfg, lambda name, n: Behaviour(exit_after=0.1, exit_code=1))
    await h.until("w", WorkerState.BACKOFF)
    result = (await h.manager.stop(["w"]))[0]
    assert result.changed and result.state == "stopped"
    await trio.sleep(60)
    assert len(h.launcher.of("w")) == 1
    assert h.state("w") is WorkerState.STOPPED


async def test_start_during_backoff_skips_the_wait(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("w", backoff=Backoff(initial=10.0, jitter=0.0)))
    h = await harness_factory(
        cfg, lambda name, n: Behaviour(exit_after=0.1, exit_code=1) if n == 1 else Behaviour()
    )
    await h.until("w", WorkerState.BACKOFF)
    t0 = trio.current_time()
    await h.manager.start(["w"], within=30)
    assert h.state("w") is WorkerState.READY
    assert h.launcher.of("w")[1].started - t0 < 1.0


async def test_restart_one_worker_leaves_the_others(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("a"), command_worker("b"))
    h = await harness_factory(cfg)
    await h.until("a", WorkerState.READY)
    await h.until("b", WorkerState.READY)
    old_a, old_b = h.manager.get("a").pid, h.manager.get("b").pid
    result = await h.manager.restart(["a"], within=30)
    assert result[0].changed and result[0].state == "ready"
    assert h.manager.get("a").pid != old_a
    assert h.manager.get("b").pid == old_b
    assert h.launcher.of("a")[0].signals[:2] == [signal.SIGTERM, signal.SIGCONT]
    assert h.manager.get("a").snapshot()["restarts"] == 0  # operator restarts do not count
    assert h.manager.get("a").snapshot()["last_exit"]["cause"] == "requested"


async def test_concurrent_restarts_cause_one_restart(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("a"))
    h = await harness_factory(cfg)
    await h.until("a", WorkerState.READY)
    async with trio.open_nursery() as n:
        n.start_soon(h.manager.restart, ["a"])
        n.start_soon(h.manager.restart, ["a"])
    assert len(h.launcher.of("a")) == 2


async def test_127_before_ready_fails_without_restart(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("ghost"), command_worker("ok"))

    def script(name: str, n: int) -> Behaviour:
        if name == "ghost":
            return Behaviour(exit_after=0.01, exit_code=127, output=("sh: 1: nope: not found",))
        return Behaviour()

    h = await harness_factory(cfg, script)
    await h.until("ghost", WorkerState.FAILED)
    await h.until("ok", WorkerState.READY)
    await trio.sleep(30)
    w = h.manager.get("ghost").snapshot()
    assert w["restarts"] == 0 and w["spawns"] == 1
    assert w["last_error"]["code"] == "START_COMMAND_NOT_FOUND"
    assert "ghost" in w["last_error"]["message"] and "run-ghost" in w["last_error"]["message"]
    assert "not found" in w["last_error"]["log_tail"][-1]


async def test_spawn_error_fails_then_start_recovers(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("ghost2"))
    h = await harness_factory(cfg, lambda name, n: Behaviour(spawn_error=(n == 1)))
    await h.until("ghost2", WorkerState.FAILED)
    w = h.manager.get("ghost2").snapshot()
    assert w["last_exit"]["cause"] == "spawn_error"
    assert w["last_error"]["code"] == "SPAWN_FAILED" and "ENOENT" in w["last_error"]["message"]
    await h.manager.start(["ghost2"], within=30)
    assert h.state("ghost2") is WorkerState.READY


async def test_on_failure_clean_exit_is_exited(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("once", restart=RestartMode.ON_FAILURE))
    h = await harness_factory(cfg, lambda name, n: Behaviour(exit_after=0.01, exit_code=0))
    await h.until("once", WorkerState.EXITED)
    await trio.sleep(10)
    assert len(h.launcher.of("once")) == 1


async def test_health_timeout_kills_and_restarts(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    health = Health(interval=0.2, timeout=1.0, kill_grace=0.5)
    cfg = config(command_worker("hang", health=health, backoff=FAST))
    h = await harness_factory(cfg, lambda name, n: Behaviour(on_term="ignore"))
    await h.until("hang", WorkerState.READY)
    first = h.launcher.of("hang")[0]
    # the fake bus attributes a connection to the child by its pid, and stops answering pings
    h.bus.announce(WorkerView("c-1", name="hang", pid=first.pid))
    h.bus.ping_ok = lambda wid: False
    events: list[dict[str, object]] = []
    with h.manager.subscribe() as sub:
        await eventually(lambda: len(h.launcher.of("hang")) >= 2, 30, 0.1)
        h.bus.ping_ok = lambda wid: True
        await h.until("hang", WorkerState.READY)
        while True:
            try:
                events.append(sub.receive_nowait())
            except trio.WouldBlock:
                break
    seq = [(e["to"], e["cause"]) for e in events if e.get("event") == "transition"]
    assert seq[:3] == [
        ("stopping", "health_timeout"),
        ("backoff", "health_timeout"),
        ("starting", "backoff"),
    ]
    assert first.signals[:3] == [signal.SIGTERM, signal.SIGCONT, signal.SIGKILL]  # TERM ignored
    w = h.manager.get("hang").snapshot()
    assert w["last_exit"]["cause"] == "health_timeout"
    assert w["last_error"]["code"] == "HEALTH_TIMEOUT"
    assert w["restarts"] == 1
    assert "c-1" in h.bus.closed  # evicted before the replacement was spawned


async def test_bus_readiness_waits_for_registration_and_settles(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("sdk", readiness="bus", ready_functions=("sdk::b",)))
    h = await harness_factory(cfg)
    await trio.sleep(5)
    assert h.state("sdk") is WorkerState.STARTING  # spawned, nothing registered
    child = h.launcher.of("sdk")[0]
    h.bus.announce(WorkerView("c-9", name="other-name", pid=child.pid, function_ids=("sdk::a",)))
    await trio.sleep(5)
    assert h.state("sdk") is WorkerState.STARTING  # ready_functions not all there yet
    h.bus.announce(
        WorkerView("c-9", name="other-name", pid=child.pid, function_ids=("sdk::a", "sdk::b"))
    )
    t0 = trio.current_time()
    await h.until("sdk", WorkerState.READY)
    assert trio.current_time() - t0 >= 0.2  # registrations settled first
    w = h.manager.get("sdk").snapshot()
    assert w["bus"]["functions"] == ["sdk::a", "sdk::b"]
    assert w["bus"]["registered_name"] == "other-name"


async def test_start_timeout(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(
        command_worker("slow", readiness="bus", start_timeout=5.0, restart=RestartMode.NEVER)
    )
    h = await harness_factory(cfg)
    await h.until("slow", WorkerState.FAILED)
    w = h.manager.get("slow").snapshot()
    assert w["last_error"]["code"] == "START_TIMEOUT"
    assert w["last_exit"]["cause"] == "start_timeout"


async def test_dependencies_gate_start_and_failure_propagates(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(
        command_worker("a", min_uptime=2.0),
        command_worker("b", depends_on=("a",)),
    )
    broken = {"a": True}

    def script(name: str, n: int) -> Behaviour:
        if name == "a" and broken["a"]:
            return Behaviour(exit_after=0.01, exit_code=127)
        return Behaviour()

    h = await harness_factory(cfg, script)
    await h.until("a", WorkerState.FAILED)
    await h.until("b", WorkerState.FAILED)
    assert h.launcher.of("b") == []  # never spawned before a was ready
    assert h.manager.get("b").snapshot()["last_error"]["code"] == "DEPENDENCY_FAILED"
    broken["a"] = False
    await h.manager.start(["a"], within=30)
    await h.until("b", WorkerState.READY)  # started automatically once a is ready
    assert h.launcher.of("b")[0].started >= h.launcher.of("a")[1].started + 2.0


async def test_shutdown_stops_in_reverse_dependency_waves(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(
        command_worker("a"),
        command_worker("b", depends_on=("a",)),
        command_worker("c", depends_on=("b",)),
        command_worker("d"),
    )
    h = await harness_factory(cfg, lambda name, n: Behaviour(on_term="exit0"))
    for n in "abcd":
        await h.until(n, WorkerState.READY)
    await h.manager.shutdown(within=30)
    ended = {n: h.launcher.of(n)[0].end_seq for n in "abcd"}
    assert ended["c"] < ended["b"] < ended["a"]
    assert ended["d"] < ended["b"]  # d is in the first wave, with c
    assert all(h.state(n) is WorkerState.STOPPED for n in "abcd")
    with pytest.raises(ShuttingDown):
        await h.manager.start(["a"])


async def test_shutdown_deadline_kills_stubborn_workers(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("stubborn", stop_timeout=100.0))
    h = await harness_factory(cfg, lambda name, n: Behaviour(on_term="ignore"))
    await h.until("stubborn", WorkerState.READY)
    t0 = trio.current_time()
    await h.manager.shutdown(within=3.0)
    child = h.launcher.of("stubborn")[0]
    assert child.status is not None and child.status.signal == signal.SIGKILL
    assert trio.current_time() - t0 == pytest.approx(3.0, abs=0.1)


async def test_stop_timeout_escalates_to_sigkill(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("stubborn", stop_timeout=1.0))
    h = await harness_factory(cfg, lambda name, n: Behaviour(on_term="ignore"))
    await h.until("stubborn", WorkerState.READY)
    t0 = trio.current_time()
    await h.manager.stop(["stubborn"])
    assert trio.current_time() - t0 >= 1.0 - 1e-9
    assert h.manager.get("stubborn").snapshot()["last_exit"]["signal_name"] == "SIGKILL"


async def test_drain_waits_for_in_flight_calls(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("sdk", readiness="bus", drain_timeout=5.0))
    h = await harness_factory(cfg)
    child_pid = None
    await eventually(lambda: h.launcher.of("sdk"), 10, 0.01)
    child_pid = h.launcher.of("sdk")[0].pid
    h.bus.announce(WorkerView("c-1", name="sdk", pid=child_pid))
    await h.until("sdk", WorkerState.READY)
    h.bus.in_flight["c-1"] = 1

    async def finish_call() -> None:
        await trio.sleep(2.0)
        h.bus.finish_call("c-1")

    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        n.start_soon(finish_call)
        await h.manager.stop(["sdk"])
    child = h.launcher.of("sdk")[0]
    assert child.ended_at - t0 == pytest.approx(2.0, abs=0.1)  # type: ignore[operator]


async def test_critical_worker_failure_escalates(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("core", critical=True, backoff=FAST, max_restarts=1))
    h = await harness_factory(cfg, lambda name, n: Behaviour(exit_after=0.01, exit_code=1))
    await h.until("core", WorkerState.FAILED)
    assert h.criticals == ["core"]


async def test_reset_failed_and_unknown_names(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("x", restart=RestartMode.NEVER))
    h = await harness_factory(cfg, lambda name, n: Behaviour(exit_after=0.01, exit_code=1))
    await h.until("x", WorkerState.FAILED)
    result = await h.manager.reset_failed(["x"])
    assert result[0].changed and result[0].state == "stopped"
    with pytest.raises(UnknownWorker) as info:
        await h.manager.stop(["ghost"])
    assert "known: x" in str(info.value)


async def test_startup_complete_and_summary(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(command_worker("a", min_uptime=3.0), command_worker("off", autostart=False))
    h = await harness_factory(cfg)
    assert not h.manager.startup_complete()
    await h.until("a", WorkerState.READY)
    assert h.manager.startup_complete()
    assert h.manager.summary() == "ready: 1/1 workers"


async def test_memory_limit_kills_after_two_samples(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    from supervisor.config.model import Limits
    from supervisor.supervision.procfs import GroupUsage

    cfg = config(
        command_worker(
            "fat",
            limits=Limits(memory=100 * 1024 * 1024),
            health=Health(interval=1.0),
            backoff=FAST,
        )
    )
    h = await harness_factory(cfg)
    rss = {"value": 10 * 1024 * 1024}

    class Table:
        def usage(self, pgid: int, root: int | None = None) -> GroupUsage:
            return GroupUsage(processes=1, rss_bytes=rss["value"], cpu_seconds=0.0)

        def descendants(self, root: int, *, force: bool = False) -> set[int]:
            return set()

    h.manager.proc_table = Table()  # type: ignore[assignment]
    await h.until("fat", WorkerState.READY)
    await trio.sleep(5)
    assert h.state("fat") is WorkerState.READY
    rss["value"] = 200 * 1024 * 1024
    t0 = trio.current_time()
    await h.until("fat", WorkerState.BACKOFF)
    assert trio.current_time() - t0 >= 1.0  # two consecutive samples, not one
    w = h.manager.get("fat").snapshot()
    assert w["last_exit"]["cause"] == "memory_limit"
    assert w["last_error"]["code"] == "MEMORY_LIMIT"


async def test_lost_bus_link_past_reconnect_grace_is_unresponsive(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory
) -> None:
    cfg = config(
        command_worker(
            "sdk",
            readiness="bus",
            reconnect_grace=3.0,
            health=Health(interval=0.5, timeout=2.0),
            backoff=FAST,
        )
    )
    h = await harness_factory(cfg)
    await eventually(lambda: h.launcher.of("sdk"), 10, 0.01)
    pid = h.launcher.of("sdk")[0].pid
    h.bus.announce(WorkerView("c-1", name="sdk", pid=pid))
    await h.until("sdk", WorkerState.READY)
    h.bus.views.clear()  # the SDK's connection drops; the process lives on
    await trio.sleep(2.0)
    w = h.manager.get("sdk").snapshot()
    assert w["state"] == "ready" and w["bus"]["connected"] is False
    h.bus.announce(WorkerView("c-2", name="sdk", pid=pid))  # reconnects within the grace
    await trio.sleep(2.0)
    assert h.state("sdk") is WorkerState.READY
    h.bus.views.clear()
    t0 = trio.current_time()
    await h.until("sdk", WorkerState.BACKOFF)
    assert trio.current_time() - t0 >= 3.0
    assert h.manager.get("sdk").snapshot()["last_exit"]["cause"] == "health_timeout"


async def test_a_controller_stuck_past_its_step_budget_is_reported_wedged(
    autojump_clock: trio.testing.MockClock, harness_factory: HarnessFactory, nursery: trio.Nursery
) -> None:
    """The watchdog's self-check: a stop whose SIGKILL never returns (a wedged keeper)
    makes ``wedged_controllers`` name that worker once its step budget is spent, and only
    then; the other controllers keep working and are not reported."""
    cfg = config(
        command_worker("stuck", stop_timeout=1.0, drain_timeout=0.0),
        command_worker("fine"),
    )
    h = await harness_factory(
        cfg,
        lambda name, n: Behaviour(on_term="ignore", kill_hangs=name == "stuck"),
    )
    await h.until("stuck", WorkerState.READY)
    await h.until("fine", WorkerState.READY)
    ctrl = h.manager.get("stuck")
    budget = ctrl.step_budget()
    nursery.start_soon(h.manager.stop, ["stuck"])
    await trio.sleep(budget - 1.0)
    assert ctrl.busy_since is not None and h.manager.wedged_controllers() == []
    await h.manager.restart(["fine"])  # another controller still answers
    await trio.sleep(2.0)
    assert h.manager.wedged_controllers() == ["stuck"]
