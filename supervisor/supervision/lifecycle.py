"""One worker's incarnations and the transitions they make: install, spawn, readiness and
health tasks, the stop sequence, and what an end means under the restart policy.

``WorkerLifecycle`` holds the observed state of one worker and carries out each step;
``WorkerController`` (``controller``) adds the inbox and decides which step comes next.
Readiness, health, stopping and the status row are in their own modules (SUPERVISOR.md §5–§9).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog
import trio

from supervisor.config.model import SuperviseSpec, WorkerEntry, WorkerKind
from supervisor.supervision import procfs
from supervisor.supervision.buslike import BusLike, BusNotices, WorkerViewLike
from supervisor.supervision.failures import exit_record, failure_message
from supervisor.supervision.health import HealthRecord, watch_health
from supervisor.supervision.incarnation import ConnectionAttribution, Incarnation
from supervisor.supervision.install import InstallRecords, install_digest, run_install
from supervisor.supervision.logcapture import WorkerLog, rfc3339
from supervisor.supervision.messages import (
    ChildEnded,
    ChildReady,
    Command,
    InstallDone,
    Message,
    TimerFired,
    Unhealthy,
)
from supervisor.supervision.notifyrecv import NotifyReceiver
from supervisor.supervision.readiness import serve_notify, wait_ready
from supervisor.supervision.restart import Decision, End, RestartPolicy, Verdict, describe_exit
from supervisor.supervision.spawn import ChildHandle, Launcher, SpawnError
from supervisor.supervision.spawnplan import SpawnPlan
from supervisor.supervision.states import (
    EndCause,
    ErrorCode,
    HealthStatus,
    Phase,
    Trigger,
    WorkerState,
    transition,
)
from supervisor.supervision.stopping import drain, terminate

__all__ = ["WorkerLifecycle", "ControllerHost", "DependencyState"]

log = structlog.get_logger(__name__)

INSTALL_CANCEL_WAIT = 10.0  # a cancelled install script gets this long to be killed and reaped
LINK_EOF_GRACE = 1.0  # after a stop, the bus gets this long to see the actor's link close

DependencyState = tuple[str, int, WorkerState]  # (name, times it became ready, its state now)


class ControllerHost(Protocol):
    """What a controller asks of the child manager that holds it (by worker, never by
    controller: a controller knows no other controller)."""

    bus: BusLike
    launcher: Launcher
    rng: random.Random
    logs_dir: Path | None
    config_dir: Path | None
    sweep_grace: float
    shutting_down: bool
    forced: bool
    no_install: bool
    installs: InstallRecords
    proc_table: procfs.ProcessTable
    spawn_plan: SpawnPlan

    def bus_views(self) -> list[WorkerViewLike]: ...
    def publish(self, event: dict[str, Any]) -> None: ...
    def persist(self) -> None: ...
    def autostarts(self, entry: WorkerEntry) -> bool: ...
    def on_worker_changed(self, name: str) -> None: ...
    def on_critical(self, name: str) -> None: ...
    def dependency_verdict(self, entry: WorkerEntry) -> tuple[str, str | None]: ...
    def dependencies(self, entry: WorkerEntry) -> Sequence[DependencyState]: ...


class WorkerLifecycle:
    """The observed state of one worker, and the steps that change it. Only its own
    controller task calls these methods, one message at a time."""

    def __init__(self, host: ControllerHost, entry: WorkerEntry) -> None:
        self.manager = host
        self.entry = entry
        self.name = entry.name
        self.state = WorkerState.STOPPED
        self.phase: Phase | None = None
        self.desired = "stopped"
        self.since = time.time()
        self.policy = RestartPolicy(entry.supervise, host.rng)
        self.log = WorkerLog(entry.name, entry.supervise.log, host.logs_dir)
        self.run: Incarnation | None = None
        self.spawns = 0
        self.ready_count = 0  # times this worker became ready (rest_for_one edges)
        self.last_exit: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None
        self.next_restart_at: float | None = None
        self.last_pid: int | None = None
        self.health = HealthRecord()
        self.changed = trio.Event()
        self.ticks = 0
        self.warnings: list[str] = []
        self.notices = BusNotices()  # the child manager forwards every bus event here
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[Message](math.inf)
        self._nursery: trio.Nursery | None = None
        self._timers: dict[str, tuple[int, trio.CancelScope]] = {}
        self._token = 0
        self._dep_seen: dict[str, int] = {}
        self._busy: dict[str, Command] = {}  # joinable commands queued or in progress
        self._dep_blocked = False
        self._forgotten = False
        self._install: tuple[trio.CancelScope, trio.Event] | None = None  # while installing
        self.busy_since: float | None = None  # trio time the current message began

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def spec(self) -> SuperviseSpec:
        return self.entry.supervise

    @property
    def pid(self) -> int | None:
        return self.run.child.pid if self.run else None

    def post(self, msg: Message) -> bool:
        try:
            self._inbox_send.send_nowait(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False  # the controller is gone (removed by a reload)
        return True

    def close(self) -> None:
        self._inbox_send.close()

    def connections(self) -> list[WorkerViewLike]:
        """The current incarnation's registered bus connections (§7.4)."""
        return self.run.connections(self.manager.bus_views()) if self.run else []

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
        self.manager.on_worker_changed(self.name)

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
            self.post(TimerFired(kind, token))

    def _cancel_timer(self, kind: str) -> None:
        entry = self._timers.pop(kind, None)
        if entry is not None:
            entry[1].cancel()

    def _timer_current(self, msg: TimerFired) -> bool:
        entry = self._timers.get(msg.kind)
        if entry is None or entry[0] != msg.token:
            return False
        del self._timers[msg.kind]
        return True

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
                request = self.manager.spawn_plan.install(self.entry, command)
                outcome = await run_install(
                    self.manager.launcher,
                    request,
                    self.log,
                    self._nursery,
                    self.spec.install_timeout,
                )
                self.post(InstallDone(outcome, digest))
        finally:
            finished.set()

    async def _cancel_install(self) -> None:
        if self._install is not None:
            scope, finished = self._install
            self._install = None
            scope.cancel()
            with trio.move_on_after(INSTALL_CANCEL_WAIT):
                await finished.wait()

    async def _on_install_done(self, msg: InstallDone) -> None:
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
            self.manager.on_critical(self.name)

    # -- spawning ---------------------------------------------------------------------------

    async def _spawn(self) -> None:
        assert self._nursery is not None
        self._set_phase(Phase.SPAWNING)
        self._dep_seen = {d: count for d, count, _ in self.manager.dependencies(self.entry)}
        cleanup: list[Callable[[], None]] = []
        link_sock: socket.socket | None = None
        ready_r: int | None = None
        notify: NotifyReceiver | None = None
        try:
            request, link_sock, ready_r, notify = self.manager.spawn_plan.worker(
                self.entry, self.spawns + 1, cleanup
            )
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
        attribution = ConnectionAttribution(
            self.name, self.entry.kind is WorkerKind.ACTOR, child, self.manager.proc_table
        )
        run = Incarnation(
            child=child,
            number=self.spawns,
            started_mono=now,
            attribution=attribution,
            ready_fd=ready_r,
            notify=notify,
        )
        self.run = run
        self.last_pid = child.pid
        self.health.status = None
        self.health.bus_connected = None
        self.health.missed = 0
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
            self._nursery.start_soon(serve_notify, run, notify, self._signal_change)
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
        self.post(ChildEnded(child))

    async def _watch_ready(self, run: Incarnation) -> None:
        with run.task_scope():
            await wait_ready(
                run,
                self.spec,
                actor=self.entry.kind is WorkerKind.ACTOR,
                connections=self.connections,
                notices=self.notices,
            )
            self.post(ChildReady(run.child))

    def _on_ready(self, run: Incarnation) -> None:
        assert self._nursery is not None
        self._cancel_timer("start_timeout")
        now = trio.current_time()
        run.ready_at = time.time()
        run.ready_mono = now
        self.policy.on_ready(now)
        self.health.status = HealthStatus.OK
        self.health.last_ok = time.time()
        self.health.bus_connected = True if run.ever_connected else None
        self._move(Trigger.READY, cause="ready")
        if self.spec.nice_when_ready is not None:
            self._renice(run, self.spec.nice_when_ready)
        self._set_timer("stable", self.spec.backoff.reset_after)
        self._nursery.start_soon(self._watch_health, run)

    def _renice(self, run: Incarnation, nice: int) -> None:
        """Every thread of every process in the worker's group (its keeper too) at ``nice``;
        what it starts later inherits it."""
        pgid = run.child.pgid
        if pgid is None:
            return
        try:
            os.setpriority(os.PRIO_PGRP, pgid, nice)
        except OSError as exc:
            log.warning(
                "worker.renice_failed",
                worker=self.name,
                nice=nice,
                error=exc.strerror,
                hint="a negative nice needs root or CAP_SYS_NICE",
            )

    async def _watch_health(self, run: Incarnation) -> None:
        with run.task_scope():
            cause = await watch_health(
                run,
                self.spec,
                self.health,
                name=self.name,
                connections=self.connections,
                ping=self.manager.bus.ping,
                proc_table=lambda: self.manager.proc_table,
                on_change=self._signal_change,
            )
            self.post(Unhealthy(run.child, cause))

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
            ids = [view.worker_id for view in self.connections()]
            await drain(self.manager.bus, self.notices, ids, child, spec.drain_timeout)
            ended_by_itself = ended_by_itself or child.ended.is_set()
        grace = 0.0 if self.manager.forced else spec.stop_timeout
        await terminate(child, spec.stop_signal, grace, name=self.name, on_phase=self._set_phase)
        cause = EndCause.REQUESTED
        if ended_by_itself and child.status is not None:
            cause = EndCause.KILLED if child.status.signal is not None else EndCause.EXITED
        self._record_exit(End(cause, child.status))
        await self._finish_run(run)

    async def _kill_for(self, run: Incarnation, cause: EndCause) -> None:
        """Health timeout, start timeout or memory limit: kill without drain, then §5.3."""
        before_ready = self.state is WorkerState.STARTING
        run.handled = True
        run.cancel_tasks()
        self._cancel_timer("start_timeout")
        self._cancel_timer("stable")
        self._move(Trigger.KILL, cause=cause.value)
        await terminate(
            run.child,
            signal.SIGTERM,
            self.spec.health.kill_grace,
            name=self.name,
            on_phase=self._set_phase,
        )
        await self._after_end(End(cause, run.child.status, before_ready=before_ready))

    async def _finish_run(self, run: Incarnation) -> None:
        # Close every bus connection of this incarnation before any replacement (§7.4).
        for worker_id in run.attribution.to_evict(self.manager.bus_views()):
            with contextlib.suppress(Exception):
                self.manager.bus.close_worker(worker_id)
        if run.link_scope is not None:
            # The actor's end of the link is closed; give the bus a moment to see EOF.
            run.link_scope.deadline = trio.current_time() + LINK_EOF_GRACE
        if run.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.close(run.ready_fd)
            run.ready_fd = None
        if run.notify is not None:
            run.notify.close()
        self.run = None
        self.health.reset()
        self.manager.persist()

    # -- ends (§5.2, §5.3) --------------------------------------------------------------------

    def _end_of(self, run: Incarnation, default: EndCause) -> End:
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
        self.last_exit = exit_record(end, time.time())
        ended = {"worker": self.name, "pid": self.last_pid, **self.last_exit}
        log.info("worker.ended", **ended)
        self.manager.publish({"event": "ended", **ended})
        self.log.marker(f"ended: {describe_exit(end.status)} ({end.cause.value})")

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
            self.last_exit = exit_record(end, time.time())
        now = trio.current_time()
        if self.manager.shutting_down or self.desired == "stopped":
            clean = self.policy.is_clean(end)
            decision = Decision(Verdict.EXIT if clean else Verdict.FAIL, clean=clean)
        else:
            decision = self.policy.decide(end, now)
        if decision.error_code is not None:
            message = failure_message(self.entry, decision, end, spawn_message)
            self._set_error(decision.error_code, message)
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
                self.manager.on_critical(self.name)
