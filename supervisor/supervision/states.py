"""The worker lifecycle: states, phases, end causes, error codes and the one transition table.

Rules (SUPERVISOR.md §6), stated before the code as h11 does:

* A worker has a *desired* state (running or stopped) and an *observed* ``WorkerState``.
* Only the worker's controller moves the observed state, and only through ``transition``,
  which looks the move up in ``TRANSITIONS``; any move not in the table is a bug and raises
  ``IllegalTransition`` instead of silently corrupting status.
* ``stopping`` is the only state a stop sequence runs in; from there the worker goes to
  ``stopped`` (requested), ``starting`` (restart), or wherever the restart policy sends an
  end that was not requested (``backoff``, ``exited``, ``failed``).
* Terminal states (``stopped``, ``exited``, ``failed``) leave only on an operator command,
  a reload, or (for ``DEPENDENCY_FAILED``) the dependency becoming ready again.

supervisord users know these states by other names; ``SUPERVISORD_NAMES`` gives them
(``ready`` is RUNNING, ``failed`` is FATAL).
"""

from __future__ import annotations

import enum

__all__ = [
    "WorkerState",
    "Phase",
    "Trigger",
    "EndCause",
    "ErrorCode",
    "HealthStatus",
    "IllegalTransition",
    "TRANSITIONS",
    "SUPERVISORD_NAMES",
    "RUNNING_STATES",
    "TERMINAL_STATES",
    "transition",
]


class WorkerState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    EXITED = "exited"
    FAILED = "failed"


class Phase(enum.Enum):
    """Sub-steps of ``starting`` and ``stopping`` (reported as ``phase`` in status)."""

    WAITING = "waiting"  # dependencies
    INSTALLING = "installing"
    SPAWNING = "spawning"
    REGISTERING = "registering"  # spawned, not yet ready
    DRAINING = "draining"
    TERMINATING = "terminating"  # after the stop signal
    KILLING = "killing"  # after SIGKILL


class Trigger(enum.Enum):
    """What happened to a worker; the column in the transition table."""

    START = "start"  # start/restart command, reload, autostart, dependency recovered
    SPAWN = "spawn"  # stopping → starting for a restart
    READY = "ready"
    END_RESTART = "end_restart"  # end not requested; policy schedules a restart
    END_EXITED = "end_exited"  # clean end; policy says stay down
    END_FAILED = "end_failed"  # failure; policy says stay down (or non-retryable)
    TIMER = "timer"  # backoff elapsed
    STOP = "stop"  # stop/restart command, reload removal, shutdown
    KILL = "kill"  # health timeout, start timeout or memory limit: the controller kills
    STOPPED = "stopped"  # a requested stop completed
    RESET_FAILED = "reset_failed"
    DEPENDENCY_FAILED = "dependency_failed"


class EndCause(enum.Enum):
    """Why a worker process ended (SUPERVISOR.md §5.2)."""

    REQUESTED = "requested"
    EXITED = "exited"
    KILLED = "killed"
    HEALTH_TIMEOUT = "health_timeout"
    START_TIMEOUT = "start_timeout"
    SPAWN_ERROR = "spawn_error"
    MEMORY_LIMIT = "memory_limit"


class ErrorCode(enum.Enum):
    """``last_error.code`` values (SUPERVISOR.md Appendix C)."""

    START_COMMAND_NOT_FOUND = "START_COMMAND_NOT_FOUND"
    START_COMMAND_NOT_EXECUTABLE = "START_COMMAND_NOT_EXECUTABLE"
    SPAWN_FAILED = "SPAWN_FAILED"
    INSTALL_FAILED = "INSTALL_FAILED"
    START_TIMEOUT = "START_TIMEOUT"
    EXITED_BEFORE_READY = "EXITED_BEFORE_READY"
    WORKER_EXITED = "WORKER_EXITED"
    WORKER_KILLED = "WORKER_KILLED"
    HEALTH_TIMEOUT = "HEALTH_TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    RESTART_INTENSITY = "RESTART_INTENSITY"
    DEPENDENCY_FAILED = "DEPENDENCY_FAILED"
    UNSUPPORTED_SOURCE = "UNSUPPORTED_SOURCE"
    CONFIG_INVALID = "CONFIG_INVALID"


class HealthStatus(enum.Enum):
    OK = "ok"
    LATE = "late"  # at least one ping missed, still within health.timeout
    UNRESPONSIVE = "unresponsive"


S = WorkerState
T = Trigger

# Every legal move. Keyed by (from, trigger); the value is the destination.
TRANSITIONS: dict[tuple[WorkerState, Trigger], WorkerState] = {
    # Leaving rest: an operator (or reload, or autostart) asks for the worker.
    (S.STOPPED, T.START): S.STARTING,
    (S.EXITED, T.START): S.STARTING,
    (S.FAILED, T.START): S.STARTING,
    (S.FAILED, T.RESET_FAILED): S.STOPPED,
    # Starting.
    (S.STARTING, T.READY): S.READY,
    (S.STARTING, T.END_RESTART): S.BACKOFF,
    (S.STARTING, T.END_EXITED): S.EXITED,
    (S.STARTING, T.END_FAILED): S.FAILED,
    (S.STARTING, T.DEPENDENCY_FAILED): S.FAILED,
    (S.STARTING, T.KILL): S.STOPPING,  # start_timeout
    (S.STARTING, T.STOP): S.STOPPING,
    # Ready.
    (S.READY, T.END_RESTART): S.BACKOFF,
    (S.READY, T.END_EXITED): S.EXITED,
    (S.READY, T.END_FAILED): S.FAILED,
    (S.READY, T.KILL): S.STOPPING,  # health timeout, memory limit
    (S.READY, T.STOP): S.STOPPING,
    # Backoff.
    (S.BACKOFF, T.TIMER): S.STARTING,
    (S.BACKOFF, T.START): S.STARTING,  # start/restart skips the remaining wait
    (S.BACKOFF, T.STOP): S.STOPPED,  # nothing runs: the pending restart is just cancelled
    # Stopping: requested stops end in stopped (or starting for a restart); kills by the
    # controller end wherever the restart policy says.
    (S.STOPPING, T.STOPPED): S.STOPPED,
    (S.STOPPING, T.SPAWN): S.STARTING,
    (S.STOPPING, T.END_RESTART): S.BACKOFF,
    (S.STOPPING, T.END_EXITED): S.EXITED,
    (S.STOPPING, T.END_FAILED): S.FAILED,
}

del S, T

SUPERVISORD_NAMES: dict[WorkerState, str] = {
    WorkerState.STOPPED: "STOPPED",
    WorkerState.STARTING: "STARTING",
    WorkerState.READY: "RUNNING",
    WorkerState.BACKOFF: "BACKOFF",
    WorkerState.STOPPING: "STOPPING",
    WorkerState.EXITED: "EXITED",
    WorkerState.FAILED: "FATAL",
}

# States in which a process may exist or is about to (a stop has something to do).
RUNNING_STATES = frozenset({WorkerState.STARTING, WorkerState.READY, WorkerState.STOPPING})
TERMINAL_STATES = frozenset({WorkerState.STOPPED, WorkerState.EXITED, WorkerState.FAILED})


class IllegalTransition(RuntimeError):
    def __init__(self, state: WorkerState, trigger: Trigger) -> None:
        super().__init__(f"no transition from {state.value!r} on {trigger.value!r}")
        self.state = state
        self.trigger = trigger


def transition(state: WorkerState, trigger: Trigger) -> WorkerState:
    """The state ``trigger`` moves ``state`` to, or ``IllegalTransition``."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(state, trigger) from None
