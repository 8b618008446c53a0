"""One worker's controller: the only owner of its state machine. Operator commands, child
exits, readiness, timers and health verdicts arrive as messages on its inbox and are handled
one at a time, in order; it decides the next step and ``WorkerLifecycle`` carries it out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
import trio

from supervisor.config.model import WorkerEntry
from supervisor.supervision.childenv import working_dir
from supervisor.supervision.health import sample_resources
from supervisor.supervision.lifecycle import ControllerHost, WorkerLifecycle
from supervisor.supervision.messages import (
    ChildEnded,
    ChildReady,
    Command,
    CommandResult,
    DependenciesChanged,
    InstallDone,
    Message,
    TimerFired,
    Unhealthy,
)
from supervisor.supervision.restart import End, RestartPolicy, signal_name
from supervisor.supervision.snapshot import state_record, worker_snapshot
from supervisor.supervision.states import EndCause, ErrorCode, Phase, Trigger, WorkerState

__all__ = ["WorkerController", "ControllerHost", "STEP_MARGIN"]

log = structlog.get_logger(__name__)

STEP_MARGIN = 30.0  # seconds: spawning and the kill/sweep waits on top of the spec's timeouts


class WorkerController(WorkerLifecycle):
    """The only owner of one worker's observed state."""

    async def command(self, kind: str, arg: Any = None) -> CommandResult:
        """Queue a command and wait for the controller to finish it. A command equal to one
        already queued or running joins it (two concurrent ``restart`` → one restart)."""
        key = f"{kind}:{arg!r}"
        cmd = self._busy.get(key)
        if cmd is None:
            cmd = Command(kind, arg)
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
            if isinstance(msg, Command):
                msg.result = self._result(False, error=f"worker {self.name!r} was removed")
                msg.done.set()

    # -- the message loop ---------------------------------------------------------------------

    async def _handle(self, msg: Message) -> None:
        run = self.run
        if isinstance(msg, Command):
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
        elif isinstance(msg, ChildEnded):
            if run is not None and msg.child is run.child and not run.handled:
                await self._on_end(self._end_of(run, EndCause.EXITED))
        elif isinstance(msg, ChildReady):
            if (
                run is not None
                and msg.child is run.child
                and self.state is WorkerState.STARTING
                and not msg.child.ended.is_set()
            ):
                self._on_ready(run)
        elif isinstance(msg, Unhealthy):
            if run is not None and msg.child is run.child and self.state is WorkerState.READY:
                await self._kill_for(run, msg.cause)
        elif isinstance(msg, TimerFired):
            if self._timer_current(msg):
                await self._on_timer(msg.kind)
        elif isinstance(msg, DependenciesChanged):
            await self._on_deps_changed()
        elif isinstance(msg, InstallDone):
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
                await self._kill_for(self.run, EndCause.START_TIMEOUT)
        elif kind == "stable" and self.state is WorkerState.READY:
            self._signal_change()  # consecutive_failures now reads 0

    # -- commands -----------------------------------------------------------------------------

    def _result(self, changed: bool, error: str | None = None) -> CommandResult:
        return CommandResult(self.name, changed, self.state.value, self.pid, error)

    async def _run_command(self, cmd: Command) -> CommandResult:
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
            verdict, dep = self.manager.dependency_verdict(self.entry)
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
                    self.manager.on_critical(self.name)
            elif verdict == "ready":
                await self._install_or_spawn()
            return
        if (
            self.state is WorkerState.FAILED
            and self._dep_blocked
            and self.desired == "running"
            and not self.manager.shutting_down
        ):
            verdict, _ = self.manager.dependency_verdict(self.entry)
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
            for dep, ready_count, state in self.manager.dependencies(self.entry):
                seen = self._dep_seen.get(dep, ready_count)
                if ready_count > seen and state is WorkerState.READY:
                    self._dep_seen[dep] = ready_count
                    log.info("worker.dependency_restarted", worker=self.name, dependency=dep)
                    await self._stop_sequence()
                    self._move(Trigger.SPAWN, cause="dependency_restart", dependency=dep)
                    await self._begin_start()
                    return

    # -- status (§12) -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        views = self.connections()
        if self.run is not None and self.health.resources is None:
            self.health.resources = sample_resources(self.manager.proc_table, self.run, None)
        return worker_snapshot(
            self,
            views,
            now=trio.current_time(),
            autostart=self.manager.autostarts(self.entry),
            working_dir=working_dir(self.entry, self.manager.config_dir),
        )

    def state_record(self) -> dict[str, Any]:
        return state_record(self.state, self.run)
