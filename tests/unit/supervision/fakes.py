"""Hand-written fakes for the child manager (supervisord's DummyProcess idea, not mocks)."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from supervisor.config.model import EngineConfig, SuperviseSpec, WorkerEntry, WorkerKind
from supervisor.supervision.buslike import BusEventLike
from supervisor.supervision.logcapture import WorkerLog
from supervisor.supervision.restart import ExitStatus
from supervisor.supervision.spawn import SpawnError, SpawnRequest


@attrs.frozen
class WorkerView:
    worker_id: str
    name: str | None = None
    namespace: str = "default"
    pid: int | None = None
    label: str | None = None
    kind: str = "websocket"
    function_ids: tuple[str, ...] = ()
    trigger_type_ids: tuple[str, ...] = ()
    trigger_ids: tuple[str, ...] = ()
    connected_at: float = 0.0
    registered: bool = True
    active_invocations: int = 0
    peer: str | None = None
    draining: bool = False
    revision: int = 0


@attrs.frozen
class BusEvent:
    kind: str
    worker: WorkerView


class FakeBus:
    """The whole ``BusLike`` protocol over a list of views. Like the engine it bumps a
    connection's ``revision`` when its registrations change, and reports a draining
    connection "drained" once it has no call in flight (at once if it has none)."""

    def __init__(self) -> None:
        self.views: list[WorkerView] = []
        self.observers: list[Callable[[BusEventLike], None]] = []
        self.ping_ok: Callable[[str], bool] = lambda wid: True
        self.in_flight: dict[str, int] = {}
        self.draining: set[str] = set()
        self.closed: list[str] = []
        self.pings = 0
        self.reads = 0  # calls of workers(): a polling reader shows up here

    def add_observer(self, fn: Callable[[BusEventLike], None]) -> None:
        self.observers.append(fn)

    def emit(self, kind: str, view: WorkerView) -> None:
        for fn in self.observers:
            fn(BusEvent(kind, view))

    def workers(self) -> list[WorkerView]:
        self.reads += 1
        return list(self.views)

    def announce(self, view: WorkerView) -> WorkerView:
        """A connection registers (kind "registered"), or changes what it registered
        ("changed", with the revision bumped past the one it had)."""
        old = next((v for v in self.views if v.worker_id == view.worker_id), None)
        if old is not None:
            view = attrs.evolve(view, revision=max(view.revision, old.revision + 1))
        self.views = [v for v in self.views if v.worker_id != view.worker_id] + [view]
        self.emit("registered" if old is None else "changed", view)
        return view

    def view(self, worker_id: str) -> WorkerView | None:
        return next((v for v in self.views if v.worker_id == worker_id), None)

    async def ping(self, worker_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        self.pings += 1
        if self.ping_ok(worker_id):
            await trio.sleep(0.001)
            return True
        await trio.sleep(timeout)
        return False

    def set_draining(self, worker_id: str) -> None:
        view = self.view(worker_id)
        if view is None:
            return
        self.draining.add(worker_id)
        if self.in_flight.get(worker_id, 0) == 0:
            self.emit("drained", view)

    def finish_call(self, worker_id: str) -> None:
        """One call to ``worker_id`` completes."""
        self.in_flight[worker_id] -= 1
        view = self.view(worker_id)
        if self.in_flight[worker_id] == 0 and worker_id in self.draining and view is not None:
            self.emit("drained", view)

    def close_worker(self, worker_id: str) -> None:
        self.closed.append(worker_id)
        gone = [v for v in self.views if v.worker_id == worker_id]
        self.views = [v for v in self.views if v.worker_id != worker_id]
        for view in gone:
            self.emit("disconnected", view)

    async def serve_local(self, stream: trio.abc.Stream, *, label: str) -> None:
        await trio.sleep_forever()


@attrs.define
class Behaviour:
    """What one spawn of a fake worker does."""

    exit_after: float | None = None  # seconds until it exits by itself
    exit_code: int = 0
    exit_signal: int | None = None
    on_term: str = "die"  # die (killed by the signal) | exit0 | ignore
    kill_hangs: bool = False  # SIGKILL delivery never returns (a wedged keeper)
    spawn_error: bool = False
    output: tuple[str, ...] = ()


class FakeChild:
    _pids = itertools.count(10_000, 10)

    def __init__(self, request: SpawnRequest, behaviour: Behaviour) -> None:
        self.request = request
        self.behaviour = behaviour
        keeper_pid = next(self._pids)
        # Typed as ``ChildHandle`` declares them: a real child may not know them yet.
        self.keeper_pid: int | None = keeper_pid
        self.pgid: int | None = keeper_pid
        self.pid: int | None = keeper_pid + 1
        self.keeper_start_time: int | None = 1
        self.worker_start_time: int | None = 2
        self.spawned_at = time.time()
        self.ended = trio.Event()
        self.status: ExitStatus | None = None
        self.signals: list[int] = []
        self.started = trio.current_time()
        self.ended_at: float | None = None
        self.end_seq = -1

    _order = itertools.count()

    def end(self, status: ExitStatus) -> None:
        if not self.ended.is_set():
            self.status = status
            self.ended_at = trio.current_time()
            self.end_seq = next(self._order)
            self.ended.set()

    def signal_group(self, sig: int) -> bool:
        self.signals.append(sig)
        if self.ended.is_set():
            return False
        if sig == signal.SIGKILL:
            self.end(ExitStatus(signal=sig))
        elif sig in (signal.SIGCONT,):
            pass
        elif self.behaviour.on_term == "die":
            self.end(ExitStatus(signal=sig))
        elif self.behaviour.on_term == "exit0":
            self.end(ExitStatus(code=0))
        return True

    async def kill(self) -> None:
        if self.behaviour.kill_hangs:
            await trio.sleep_forever()
        self.signal_group(signal.SIGKILL)

    def group_alive(self) -> bool:
        return not self.ended.is_set()

    async def sweep(self) -> None:
        return None

    async def _life(self) -> None:
        b = self.behaviour
        if b.exit_after is None:
            return
        await trio.sleep(b.exit_after)
        self.end(ExitStatus(code=None if b.exit_signal else b.exit_code, signal=b.exit_signal))


class FakeLauncher:
    """Spawns ``FakeChild``; ``script(name, n)`` gives the behaviour of the n-th spawn."""

    def __init__(self, script: Callable[[str, int], Behaviour] | None = None) -> None:
        self.script = script or (lambda name, n: Behaviour())
        self.children: list[FakeChild] = []
        self.counts: dict[str, int] = {}

    def of(self, name: str) -> list[FakeChild]:
        return [c for c in self.children if c.request.name == name]

    async def launch(
        self, request: SpawnRequest, worker_log: WorkerLog, nursery: trio.Nursery
    ) -> FakeChild:
        n = self.counts.get(request.name, 0) + 1
        self.counts[request.name] = n
        behaviour = self.script(request.name, n)
        await trio.sleep(0.01)  # a spawn takes a little time
        if behaviour.spawn_error:
            raise SpawnError(
                "ENOENT: No such file or directory: /nope", errno_name="ENOENT", path="/nope"
            )
        child = FakeChild(request, behaviour)
        self.children.append(child)
        for line in behaviour.output:
            worker_log.emit("stderr", line, pid=child.pid)
        nursery.start_soon(child._life)
        return child


def command_worker(name: str, **supervise: Any) -> WorkerEntry:
    supervise.setdefault("command", f"run-{name}")
    supervise.setdefault("readiness", "process")
    supervise.setdefault("min_uptime", 1.0)
    return WorkerEntry(name=name, kind=WorkerKind.COMMAND, supervise=SuperviseSpec(**supervise))


def config(*workers: WorkerEntry) -> EngineConfig:
    return EngineConfig(workers=tuple(workers))


async def eventually(
    predicate: Callable[[], object], within: float = 10.0, step: float = 0.05
) -> None:
    """Poll ``predicate`` until true, failing after ``within`` seconds (for state that has no
    event to wait on, such as /proc or a fake's spawn list)."""
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(step)
