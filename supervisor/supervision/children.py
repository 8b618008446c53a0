"""The child manager: every supervised worker's controller in one nursery (SUPERVISOR.md
§5–§9, §12, §13.3).

``ChildManager`` orders start-up by dependencies and shutdown in reverse waves under a global
deadline, fans operator commands out to the controllers, forwards bus events to them, applies
a reloaded config, and keeps the event history and the state file.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from supervisor.config.model import EngineConfig, WorkerEntry, WorkerKind
from supervisor.supervision import procfs
from supervisor.supervision.buslike import BusEventLike, BusLike, WorkerViewLike
from supervisor.supervision.controller import WorkerController
from supervisor.supervision.install import InstallRecords
from supervisor.supervision.lifecycle import DependencyState
from supervisor.supervision.logcapture import rfc3339
from supervisor.supervision.messages import CommandResult, DependenciesChanged
from supervisor.supervision.spawn import KeeperLauncher, Launcher
from supervisor.supervision.spawnplan import SpawnPlan
from supervisor.supervision.statedir import StateDir
from supervisor.supervision.states import WorkerState

__all__ = ["ChildManager", "UnknownWorker", "ShuttingDown", "SUPERVISED_KINDS"]

log = structlog.get_logger(__name__)

SUPERVISED_KINDS = frozenset({WorkerKind.ACTOR, WorkerKind.MANIFEST, WorkerKind.COMMAND})


class UnknownWorker(KeyError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = list(known)

    def __str__(self) -> str:
        return f"no worker named {self.name!r} (known: {', '.join(self.known) or 'none'})"


class ShuttingDown(RuntimeError):
    pass


class ChildManager:
    """Every supervised worker's controller, in one nursery."""

    def __init__(
        self,
        cfg: EngineConfig,
        bus: BusLike,
        *,
        state_dir: StateDir | None = None,
        engine_port: int | None = None,
        launcher: Launcher | None = None,
        rng: random.Random | None = None,
        config_path: Path | None = None,
        on_critical: Callable[[str], None] | None = None,
        on_change: Callable[[], None] | None = None,
        only: Sequence[str] | None = None,
        base_env: Mapping[str, str] | None = None,
        logs_dir: Path | None = None,
        orphan_grace: float = 3.0,
        sweep_grace: float = 2.0,
        no_install: bool = False,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.state_dir = state_dir
        self.launcher: Launcher = launcher or KeeperLauncher()
        self.rng = rng or random.Random()
        self.config_path = config_path or cfg.source
        self._on_critical = on_critical
        self._on_change = on_change
        self.logs_dir = logs_dir or (state_dir.logs_dir if state_dir else None)
        self.proc_table = procfs.ProcessTable()
        self.orphan_grace = orphan_grace
        self.sweep_grace = sweep_grace
        self.no_install = no_install
        self.installs = InstallRecords(state_dir.path / "install" if state_dir else None)
        self.controllers: dict[str, WorkerController] = {}
        self.shutting_down = False
        self.forced = False
        self.started_at = time.time()
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self._nursery: trio.Nursery | None = None
        self._persist_event = trio.Event()
        # Every child inherits the read end; it sees EOF once we are gone, however we died.
        self._lifeline_r, self._lifeline_w = os.pipe()  # both close-on-exec
        self.spawn_plan = SpawnPlan(
            engine_port=engine_port if engine_port is not None else cfg.engine_port,
            config_path=Path(self.config_path) if self.config_path else None,
            state_dir=state_dir,
            base_env=os.environ if base_env is None else base_env,
            lifeline_fd=self._lifeline_r,
            sweep_grace=sweep_grace,
            orphan_grace=orphan_grace,
        )
        self.config_dir = self.spawn_plan.config_dir
        self._only = set(self._with_dependencies(only)) if only else None
        for entry in cfg.workers:
            if entry.kind in SUPERVISED_KINDS:
                self.controllers[entry.name] = WorkerController(self, entry)
        bus.add_observer(self._on_bus_event)

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[ChildManager] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every controller; autostart workers are started. Returns when cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._persist_loop)
                for ctrl in self.controllers.values():
                    await nursery.start(ctrl.main)
                for ctrl in self.controllers.values():
                    if self.autostarts(ctrl.entry):
                        ctrl.desired = "running"
                        nursery.start_soon(ctrl.command, "start")
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.force_kill_all()
            with contextlib.suppress(OSError):
                os.close(self._lifeline_w)
            with contextlib.suppress(OSError):
                os.close(self._lifeline_r)

    def autostarts(self, entry: WorkerEntry) -> bool:
        if self._only is not None:
            return entry.name in self._only
        return entry.supervise.autostart

    def _with_dependencies(self, names: Sequence[str]) -> list[str]:
        out: list[str] = []
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in out:
                continue
            out.append(name)
            entry = self.cfg.worker(name)
            if entry is not None:
                stack.extend(entry.supervise.depends_on)
        return out

    def wedged_controllers(self) -> list[str]:
        """Controllers stuck in one message past their step budget (the watchdog's check)."""
        now = trio.current_time()
        return [c.name for c in self.controllers.values() if c.wedged(now)]

    def get(self, name: str) -> WorkerController:
        ctrl = self.controllers.get(name)
        if ctrl is None:
            raise UnknownWorker(name, sorted(self.controllers))
        return ctrl

    def resolve(self, names: Sequence[str] | None) -> list[WorkerController]:
        """Controllers by name; none, or ``all``, means every worker."""
        if not names or "all" in names:
            return list(self.controllers.values())
        return [self.get(n) for n in dict.fromkeys(names)]

    # -- bus ----------------------------------------------------------------------------------

    def bus_views(self) -> list[WorkerViewLike]:
        try:
            return list(self.bus.workers())
        except Exception:
            log.exception("bus.workers failed")
            return []

    def _on_bus_event(self, event: BusEventLike) -> None:
        # Every controller hears every event: readiness waits on them, and a stop's drain
        # watches for its own connections' "drained" among them.
        for ctrl in self.controllers.values():
            ctrl.notices.hear(event)

    # -- dependencies (§5.5) ------------------------------------------------------------------

    def dependencies(self, entry: WorkerEntry) -> list[DependencyState]:
        """Each configured dependency that we run: its name, ready count and state."""
        return [
            (d, c.ready_count, c.state)
            for d in entry.supervise.depends_on
            if (c := self.controllers.get(d)) is not None
        ]

    def dependency_verdict(self, entry: WorkerEntry) -> tuple[str, str | None]:
        """``ready``, ``waiting`` or ``failed`` (with the dependency that decided it)."""
        for dep, _, state in self.dependencies(entry):
            if state is WorkerState.FAILED:
                return "failed", dep
            if state is not WorkerState.READY:
                return "waiting", dep
        if entry.kind is not WorkerKind.ACTOR:
            # Built-in actors form an implicit first tier: user workers wait until each
            # autostart actor has reached a verdict (ready, or at rest), never fail on one.
            for other in self.controllers.values():
                if (
                    other.entry.kind is WorkerKind.ACTOR
                    and other.desired == "running"
                    and other.state is WorkerState.STARTING
                ):
                    return "waiting", other.name
        return "ready", None

    def on_worker_changed(self, name: str) -> None:
        ctrl = self.controllers.get(name)
        for other in self.controllers.values():
            if (
                ctrl is not None
                and other is not ctrl
                and (
                    name in other.spec.depends_on
                    or (
                        ctrl.entry.kind is WorkerKind.ACTOR
                        and other.entry.kind is not WorkerKind.ACTOR
                    )
                )
            ):
                other.post(DependenciesChanged())
        if self._on_change is not None:
            self._on_change()

    def on_critical(self, name: str) -> None:
        ctrl = self.controllers.get(name)
        log.error("worker.critical_failed", worker=name, error=ctrl.last_error if ctrl else None)
        if self._on_critical is not None:
            self._on_critical(name)

    # -- operator commands (§13.3) ------------------------------------------------------------

    def _check_mutable(self) -> None:
        if self.shutting_down:
            raise ShuttingDown(
                "the supervisor is shutting down; only status, logs and events are served"
            )

    async def start(
        self, names: Sequence[str] | None, *, wait: bool = True, within: float | None = None
    ) -> list[CommandResult]:
        return await self._command_and_settle(names, "start", wait, within)

    async def restart(
        self, names: Sequence[str] | None, *, wait: bool = True, within: float | None = None
    ) -> list[CommandResult]:
        return await self._command_and_settle(names, "restart", wait, within)

    async def _command_and_settle(
        self, names: Sequence[str] | None, verb: str, wait: bool, within: float | None
    ) -> list[CommandResult]:
        self._check_mutable()
        ctrls = self.resolve(names)
        results = await self._fan_out(ctrls, verb)
        if wait:
            await self._wait_settled(ctrls, within)
            results = [
                attrs.evolve(r, state=self.get(r.name).state.value, pid=self.get(r.name).pid)
                for r in results
            ]
        return results

    async def stop(self, names: Sequence[str] | None) -> list[CommandResult]:
        self._check_mutable()
        ctrls = self.resolve(names)
        if not names or list(names) == ["all"]:
            results: list[CommandResult] = []
            for wave in self.stop_waves(ctrls):
                results.extend(await self._fan_out(wave, "stop"))
            return results
        return await self._fan_out(ctrls, "stop")

    async def reset_failed(self, names: Sequence[str] | None) -> list[CommandResult]:
        self._check_mutable()
        return await self._fan_out(self.resolve(names), "reset_failed")

    async def signal(self, name: str, signo: int) -> CommandResult:
        self._check_mutable()
        return await self.get(name).command("signal", signo)

    async def _fan_out(self, ctrls: Sequence[WorkerController], kind: str) -> list[CommandResult]:
        results: dict[str, CommandResult] = {}

        async def one(c: WorkerController) -> None:
            results[c.name] = await c.command(kind)

        async with trio.open_nursery() as nursery:
            for c in ctrls:
                nursery.start_soon(one, c)
        return [results[c.name] for c in ctrls]

    async def _wait_settled(self, ctrls: Sequence[WorkerController], within: float | None) -> None:
        """Until each is ready or at rest (``failed``/``exited``/``stopped``)."""
        settled = {WorkerState.READY, WorkerState.FAILED, WorkerState.EXITED, WorkerState.STOPPED}
        with trio.fail_after(within if within is not None else math.inf):
            for c in ctrls:
                await c.wait_for(lambda w: w.state in settled)

    # -- shutdown (§9.4) ----------------------------------------------------------------------

    def stop_waves(self, ctrls: Sequence[WorkerController]) -> list[list[WorkerController]]:
        """Reverse dependency waves: dependents first, the built-in tier last.

        A worker's wave is its height: 0 when no (selected) worker depends on it, else one
        more than its highest dependent. Independent workers therefore stop in the first
        wave, and a dependency only stops once everything that uses it has.
        """
        chosen = {c.name: c for c in ctrls}
        dependents: dict[str, list[str]] = {n: [] for n in chosen}
        for c in ctrls:
            for d in c.spec.depends_on:
                if d in chosen:
                    dependents[d].append(c.name)
        height: dict[str, int] = {}

        def measure(name: str, path: frozenset[str]) -> int:
            if name in height:
                return height[name]
            above = [measure(x, path | {name}) for x in dependents[name] if x not in path]
            height[name] = 1 + max(above, default=-1)
            return height[name]

        for name in chosen:
            measure(name, frozenset())
        waves: list[list[WorkerController]] = []
        for actors in (False, True):  # user workers first, then the built-in tier
            members = [c for c in ctrls if (c.entry.kind is WorkerKind.ACTOR) is actors]
            for h in sorted({height[c.name] for c in members}):
                waves.append([c for c in members if height[c.name] == h])
        return waves

    async def shutdown(self, within: float = 30.0) -> None:
        """Stop everything in reverse waves within ``within`` s; then SIGKILL what is left."""
        self.shutting_down = True
        deadline = trio.current_time() + within
        with trio.move_on_at(deadline) as scope:
            for wave in self.stop_waves(list(self.controllers.values())):
                if self.forced:
                    break
                log.info("supervisor.stop_wave", workers=[c.name for c in wave])
                await self._fan_out(wave, "stop")
        if scope.cancelled_caught or self.forced:
            log.warning("supervisor.shutdown_deadline", timeout_s=within)
        self.force_kill_all()

    def force_kill_all(self) -> None:
        """SIGKILL every worker group still running (second signal, deadline, exit)."""
        for ctrl in self.controllers.values():
            run = ctrl.run
            if run is not None and not run.child.ended.is_set():
                run.child.signal_group(signal.SIGKILL)
                log.warning("worker.force_killed", worker=ctrl.name, pgid=run.child.pgid)

    def force(self) -> None:
        self.forced = True
        self.shutting_down = True
        self.force_kill_all()

    # -- reload (§13.3) -----------------------------------------------------------------------

    async def apply(self, new_cfg: EngineConfig) -> dict[str, list[str]]:
        """Diff ``new_cfg`` against the running set and apply it; returns the diff."""
        self._check_mutable()
        assert self._nursery is not None
        old = {n: c.entry for n, c in self.controllers.items()}
        new = {e.name: e for e in new_cfg.workers if e.kind in SUPERVISED_KINDS}
        added = [n for n in new if n not in old]
        removed = [n for n in old if n not in new]
        changed = [n for n in new if n in old and _comparable(new[n]) != _comparable(old[n])]
        unchanged = [n for n in new if n in old and n not in changed]
        self.cfg = new_cfg
        if removed:
            for wave in self.stop_waves([self.controllers[n] for n in removed]):
                await self._fan_out(wave, "forget")
            for n in removed:
                self.controllers.pop(n).close()
        for n in changed:
            await self.controllers[n].command("replace", new[n])
        for n in added:
            ctrl = WorkerController(self, new[n])
            self.controllers[n] = ctrl
            await self._nursery.start(ctrl.main)
            if new[n].supervise.autostart:
                self._nursery.start_soon(ctrl.command, "start")
        self.persist()
        return {"added": added, "removed": removed, "changed": changed, "unchanged": unchanged}

    # -- status, events, persistence ------------------------------------------------------------

    def snapshot(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return [c.snapshot() for c in self.resolve(names)]

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in WorkerState}
        for c in self.controllers.values():
            out[c.state.value] += 1
        return out

    def startup_complete(self) -> bool:
        """Every autostart worker is ready or at rest (``failed``/``exited``/``stopped``)."""
        for c in self.controllers.values():
            if c.state is WorkerState.STOPPED:
                if c.desired == "running":
                    return False  # its start command is still queued
                continue
            if c.state in (WorkerState.STARTING, WorkerState.BACKOFF, WorkerState.STOPPING):
                return False
        return True

    def summary(self) -> str:
        """One line for ``STATUS=``: ``ready: 7/8 workers; failed: mailer``."""
        wanted = [
            c
            for c in self.controllers.values()
            if c.desired == "running" or c.state is not WorkerState.STOPPED
        ]
        ready = [c for c in wanted if c.state is WorkerState.READY]
        failed = sorted(c.name for c in wanted if c.state is WorkerState.FAILED)
        text = f"ready: {len(ready)}/{len(wanted)} workers"
        if failed:
            text += f"; failed: {', '.join(failed)}"
        return text

    def publish(self, event: dict[str, Any]) -> None:
        event.setdefault("ts", rfc3339(time.time()))
        self.history.append(event)
        for chan in list(self._subscribers):
            try:
                chan.send_nowait(event)
            except trio.WouldBlock:
                pass
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._subscribers.discard(chan)

    @contextlib.contextmanager
    def subscribe(self, size: int = 1024) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, recv = trio.open_memory_channel[dict[str, Any]](size)
        self._subscribers.add(send)
        try:
            yield recv
        finally:
            self._subscribers.discard(send)
            send.close()

    def persist(self) -> None:
        self._persist_event.set()

    def state_document(self, *, clean_shutdown: bool = False) -> dict[str, Any]:
        me = procfs.read_stat(os.getpid())
        return {
            "supervisor": {
                "pid": os.getpid(),
                "start_time": me.starttime if me else None,
                "started_at": rfc3339(self.started_at),
                "config_path": str(self.config_path) if self.config_path else None,
            },
            "clean_shutdown": clean_shutdown,
            "workers": {n: c.state_record() for n, c in self.controllers.items()},
        }

    async def _persist_loop(self) -> None:
        if self.state_dir is None:
            return
        state_dir = self.state_dir
        while True:
            await self._persist_event.wait()
            self._persist_event = trio.Event()
            doc = self.state_document()
            try:
                await trio.to_thread.run_sync(state_dir.write_state, doc)
            except OSError as exc:
                log.warning("state.write_failed", error=str(exc))
            await trio.sleep(0.05)  # coalesce bursts of spawns and ends

    def write_final_state(self) -> None:
        if self.state_dir is not None:
            try:
                self.state_dir.write_state(self.state_document(clean_shutdown=True))
            except OSError as exc:
                log.warning("state.write_failed", error=str(exc))

    def reopen_logs(self) -> None:
        for c in self.controllers.values():
            c.log.reopen()


def _comparable(entry: WorkerEntry) -> WorkerEntry:
    return attrs.evolve(entry, line=None)
