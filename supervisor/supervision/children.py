"""The child manager: one controller task per supervised worker, and the orders it takes.

A ``WorkerController`` owns one worker's state machine (``supervisor.supervision.states``) and nothing
else touches it: operator commands, child exits, readiness, timers and health verdicts all
arrive as messages on its inbox and are handled one at a time, in order. The controller
spawns through a ``Launcher`` (the keeper in production, a fake in unit tests), asks
``RestartPolicy`` what an end means, and publishes every transition. ``ChildManager`` holds
the controllers in one nursery, orders start-up by dependencies and shutdown in reverse
waves under a global deadline, and answers the status socket (SUPERVISOR.md §5–§9, §12).
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import structlog
import trio

from supervisor.config.model import EngineConfig, WorkerEntry, WorkerKind
from supervisor.supervision import procfs
from supervisor.supervision.childenv import build_env, command_display, resolve_command, working_dir
from supervisor.supervision.install import (
    InstallOutcome,
    InstallRecords,
    install_digest,
    run_install,
)
from supervisor.supervision.logcapture import WorkerLog, rfc3339
from supervisor.supervision.notifyrecv import NotifyReceiver
from supervisor.supervision.restart import (
    Decision,
    End,
    RestartPolicy,
    Verdict,
    describe_exit,
    signal_name,
)
from supervisor.supervision.spawn import (
    ChildHandle,
    KeeperLauncher,
    Launcher,
    SpawnError,
    SpawnRequest,
)
from supervisor.supervision.statedir import StateDir
from supervisor.supervision.states import (
    EndCause,
    ErrorCode,
    HealthStatus,
    Phase,
    Trigger,
    WorkerState,
    transition,
)

__all__ = [
    "BusLike",
    "ChildManager",
    "WorkerController",
    "CommandResult",
    "UnknownWorker",
    "ShuttingDown",
    "SUPERVISED_KINDS",
]

log = structlog.get_logger(__name__)

SUPERVISED_KINDS = frozenset({WorkerKind.ACTOR, WorkerKind.MANIFEST, WorkerKind.COMMAND})
SETTLE = 0.2  # registrations quiet for this long → settled (§7.4)
# Our actors send their registrations in one burst right after announcing themselves over
# the local link (no network, no SDK replay order), so a short quiet period suffices.
SETTLE_ACTOR = 0.05
SETTLE_CAP = 2.0  # ... but never wait longer than this after registration
KIND_NAMES = {
    WorkerKind.ACTOR: "builtin",
    WorkerKind.MANIFEST: "manifest",
    WorkerKind.COMMAND: "command",
}
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class BusLike(Protocol):
    """What the child manager needs of ``supervisor.engine.bus.Bus``."""

    def add_observer(self, fn: Callable[[Any], None]) -> None: ...

    def workers(self) -> list[Any]: ...

    async def ping(self, worker_id: str, timeout: float) -> bool: ...  # noqa: ASYNC109

    def in_flight_to(self, worker_id: str) -> int: ...

    def close_worker(self, worker_id: str) -> None: ...

    async def serve_local(self, stream: trio.abc.Stream, *, label: str) -> None: ...


class UnknownWorker(KeyError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = list(known)

    def __str__(self) -> str:
        return f"no worker named {self.name!r} (known: {', '.join(self.known) or 'none'})"


class ShuttingDown(RuntimeError):
    pass


STEP_MARGIN = 30.0  # seconds: spawning and the kill/sweep waits on top of the spec's timeouts

# -- controller messages --------------------------------------------------------------------


@attrs.define(eq=False)
class CommandResult:
    name: str
    changed: bool
    state: str
    pid: int | None
    error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "changed": self.changed,
            "state": self.state,
            "pid": self.pid,
        }
        if self.error:
            out["error"] = self.error
        return out


@attrs.define(eq=False)
class _Command:
    kind: str  # start | stop | restart | reset_failed | signal | forget
    arg: Any = None
    done: trio.Event = attrs.field(factory=trio.Event)
    result: CommandResult | None = None


@attrs.frozen(eq=False)
class _ChildEnded:
    child: ChildHandle


@attrs.frozen(eq=False)
class _ChildReady:
    child: ChildHandle


@attrs.frozen(eq=False)
class _Unhealthy:
    child: ChildHandle
    cause: EndCause


@attrs.frozen(eq=False)
class _Timer:
    kind: str
    token: int


@attrs.frozen(eq=False)
class _InstallDone:
    outcome: InstallOutcome
    digest: str


@attrs.frozen(eq=False)
class _DepsChanged:
    pass


# -- one incarnation ------------------------------------------------------------------------


@attrs.define(eq=False)
class _Run:
    """Controller-side bookkeeping for one child incarnation."""

    child: ChildHandle
    number: int  # spawn count, 1-based
    started_mono: float
    scopes: list[trio.CancelScope] = attrs.field(factory=list)  # readiness + health tasks
    conn_ids: set[str] = attrs.field(factory=set)  # bus connections attributed so far
    attribution: dict[str, bool] = attrs.field(factory=dict)
    handled: bool = False
    ready_at: float | None = None  # unix
    ready_mono: float | None = None
    ready_fd: int | None = None
    notify: NotifyReceiver | None = None  # readiness: notify (§7.4)
    notify_ready: trio.Event = attrs.field(factory=trio.Event)
    notify_status: str | None = None
    watchdog_at: float | None = None  # trio time of the last WATCHDOG=1
    ever_connected: bool = False
    link_scope: trio.CancelScope | None = None  # actors: the bus local link
    cpu_sample: tuple[float, float] | None = None  # (monotonic, cpu seconds)
    tasks_cancelled: bool = False

    def task_scope(self) -> trio.CancelScope:
        scope = trio.CancelScope()
        if self.tasks_cancelled:
            scope.cancel()
        self.scopes.append(scope)
        return scope

    def cancel_tasks(self) -> None:
        self.tasks_cancelled = True
        for scope in self.scopes:
            scope.cancel()


class WorkerController:
    """The only owner of one worker's observed state."""

    def __init__(self, manager: ChildManager, entry: WorkerEntry) -> None:
        self.manager = manager
        self.entry = entry
        self.name = entry.name
        self.state = WorkerState.STOPPED
        self.phase: Phase | None = None
        self.desired = "stopped"
        self.since = time.time()
        self.policy = RestartPolicy(entry.supervise, manager.rng)
        self.log = WorkerLog(entry.name, entry.supervise.log, manager.logs_dir)
        self.run: _Run | None = None
        self.spawns = 0
        self.ready_count = 0  # times this worker became ready (rest_for_one edges)
        self.last_exit: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None
        self.next_restart_at: float | None = None
        self.last_pid: int | None = None
        self.health_status: HealthStatus | None = None
        self.health_last_ok: float | None = None
        self.health_rtt_ms: float | None = None
        self.health_missed = 0
        self.bus_connected: bool | None = None
        self.resources: dict[str, Any] | None = None
        self.changed = trio.Event()
        self.ticks = 0
        self.warnings: list[str] = []
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[Any](math.inf)
        self._nursery: trio.Nursery | None = None
        self._timers: dict[str, tuple[int, trio.CancelScope]] = {}
        self._token = 0
        self._bus_poke = trio.Event()
        self._dep_seen: dict[str, int] = {}
        self._busy: dict[str, _Command] = {}  # joinable commands queued or in progress
        self._dep_blocked = False
        self._forgotten = False
        self._install: tuple[trio.CancelScope, trio.Event] | None = None  # while installing
        self.busy_since: float | None = None  # trio time the current message began

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def spec(self) -> Any:
        return self.entry.supervise

    @property
    def pid(self) -> int | None:
        return self.run.child.pid if self.run else None

    def post(self, msg: Any) -> bool:
        try:
            self._inbox_send.send_nowait(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False  # the controller is gone (removed by a reload)
        return True

    def poke_bus(self) -> None:
        self._bus_poke.set()
        self._bus_poke = trio.Event()

    async def command(self, kind: str, arg: Any = None) -> CommandResult:
        """Queue a command and wait for the controller to finish it. A command equal to one
        already queued or running joins it (two concurrent ``restart`` → one restart)."""
        key = f"{kind}:{arg!r}"
        cmd = self._busy.get(key)
        if cmd is None:
            cmd = _Command(kind, arg)
            self._busy[key] = cmd
            if not self.post(cmd):
                del self._busy[key]
                return self._result(False, error=f"worker {self.name!r} was removed")
        await cmd.done.wait()
        assert cmd.result is not None
        return cmd.result

    def step_budget(self) -> float:
        """The longest one message may legitimately take: a full stop (drain, grace, kill,
        sweep) plus a margin for spawning. Beyond it the controller is wedged (§15.1)."""
        spec = self.spec
        return (
            spec.drain_timeout
            + spec.stop_timeout
            + spec.health.kill_grace
            + self.manager.sweep_grace
            + STEP_MARGIN
        )

    def wedged(self, now: float) -> bool:
        return self.busy_since is not None and now - self.busy_since > self.step_budget()

    async def wait_for(self, predicate: Callable[[WorkerController], bool]) -> None:
        while not predicate(self):
            await self.changed.wait()

    async def main(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.log.run_writer)
            task_status.started()
            try:
                async for msg in self._inbox_recv:
                    self.ticks += 1
                    self.busy_since = trio.current_time()
                    try:
                        await self._handle(msg)
                    finally:
                        self.busy_since = None
                    if self._forgotten:
                        break
            finally:
                self.log.close()
                self._inbox_send.close()
                self._fail_pending()
            nursery.cancel_scope.cancel()

    def _fail_pending(self) -> None:
        """Answer commands still queued when the controller goes away (reload removal)."""
        while True:
            try:
                msg = self._inbox_recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            if isinstance(msg, _Command):
                msg.result = self._result(False, error=f"worker {self.name!r} was removed")
                msg.done.set()

    def close(self) -> None:
        self._inbox_send.close()

    # -- transitions --------------------------------------------------------------------------

    def _move(self, trigger: Trigger, *, cause: str | None = None, **fields: Any) -> None:
        before = self.state
        after = transition(before, trigger)
        self.state = after
        self.since = time.time()
        if after not in (WorkerState.STARTING, WorkerState.STOPPING):
            self.phase = None
        if after is WorkerState.READY:
            self.ready_count += 1
        if after is not WorkerState.BACKOFF:
            self.next_restart_at = None
        event = {
            "worker": self.name,
            "from": before.value,
            "to": after.value,
            "cause": cause,
            "pid": self.pid if self.run else self.last_pid,
            "pgid": self.run.child.pgid if self.run else None,
            "restarts": self.policy.total_restarts,
            **fields,
        }
        log.info(f"worker.{after.value}", **event)
        self.manager.publish({"event": "transition", **event})
        self._signal_change()

    def _signal_change(self) -> None:
        self.changed.set()
        self.changed = trio.Event()
        self.manager.on_worker_changed(self)

    def _set_phase(self, phase: Phase | None) -> None:
        self.phase = phase
        self._signal_change()

    def _set_timer(self, kind: str, delay: float) -> None:
        self._cancel_timer(kind)
        assert self._nursery is not None
        self._token += 1
        scope = trio.CancelScope()
        self._timers[kind] = (self._token, scope)
        self._nursery.start_soon(self._timer_task, kind, self._token, delay, scope)

    async def _timer_task(
        self, kind: str, token: int, delay: float, scope: trio.CancelScope
    ) -> None:
        with scope:
            await trio.sleep(max(0.0, delay))
            self.post(_Timer(kind, token))

    def _cancel_timer(self, kind: str) -> None:
        entry = self._timers.pop(kind, None)
        if entry is not None:
            entry[1].cancel()

    def _timer_current(self, msg: _Timer) -> bool:
        entry = self._timers.get(msg.kind)
        if entry is None or entry[0] != msg.token:
            return False
        del self._timers[msg.kind]
        return True

    # -- the message loop ---------------------------------------------------------------------

    async def _handle(self, msg: Any) -> None:
        if isinstance(msg, _Command):
            try:
                msg.result = await self._run_command(msg)
            except Exception as exc:  # a bug must not wedge the caller or the worker
                log.exception("worker.command_failed", worker=self.name, command=msg.kind)
                msg.result = self._result(False, error=f"internal error: {exc}")
            finally:
                for key, cmd in list(self._busy.items()):
                    if cmd is msg:
                        del self._busy[key]
                msg.done.set()
        elif isinstance(msg, _ChildEnded):
            if self.run is not None and msg.child is self.run.child and not self.run.handled:
                await self._on_end(self._end_of(self.run, EndCause.EXITED))
        elif isinstance(msg, _ChildReady):
            if (
                self.run is not None
                and msg.child is self.run.child
                and self.state is WorkerState.STARTING
                and not msg.child.ended.is_set()
            ):
                self._on_ready()
        elif isinstance(msg, _Unhealthy):
            if (
                self.run is not None
                and msg.child is self.run.child
                and self.state is WorkerState.READY
            ):
                await self._kill_for(msg.cause)
        elif isinstance(msg, _Timer):
            if not self._timer_current(msg):
                return
            await self._on_timer(msg.kind)
        elif isinstance(msg, _DepsChanged):
            await self._on_deps_changed()
        elif isinstance(msg, _InstallDone):
            await self._on_install_done(msg)

    async def _on_timer(self, kind: str) -> None:
        if kind == "backoff" and self.state is WorkerState.BACKOFF:
            if self.manager.shutting_down:
                return
            self._move(Trigger.TIMER, cause="backoff")
            await self._begin_start()
        elif kind == "start_timeout" and self.state is WorkerState.STARTING:
            if self.run is None:
                # Still waiting for dependencies: a start_timeout failure with nothing to kill.
                self._move(Trigger.STOP, cause="start_timeout")
                await self._after_end(End(EndCause.START_TIMEOUT, None, before_ready=True))
            else:
                await self._kill_for(EndCause.START_TIMEOUT)
        elif kind == "stable" and self.state is WorkerState.READY:
            self._signal_change()  # consecutive_failures now reads 0

    # -- commands -----------------------------------------------------------------------------

    def _result(self, changed: bool, error: str | None = None) -> CommandResult:
        return CommandResult(self.name, changed, self.state.value, self.pid, error)

    async def _run_command(self, cmd: _Command) -> CommandResult:
        kind = cmd.kind
        if kind == "start":
            return await self._cmd_start()
        if kind == "stop":
            return await self._cmd_stop()
        if kind == "restart":
            return await self._cmd_restart()
        if kind == "reset_failed":
            if self.state is not WorkerState.FAILED:
                return self._result(False)
            self.policy.reset()
            self.desired = "stopped"
            self._dep_blocked = False
            self._move(Trigger.RESET_FAILED, cause="reset_failed")
            return self._result(True)
        if kind == "signal":
            if self.run is None or self.run.child.ended.is_set():
                return self._result(False, error=f"worker {self.name!r} is not running")
            sent = self.run.child.signal_group(int(cmd.arg))
            log.info("worker.signalled", worker=self.name, signal=signal_name(int(cmd.arg)))
            return self._result(sent)
        if kind == "forget":
            result = await self._cmd_stop()
            self._forgotten = True
            return result
        if kind == "replace":
            # Reload of a changed entry: stop with the old spec, restart with the new one.
            was_running = self.desired == "running"
            await self._cmd_stop()
            self._apply_entry(cmd.arg)
            if was_running or cmd.arg.supervise.autostart:
                return await self._cmd_start()
            return self._result(True)
        raise ValueError(f"unknown command {kind!r}")

    def _apply_entry(self, entry: WorkerEntry) -> None:
        self.entry = entry
        self.policy = RestartPolicy(entry.supervise, self.manager.rng)

    async def _cmd_start(self) -> CommandResult:
        self.desired = "running"
        self._dep_blocked = False
        if self.state in (WorkerState.READY, WorkerState.STARTING, WorkerState.STOPPING):
            return self._result(False)
        self.policy.reset()
        if self.state is WorkerState.BACKOFF:
            self._cancel_timer("backoff")
        self._move(Trigger.START, cause="start")
        await self._begin_start()
        return self._result(True)

    async def _cmd_stop(self) -> CommandResult:
        self.desired = "stopped"
        self._dep_blocked = False
        if self.state is WorkerState.STOPPED:
            return self._result(False)
        if self.state in (WorkerState.EXITED, WorkerState.FAILED):
            return self._result(False)  # nothing runs; the state keeps telling why
        if self.state is WorkerState.BACKOFF:
            self._cancel_timer("backoff")
            self._move(Trigger.STOP, cause="requested")
            return self._result(True)
        await self._stop_sequence()
        self._move(Trigger.STOPPED, cause="requested")
        return self._result(True)

    async def _cmd_restart(self) -> CommandResult:
        self.desired = "running"
        self._dep_blocked = False
        self.policy.reset()
        if self.state in (WorkerState.STARTING, WorkerState.READY):
            await self._stop_sequence()
            self._move(Trigger.SPAWN, cause="restart")
            await self._begin_start()
            return self._result(True)
        if self.state is WorkerState.BACKOFF:
            self._cancel_timer("backoff")
        self._move(Trigger.START, cause="restart")
        await self._begin_start()
        return self._result(True)

    # -- starting -----------------------------------------------------------------------------

    async def _begin_start(self) -> None:
        """Entered ``starting``: wait for dependencies, then spawn (§5.5, §7)."""
        self._set_timer("start_timeout", self.spec.start_timeout)
        self._set_phase(Phase.WAITING)
        await self._on_deps_changed()

    async def _on_deps_changed(self) -> None:
        if self.state is WorkerState.STARTING and self.phase is Phase.WAITING and self.run is None:
            verdict, dep = self.manager.dependency_verdict(self)
            if verdict == "failed":
                self._cancel_timer("start_timeout")
                self._dep_blocked = True
                self._set_error(
                    ErrorCode.DEPENDENCY_FAILED,
                    f"worker {self.name!r} depends on {dep!r}, which has failed; it starts "
                    f"automatically once {dep!r} is ready (or run `iii-supervisor start {dep}`)",
                )
                self._move(Trigger.DEPENDENCY_FAILED, cause="dependency_failed", dependency=dep)
                if self.spec.critical:
                    self.manager.on_critical(self)
            elif verdict == "ready":
                await self._install_or_spawn()
            return
        if (
            self.state is WorkerState.FAILED
            and self._dep_blocked
            and self.desired == "running"
            and not self.manager.shutting_down
        ):
            verdict, _ = self.manager.dependency_verdict(self)
            if verdict == "ready":
                self._dep_blocked = False
                self.policy.reset()
                self._move(Trigger.START, cause="dependency_ready")
                await self._begin_start()
            return
        if self.state in (WorkerState.READY, WorkerState.STARTING) and self.run is not None:
            # rest_for_one edges: a dependency that became ready again restarts us.
            if self.spec.on_dependency_restart != "restart":
                return
            for dep in self.spec.depends_on:
                other = self.manager.controllers.get(dep)
                if other is None:
                    continue
                seen = self._dep_seen.get(dep, other.ready_count)
                if other.ready_count > seen and other.state is WorkerState.READY:
                    self._dep_seen[dep] = other.ready_count
                    log.info("worker.dependency_restarted", worker=self.name, dependency=dep)
                    await self._stop_sequence()
                    self._move(Trigger.SPAWN, cause="dependency_restart", dependency=dep)
                    await self._begin_start()
                    return

    # -- install (§7.3) -------------------------------------------------------------------------

    def _install_wanted(self) -> tuple[str, str] | None:
        """``(command, digest)`` when the install script must run before this spawn."""
        manifest = self.entry.manifest
        if manifest is None or not manifest.install:
            return None
        mode = self.spec.install
        if mode == "never" or self.manager.no_install:
            return None
        digest = install_digest(manifest.install, self.entry.worker_path)
        if mode == "once" and self.manager.installs.done(self.name) == digest:
            return None
        return manifest.install, digest

    async def _install_or_spawn(self) -> None:
        wanted = self._install_wanted()
        if wanted is None:
            await self._spawn()
            return
        assert self._nursery is not None
        self._cancel_timer("start_timeout")  # the install has its own budget
        self._set_phase(Phase.INSTALLING)
        scope, finished = trio.CancelScope(), trio.Event()
        self._install = (scope, finished)
        self._nursery.start_soon(self._run_install, wanted, scope, finished)

    async def _run_install(
        self, wanted: tuple[str, str], scope: trio.CancelScope, finished: trio.Event
    ) -> None:
        command, digest = wanted
        assert self._nursery is not None
        try:
            with scope:
                self.log.marker(f"install: {command}")
                log.info("worker.installing", worker=self.name, command=command)
                request = self.manager.install_request(self, command)
                outcome = await run_install(
                    self.manager.launcher,
                    request,
                    self.log,
                    self._nursery,
                    self.spec.install_timeout,
                )
                self.post(_InstallDone(outcome, digest))
        finally:
            finished.set()

    async def _cancel_install(self) -> None:
        if self._install is not None:
            scope, finished = self._install
            self._install = None
            scope.cancel()
            with trio.move_on_after(10.0):
                await finished.wait()

    async def _on_install_done(self, msg: _InstallDone) -> None:
        self._install = None
        if self.state is not WorkerState.STARTING or self.phase is not Phase.INSTALLING:
            return
        if msg.outcome.ok:
            self.manager.installs.record(self.name, msg.digest)
            self.log.marker("install: done")
            log.info("worker.installed", worker=self.name)
            self._set_timer("start_timeout", self.spec.start_timeout)
            await self._spawn()
            return
        self._set_error(ErrorCode.INSTALL_FAILED, msg.outcome.message)
        self._move(Trigger.END_FAILED, cause="install_failed")
        if self.spec.critical:
            self.manager.on_critical(self)

    # -- spawning ---------------------------------------------------------------------------

    async def _spawn(self) -> None:
        assert self._nursery is not None
        self._set_phase(Phase.SPAWNING)
        self._dep_seen = {d: c.ready_count for d, c in self.manager.dependency_controllers(self)}
        cleanup: list[Callable[[], None]] = []
        link_sock: socket.socket | None = None
        ready_r: int | None = None
        notify: NotifyReceiver | None = None
        try:
            request, link_sock, ready_r, notify = self.manager.spawn_request(self, cleanup)
            self.spawns += 1
            restart_note = (
                f" (restart {self.policy.total_restarts})" if self.policy.total_restarts else ""
            )
            self.log.marker(f"spawning{restart_note}: {request.display}")
            child = await self.manager.launcher.launch(request, self.log, self._nursery)
        except (SpawnError, OSError, ValueError) as exc:
            for fn in cleanup:
                fn()
            if link_sock is not None:
                link_sock.close()
            if ready_r is not None:
                os.close(ready_r)
            if notify is not None:
                notify.close()
            await self._on_spawn_error(exc)
            return
        for fn in cleanup:
            fn()
        now = trio.current_time()
        self.policy.on_spawn(now)
        run = _Run(
            child=child, number=self.spawns, started_mono=now, ready_fd=ready_r, notify=notify
        )
        self.run = run
        self.last_pid = child.pid
        self.health_status = None
        self.bus_connected = None
        self.health_missed = 0
        self.log.marker(f"spawned pid {child.pid}{restart_note}")
        spawned = {
            "worker": self.name,
            "pid": child.pid,
            "pgid": child.pgid,
            "keeper_pid": child.keeper_pid,
            "spawn": self.spawns,
        }
        log.info("worker.spawned", **spawned)
        self.manager.publish({"event": "spawned", **spawned})
        self.manager.persist()
        self._set_phase(Phase.REGISTERING)
        if link_sock is not None:
            run.link_scope = trio.CancelScope()
            self._nursery.start_soon(self._serve_link, link_sock, run.link_scope)
        self._nursery.start_soon(self._watch_end, child)
        if notify is not None:
            self._nursery.start_soon(self._serve_notify, run, notify)
        self._nursery.start_soon(self._watch_ready, run)

    async def _on_spawn_error(self, exc: BaseException) -> None:
        message = str(exc)
        status = exc.exit_status if isinstance(exc, SpawnError) else None
        self.log.marker(f"spawn failed: {message}")
        log.warning("worker.spawn_failed", worker=self.name, error=message)
        await self._after_end(
            End(EndCause.SPAWN_ERROR, status, before_ready=True), spawn_message=message
        )

    async def _serve_link(self, sock: socket.socket, scope: trio.CancelScope) -> None:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        with scope:
            try:
                await self.manager.bus.serve_local(stream, label=self.name)
            except Exception:
                log.exception("worker.link_failed", worker=self.name)
        with contextlib.suppress(Exception):
            await stream.aclose()

    async def _watch_end(self, child: ChildHandle) -> None:
        await child.ended.wait()
        self.post(_ChildEnded(child))

    async def _watch_ready(self, run: _Run) -> None:
        with run.task_scope():
            mode = self.spec.readiness
            if mode == "bus":
                await self._wait_bus_ready(run)
            elif mode == "fd" and run.ready_fd is not None:
                await self._wait_ready_fd(run)
            elif mode == "notify" and run.notify is not None:
                await run.notify_ready.wait()
            else:  # "process"
                await trio.sleep(self.spec.min_uptime)
            self.post(_ChildReady(run.child))

    async def _serve_notify(self, run: _Run, notify: NotifyReceiver) -> None:
        """Messages on the child's ``NOTIFY_SOCKET``, for the life of this incarnation."""
        pgid = run.child.pgid

        def from_child(pid: int) -> bool:
            stat = procfs.read_stat(pid)
            return stat is not None and stat.pgrp == pgid

        def on_fields(fields: dict[str, str]) -> None:
            if fields.get("READY") == "1":
                run.notify_ready.set()
            if "STATUS" in fields:
                run.notify_status = fields["STATUS"][:200]
                self._signal_change()
            if fields.get("WATCHDOG") == "1":
                run.watchdog_at = trio.current_time()

        with run.task_scope():
            await notify.serve(from_child, on_fields)

    async def _wait_ready_fd(self, run: _Run) -> None:
        assert run.ready_fd is not None
        stream = trio.lowlevel.FdStream(run.ready_fd)
        run.ready_fd = None
        async with stream:
            buf = b""
            while b"\n" not in buf:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    await trio.sleep_forever()  # closed without a newline: start_timeout decides
                buf += chunk

    def _attributed(self, run: _Run, *, registered: bool = True) -> list[Any]:
        """The bus connections that belong to this incarnation (§7.4)."""
        out = []
        child = run.child
        for view in self.manager.bus_views():
            if registered and not view.registered:
                continue
            if view.worker_id in run.attribution:
                if run.attribution[view.worker_id]:
                    out.append(view)
                continue
            mine = self._is_mine(view, child)
            run.attribution[view.worker_id] = mine
            if mine:
                run.conn_ids.add(view.worker_id)
                out.append(view)
        return out

    def _is_mine(self, view: Any, child: ChildHandle) -> bool:
        if self.entry.kind is WorkerKind.ACTOR and view.label is not None:
            return bool(view.label == self.name)
        if view.label is not None:
            return False
        if view.pid is not None:
            if view.pid == child.pid:
                return True
            st = procfs.read_stat(int(view.pid))
            if st is not None and child.pgid is not None and st.pgrp == child.pgid:
                return True
            if child.keeper_pid is not None:
                return int(view.pid) in self.manager.proc_table.descendants(
                    child.keeper_pid, force=True
                )
            return False
        return bool(view.name == self.name)

    async def _bus_wait(self, within: float) -> None:
        with trio.move_on_after(within):
            await self._bus_poke.wait()

    async def _wait_bus_ready(self, run: _Run) -> None:
        wanted = set(self.spec.ready_functions)
        while True:
            views = self._attributed(run)
            if not views:
                await self._bus_wait(0.25)
                continue
            run.ever_connected = True
            first = trio.current_time()
            sig = _signature(views)
            quiet_since = first
            settle = SETTLE_ACTOR if self.entry.kind is WorkerKind.ACTOR else SETTLE
            while trio.current_time() - first < SETTLE_CAP:
                await trio.sleep(0.02)
                views = self._attributed(run)
                now_sig = _signature(views)
                if now_sig != sig:
                    sig, quiet_since = now_sig, trio.current_time()
                elif trio.current_time() - quiet_since >= settle:
                    break
            functions = {f for v in views for f in v.function_ids}
            if views and wanted <= functions:
                return
            await self._bus_wait(0.25)

    def _on_ready(self) -> None:
        run = self.run
        assert run is not None
        self._cancel_timer("start_timeout")
        now = trio.current_time()
        run.ready_at = time.time()
        run.ready_mono = now
        self.policy.on_ready(now)
        self.health_status = HealthStatus.OK
        self.health_last_ok = time.time()
        self.bus_connected = True if run.ever_connected else None
        self._move(Trigger.READY, cause="ready")
        self._set_timer("stable", self.spec.backoff.reset_after)
        assert self._nursery is not None
        self._nursery.start_soon(self._health_loop, run)

    # -- health (§8) --------------------------------------------------------------------------

    async def _health_loop(self, run: _Run) -> None:
        h = self.spec.health
        interval = max(0.01, h.interval)
        with run.task_scope():
            last_ok = trio.current_time()
            lost_since: float | None = None
            over_limit = 0
            while True:
                await trio.sleep(interval)
                self._sample(run)
                limit = self.spec.limits.memory
                rss = (self.resources or {}).get("rss_bytes")
                if limit and rss is not None and rss > limit:
                    over_limit += 1
                    if over_limit >= 2:
                        self.post(_Unhealthy(run.child, EndCause.MEMORY_LIMIT))
                        return
                else:
                    over_limit = 0
                views = self._attributed(run)
                now = trio.current_time()
                if not views:
                    if self.spec.readiness == "bus" or run.ever_connected:
                        if lost_since is None:
                            lost_since = now
                            self.bus_connected = False
                            log.warning(
                                "worker.bus_disconnected", worker=self.name, pid=run.child.pid
                            )
                            self._signal_change()
                        if now - lost_since >= self.spec.reconnect_grace:
                            self._health(HealthStatus.UNRESPONSIVE)
                            self.post(_Unhealthy(run.child, EndCause.HEALTH_TIMEOUT))
                            return
                    if run.watchdog_at is not None and now - run.watchdog_at >= h.timeout:
                        # §8.3: a notify child that pinged WATCHDOG=1 once must keep doing so.
                        self._health(HealthStatus.UNRESPONSIVE)
                        log.warning("worker.watchdog_missed", worker=self.name, pid=run.child.pid)
                        self.post(_Unhealthy(run.child, EndCause.HEALTH_TIMEOUT))
                        return
                    last_ok = now  # otherwise liveness of a plain process is the keeper's
                    continue
                run.ever_connected = True
                if lost_since is not None:
                    lost_since = None
                    last_ok = now
                    self.bus_connected = True
                    self._signal_change()
                budget = max(0.01, last_ok + h.timeout - now)
                t0 = trio.current_time()
                ok = await self.manager.bus.ping(views[0].worker_id, timeout=budget)
                now = trio.current_time()
                if ok:
                    last_ok = now
                    self.health_last_ok = time.time()
                    self.health_rtt_ms = round((now - t0) * 1000, 2)
                    self.health_missed = 0
                    self._health(HealthStatus.OK)
                    continue
                self.health_missed += 1
                if now - last_ok >= h.timeout:
                    self._health(HealthStatus.UNRESPONSIVE)
                    log.warning(
                        "worker.unresponsive",
                        worker=self.name,
                        pid=run.child.pid,
                        missed=self.health_missed,
                    )
                    self.post(_Unhealthy(run.child, EndCause.HEALTH_TIMEOUT))
                    return
                self._health(HealthStatus.LATE)

    def _health(self, status: HealthStatus) -> None:
        if status is not self.health_status:
            self.health_status = status
            self._signal_change()

    def _sample(self, run: _Run) -> None:
        child = run.child
        if child.pgid is None:
            return
        usage = self.manager.proc_table.usage(child.pgid, root=child.keeper_pid)
        if usage is None:
            self.resources = {
                "rss_bytes": None,
                "cpu_percent": None,
                "cpu_seconds": None,
                "processes": None,
            }
            return
        now = time.monotonic()
        cpu_pct = None
        if run.cpu_sample is not None and now > run.cpu_sample[0]:
            cpu_pct = round(
                100.0 * (usage.cpu_seconds - run.cpu_sample[1]) / (now - run.cpu_sample[0]), 1
            )
            cpu_pct = max(0.0, cpu_pct)
        run.cpu_sample = (now, usage.cpu_seconds)
        self.resources = {
            "rss_bytes": usage.rss_bytes,
            "cpu_percent": cpu_pct,
            "cpu_seconds": round(usage.cpu_seconds, 2),
            "processes": usage.processes,
        }

    # -- stopping (§9.1) ----------------------------------------------------------------------

    async def _stop_sequence(self) -> None:
        """Drain, terminate, kill, sweep, evict; the run is over when this returns."""
        run = self.run
        self._cancel_timer("start_timeout")
        self._cancel_timer("stable")
        if self.state is not WorkerState.STOPPING:
            self._move(Trigger.STOP, cause="requested")
        await self._cancel_install()
        if run is None:
            return
        run.handled = True
        child = run.child
        spec = self.spec
        run.cancel_tasks()
        ended_by_itself = child.ended.is_set()
        if not child.ended.is_set() and run.ready_at is not None and not self.manager.forced:
            self._set_phase(Phase.DRAINING)
            for view in self._attributed(run):
                set_draining = getattr(self.manager.bus, "set_draining", None)
                if set_draining is not None:
                    set_draining(view.worker_id)
            with trio.move_on_after(spec.drain_timeout):
                while not child.ended.is_set():
                    ids = [v.worker_id for v in self._attributed(run)] or list(run.conn_ids)
                    if not ids or all(self.manager.bus.in_flight_to(i) == 0 for i in ids):
                        break
                    await trio.sleep(0.05)
            ended_by_itself = ended_by_itself or child.ended.is_set()
        grace = 0.0 if self.manager.forced else spec.stop_timeout
        await self._terminate(child, spec.stop_signal, grace)
        cause = EndCause.REQUESTED
        if ended_by_itself and child.status is not None:
            cause = EndCause.KILLED if child.status.signal is not None else EndCause.EXITED
        self._record_exit(End(cause, child.status))
        await self._finish_run(run)

    async def _terminate(self, child: ChildHandle, stop_signal: int, grace: float) -> None:
        if not child.ended.is_set():
            self._set_phase(Phase.TERMINATING)
            child.signal_group(stop_signal)
            child.signal_group(signal.SIGCONT)  # a stopped process acts on nothing until continued
            with trio.move_on_after(grace):
                await child.ended.wait()
        if not child.ended.is_set():
            self._set_phase(Phase.KILLING)
            log.warning("worker.killing", worker=self.name, pid=child.pid, after_s=grace)
            await child.kill()
            with trio.move_on_after(5.0):
                await child.ended.wait()
        await child.sweep()

    async def _kill_for(self, cause: EndCause) -> None:
        """Health timeout, start timeout or memory limit: kill without drain, then §5.3."""
        run = self.run
        assert run is not None
        before_ready = self.state is WorkerState.STARTING
        run.handled = True
        run.cancel_tasks()
        self._cancel_timer("start_timeout")
        self._cancel_timer("stable")
        self._move(Trigger.KILL, cause=cause.value)
        await self._terminate(run.child, signal.SIGTERM, self.spec.health.kill_grace)
        await self._after_end(End(cause, run.child.status, before_ready=before_ready))

    async def _finish_run(self, run: _Run) -> None:
        self._evict(run)
        if run.link_scope is not None:
            # The actor's end of the link is closed; give the bus a moment to see EOF.
            run.link_scope.deadline = trio.current_time() + 1.0
        if run.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.close(run.ready_fd)
            run.ready_fd = None
        if run.notify is not None:
            run.notify.close()
        self.run = None
        self.resources = None
        self.health_status = None
        self.bus_connected = None
        self.manager.persist()

    def _evict(self, run: _Run) -> None:
        """Close every bus connection of this incarnation before any replacement (§7.4)."""
        ids = set(run.conn_ids)
        for view in self.manager.bus_views():
            if view.worker_id in ids:
                continue
            if self.entry.kind is WorkerKind.ACTOR and view.label == self.name:
                ids.add(view.worker_id)
            elif view.label is None and view.pid is not None and view.pid == run.child.pid:
                ids.add(view.worker_id)
        for wid in ids:
            with contextlib.suppress(Exception):
                self.manager.bus.close_worker(wid)

    # -- ends (§5.2, §5.3) --------------------------------------------------------------------

    def _end_of(self, run: _Run, default: EndCause) -> End:
        status = run.child.status
        cause = default
        if status is not None and status.signal is not None:
            cause = EndCause.KILLED
        return End(cause, status, before_ready=self.state is WorkerState.STARTING)

    async def _on_end(self, end: End) -> None:
        run = self.run
        assert run is not None
        run.handled = True
        run.cancel_tasks()
        self._cancel_timer("start_timeout")
        self._cancel_timer("stable")
        await run.child.sweep()
        await self._after_end(end)

    def _record_exit(self, end: End) -> None:
        status = end.status
        self.last_exit = {
            "at": rfc3339(time.time()),
            "cause": end.cause.value,
            "code": status.code if status else None,
            "signal": status.signal if status else None,
            "signal_name": signal_name(status.signal) if status else None,
            "core": status.core if status else False,
        }
        ended = {"worker": self.name, "pid": self.last_pid, **self.last_exit}
        log.info("worker.ended", **ended)
        self.manager.publish({"event": "ended", **ended})
        self.log.marker(f"ended: {describe_exit(status)} ({end.cause.value})")

    def _set_error(self, code: ErrorCode, message: str) -> None:
        self.last_error = {
            "code": code.value,
            "message": message,
            "log_tail": self.log.log_tail(),
            "at": rfc3339(time.time()),
        }

    async def _after_end(self, end: End, *, spawn_message: str | None = None) -> None:
        """An end that was not requested: record it and apply the restart policy."""
        if self.run is not None:
            await self._finish_run(self.run)
        if end.status is not None:
            self._record_exit(end)
        elif end.cause is EndCause.SPAWN_ERROR:
            self.last_exit = {
                "at": rfc3339(time.time()),
                "cause": end.cause.value,
                "code": None,
                "signal": None,
                "signal_name": None,
                "core": False,
            }
        now = trio.current_time()
        if self.manager.shutting_down or self.desired == "stopped":
            clean = self.policy.is_clean(end)
            decision = Decision(Verdict.EXIT if clean else Verdict.FAIL, clean=clean)
        else:
            decision = self.policy.decide(end, now)
        if decision.error_code is not None:
            self._set_error(decision.error_code, self._error_message(decision, end, spawn_message))
        fields = {
            "exit_code": end.status.code if end.status else None,
            "signal": end.status.signal if end.status else None,
        }
        if decision.verdict is Verdict.RESTART:
            delay = decision.delay or 0.0
            self.next_restart_at = time.time() + delay
            self._move(
                Trigger.END_RESTART, cause=end.cause.value, delay_ms=int(delay * 1000), **fields
            )
            self._set_timer("backoff", delay)
        elif decision.verdict is Verdict.EXIT:
            self._move(Trigger.END_EXITED, cause=end.cause.value, **fields)
        else:
            self._move(
                Trigger.END_FAILED,
                cause=end.cause.value,
                code=decision.error_code.value if decision.error_code else None,
                **fields,
            )
            if decision.escalate and not self.manager.shutting_down:
                self.manager.on_critical(self)

    def _error_message(self, decision: Decision, end: End, spawn_message: str | None) -> str:
        code = decision.error_code
        cmd = command_display(self.entry)
        where = ""
        if self.entry.manifest is not None:
            where = f" (manifest {self.entry.manifest.path})"
        if code is ErrorCode.START_COMMAND_NOT_FOUND:
            return (
                f"worker {self.name!r}: start command not found: `{cmd}`{where} exited 127 "
                "before it was ready; not retried. Fix the command or PATH, then run "
                f"`iii-supervisor start {self.name}`"
            )
        if code is ErrorCode.START_COMMAND_NOT_EXECUTABLE:
            return (
                f"worker {self.name!r}: start command not executable: `{cmd}`{where} exited "
                f"126 before it was ready; not retried. Check permissions, then run "
                f"`iii-supervisor start {self.name}`"
            )
        if code is ErrorCode.SPAWN_FAILED:
            return (
                f"worker {self.name!r}: could not start `{cmd}`{where}: {spawn_message}; not "
                f"retried. Fix it, then run `iii-supervisor start {self.name}`"
            )
        if code is ErrorCode.RESTART_INTENSITY:
            return f"worker {self.name!r}: {decision.detail}; left failed (run `iii-supervisor restart {self.name}`)"
        return f"worker {self.name!r}: {decision.detail or describe_exit(end.status)}"

    # -- status (§12) -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now_mono = trio.current_time()
        run = self.run
        child = run.child if run else None
        spec = self.spec
        views = self._attributed(run) if run else []
        functions = sorted({f for v in views for f in v.function_ids})
        uptime = None
        if run is not None and run.ready_mono is not None:
            uptime = round(now_mono - run.ready_mono, 3)
        elif run is not None:
            uptime = round(now_mono - run.started_mono, 3)
        bus: dict[str, Any] | None = None
        if views:
            v = views[0]
            bus = {
                "connected": True,
                "connection_id": v.worker_id,
                "namespace": v.namespace,
                "registered_name": v.name,
                "functions": functions[:200],
                "triggers": sum(len(x.trigger_ids) for x in views),
                "trigger_types": sorted({t for x in views for t in x.trigger_type_ids}),
            }
            if len(functions) > 200:
                bus["functions_truncated"] = len(functions) - 200
        elif run is not None and (self.spec.readiness == "bus" or run.ever_connected):
            bus = {"connected": False, "functions": [], "triggers": 0, "trigger_types": []}
        health = None
        if self.state is WorkerState.READY and self.health_status is not None:
            health = {
                "status": self.health_status.value,
                "last_ok_at": rfc3339(self.health_last_ok) if self.health_last_ok else None,
                "rtt_ms": self.health_rtt_ms,
                "missed": self.health_missed,
            }
        if run is not None and self.resources is None:
            self._sample(run)
        manifest = self.entry.manifest
        out: dict[str, Any] = {
            "name": self.name,
            "kind": KIND_NAMES.get(self.entry.kind, self.entry.kind.value),
            "source": str(manifest.path) if manifest else None,
            "command": command_display(self.entry),
            "working_dir": working_dir(self.entry, self.manager.config_dir),
            "state": self.state.value,
            "phase": self.phase.value if self.phase else None,
            "desired": self.desired,
            "since": rfc3339(self.since),
            "health": health,
            "pid": child.pid if child else None,
            "keeper_pid": child.keeper_pid if child else None,
            "pgid": child.pgid if child else None,
            "processes": (self.resources or {}).get("processes"),
            "started_at": rfc3339(child.spawned_at) if child else None,
            "ready_at": rfc3339(run.ready_at) if run and run.ready_at else None,
            "uptime_s": uptime,
            "restarts": self.policy.total_restarts,
            "spawns": self.spawns,
            "consecutive_failures": self.policy.consecutive_failures(now_mono),
            "restarts_in_window": self.policy.restarts_in_window(now_mono),
            "next_restart_at": rfc3339(self.next_restart_at)
            if self.next_restart_at and self.state is WorkerState.BACKOFF
            else None,
            "last_exit": self.last_exit,
            "last_error": self.last_error,
            "notify_status": run.notify_status if run is not None else None,
            "bus": bus,
            "resources": {
                k: (self.resources or {}).get(k)
                for k in ("rss_bytes", "cpu_percent", "cpu_seconds")
            },
            "policy": {
                "restart": spec.restart.value,
                "max_restarts": spec.max_restarts,
                "restart_window_s": spec.restart_window,
                "stop_timeout_s": spec.stop_timeout,
                "critical": spec.critical,
                "readiness": spec.readiness,
                "autostart": self.manager.autostarts(self.entry),
                "depends_on": list(spec.depends_on),
            },
            "log": {
                "file": str(self.log.file_path) if self.log.file_path else None,
                "dropped": self.log.dropped,
            },
            "warnings": list(self.warnings),
        }
        return out

    def state_record(self) -> dict[str, Any]:
        child = self.run.child if self.run else None
        return {
            "keeper_pid": child.keeper_pid if child else None,
            "keeper_start_time": child.keeper_start_time if child else None,
            "pgid": child.pgid if child else None,
            "pid": child.pid if child else None,
            "start_time": child.worker_start_time if child else None,
            "state": self.state.value,
            "started_at": rfc3339(child.spawned_at) if child else None,
        }


def _signature(views: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(
        sorted((v.worker_id, v.function_ids, v.trigger_type_ids, v.trigger_ids) for v in views)
    )


# -- the manager ----------------------------------------------------------------------------


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
        self.engine_port = engine_port if engine_port is not None else cfg.engine_port
        self.launcher: Launcher = launcher or KeeperLauncher()
        self.rng = rng or random.Random()
        self.config_path = config_path or cfg.source
        self.config_dir = Path(self.config_path).resolve().parent if self.config_path else None
        self._on_critical = on_critical
        self._on_change = on_change
        self.base_env = dict(os.environ if base_env is None else base_env)
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
        self._lifeline_r, self._lifeline_w = os.pipe()  # both close-on-exec
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

    def bus_views(self) -> list[Any]:
        try:
            return list(self.bus.workers())
        except Exception:
            log.exception("bus.workers failed")
            return []

    def _on_bus_event(self, event: Any) -> None:
        for ctrl in self.controllers.values():
            ctrl.poke_bus()

    # -- dependencies (§5.5) ------------------------------------------------------------------

    def dependency_controllers(self, ctrl: WorkerController) -> list[tuple[str, WorkerController]]:
        return [(d, self.controllers[d]) for d in ctrl.spec.depends_on if d in self.controllers]

    def dependency_verdict(self, ctrl: WorkerController) -> tuple[str, str | None]:
        """``ready``, ``waiting`` or ``failed`` (with the dependency that decided it)."""
        for dep, other in self.dependency_controllers(ctrl):
            if other.state is WorkerState.FAILED:
                return "failed", dep
            if other.state is not WorkerState.READY:
                return "waiting", dep
        if ctrl.entry.kind is not WorkerKind.ACTOR:
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

    def on_worker_changed(self, ctrl: WorkerController) -> None:
        for other in self.controllers.values():
            if other is not ctrl and (
                ctrl.name in other.spec.depends_on
                or (
                    ctrl.entry.kind is WorkerKind.ACTOR and other.entry.kind is not WorkerKind.ACTOR
                )
            ):
                other.post(_DepsChanged())
        if self._on_change is not None:
            self._on_change()

    def on_critical(self, ctrl: WorkerController) -> None:
        log.error("worker.critical_failed", worker=ctrl.name, error=ctrl.last_error)
        if self._on_critical is not None:
            self._on_critical(ctrl.name)

    # -- spawning (§7) ------------------------------------------------------------------------

    def spawn_request(
        self, ctrl: WorkerController, cleanup: list[Callable[[], None]]
    ) -> tuple[SpawnRequest, socket.socket | None, int | None, NotifyReceiver | None]:
        """Build the spawn request; returns it with the supervisor's end of the actor link,
        of the readiness pipe, and the notify socket. Child-side fds are closed by
        ``cleanup`` after spawn."""
        entry = ctrl.entry
        spec = entry.supervise
        argv, shell = resolve_command(entry)
        reserved = self._reserved_env(entry)
        pass_fds = [self._lifeline_r]
        link: socket.socket | None = None
        if entry.kind is WorkerKind.ACTOR:
            link, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            reserved["III_BUS_FD"] = str(theirs.fileno())
            pass_fds.append(theirs.fileno())
            cleanup.append(theirs.close)
        ready_r: int | None = None
        if spec.readiness == "fd":
            ready_r, ready_w = os.pipe()
            reserved["III_READY_FD"] = str(ready_w)
            pass_fds.append(ready_w)
            cleanup.append(lambda: os.close(ready_w))
        notify: NotifyReceiver | None = None
        if spec.readiness == "notify":
            directory = self.state_dir.path / "notify" if self.state_dir is not None else None
            notify = NotifyReceiver(directory, entry.name, str(ctrl.spawns + 1))
            reserved["NOTIFY_SOCKET"] = notify.address
            reserved["WATCHDOG_USEC"] = str(int(spec.health.timeout * 1_000_000))
        try:
            request = self._request(entry, argv, shell, reserved, pass_fds)
        except BaseException:
            if notify is not None:
                notify.close()
            raise
        return request, link, ready_r, notify

    def install_request(self, ctrl: WorkerController, command: str) -> SpawnRequest:
        """The install script as a spawn: the worker's env and cwd, no link, no readiness."""
        reserved = self._reserved_env(ctrl.entry)
        return self._request(ctrl.entry, None, command, reserved, [self._lifeline_r])

    def _reserved_env(self, entry: WorkerEntry) -> dict[str, str]:
        """The variables every child of this worker gets from us (§7.1)."""
        url = f"ws://127.0.0.1:{self.engine_port}"
        reserved = {
            "III_URL": url,
            "III_ENGINE_URL": url,
            "III_WORKER_NAME": entry.name,
            "III_ENGINE_PID": str(os.getpid()),
            "III_LIFELINE_FD": str(self._lifeline_r),
        }
        if self.config_path:
            reserved["III_CONFIG_PATH"] = str(self.config_path)
        if self.state_dir is not None:
            reserved["III_CONFIG"] = str(
                self.state_dir.write_worker_config(entry.name, entry.config)
            )
            self.state_dir.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            reserved["III_DATA_DIR"] = str(self.state_dir.data_dir)
        return reserved

    def _request(
        self,
        entry: WorkerEntry,
        argv: tuple[str, ...] | None,
        shell: str | None,
        reserved: dict[str, str],
        pass_fds: list[int],
    ) -> SpawnRequest:
        spec = entry.supervise
        env = build_env(entry, base=self.base_env, reserved=reserved)
        if entry.kind is WorkerKind.ACTOR:
            # Actors are our own packages: make them importable from a source checkout too.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p
            )
        rlimits = {"nofile": spec.limits.nofile} if spec.limits.nofile else {}
        catch = tuple(
            s
            for s in (spec.stop_signal,)
            if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT)
        )
        return SpawnRequest(
            name=entry.name,
            argv=argv,
            shell=shell,
            env=env,
            cwd=working_dir(entry, self.config_dir),
            pass_fds=tuple(pass_fds),
            rlimits=rlimits,
            sweep_grace=self.sweep_grace,
            orphan_grace=self.orphan_grace,
            catch_signals=catch,
        )

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
