"""The validated configuration every part of the supervisor runs from.

``supervisor.config.loader`` builds these from ``config.yaml`` (+ manifests, + ``iii-supervisor.yaml``);
the bus, the listeners and the child manager only ever see these frozen values. Durations are
seconds (float), sizes are bytes (int).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import attrs

from manifests.blocks.worker_manager import ListenerBlock, RbacBlock
from manifests.model import Manifest


class RestartMode(enum.Enum):
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


RESTART_ALIASES = {
    "always": RestartMode.ALWAYS,
    "permanent": RestartMode.ALWAYS,
    "on-failure": RestartMode.ON_FAILURE,
    "transient": RestartMode.ON_FAILURE,
    "never": RestartMode.NEVER,
    "temporary": RestartMode.NEVER,
}


@attrs.frozen
class Backoff:
    initial: float = 0.5
    max: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    reset_after: float = 60.0


@attrs.frozen
class Health:
    interval: float = 5.0
    timeout: float = 15.0
    kill_grace: float = 2.0
    probe_function: str | None = None


@attrs.frozen
class Limits:
    memory: int | None = None
    nofile: int | None = None


@attrs.frozen
class LogSettings:
    file: bool = True
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 3
    to_supervisor_log: bool = True


@attrs.frozen
class SuperviseSpec:
    """The operator's ``supervise:`` block of one worker (SUPERVISOR.md §4.2), with defaults."""

    restart: RestartMode = RestartMode.ALWAYS
    max_restarts: int = 5
    restart_window: float = 60.0
    backoff: Backoff = Backoff()
    success_exit_codes: tuple[int, ...] = (0,)
    success_signals: tuple[int, ...] = ()
    restart_prevent_exit_codes: tuple[int, ...] = (126, 127)
    critical: bool = False
    autostart: bool = True
    depends_on: tuple[str, ...] = ()
    on_dependency_restart: str = "ignore"  # ignore | restart
    readiness: str = "bus"  # bus | process | notify | fd
    start_timeout: float = 60.0
    min_uptime: float = 1.0
    ready_functions: tuple[str, ...] = ()
    health: Health = Health()
    reconnect_grace: float = 10.0
    stop_signal: int = 15  # signal.SIGTERM
    stop_timeout: float = 10.0
    drain_timeout: float = 5.0
    install: str = "once"  # once | always | never
    install_timeout: float = 600.0
    command: str | list[str] | None = None
    working_dir: str | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    inherit_env: bool = True
    nice: int | None = None  # the scheduling niceness (-20..19); None: the supervisor's
    nice_when_ready: int | None = None  # the niceness from the moment it is ready
    limits: Limits = Limits()
    log: LogSettings = LogSettings()
    replicas: int = 1  # room for the autoscaling milestone; only 1 is accepted today


class WorkerKind(enum.Enum):
    ACTOR = "actor"  # a built-in actor: python -m actors.<module>, local socketpair link
    LISTENER = "listener"  # iii-worker-manager: in-process WebSocket listener, not a child
    IN_PROCESS = "in-process"  # built into the bus (iii-engine-functions, iii-observability)
    MANIFEST = "manifest"  # user worker described by worker_path/iii.worker.yaml
    COMMAND = "command"  # user worker given by supervise.command


@attrs.frozen
class WorkerEntry:
    """One entry of ``workers:`` after resolution."""

    name: str  # unique: duplicates become name#1, name#2 ...
    kind: WorkerKind
    config: Any = None  # the entry's ``config:`` block (validated for built-ins), or None
    actor_module: str | None = None  # for ACTOR: e.g. "actors.http"
    supervise: SuperviseSpec = SuperviseSpec()
    manifest: Manifest | None = None
    worker_path: Path | None = None
    working_dir: Path | None = None
    line: int | None = None  # line of the entry in config.yaml, for messages


# One schema, two readers: the validated ``iii-worker-manager`` block *is* the engine's listener
# model (manifests/blocks/worker_manager.py), so the two cannot drift apart.
ListenerConfig = ListenerBlock
RbacConfig = RbacBlock


@attrs.frozen
class EngineConfig:
    """The whole validated configuration."""

    workers: tuple[WorkerEntry, ...] = ()
    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    namespace_grace_ms: int = 5000
    source: Path | None = None  # config.yaml path, None for the embedded default
    warnings: tuple[str, ...] = ()

    @property
    def engine_port(self) -> int:
        return self.listeners[0].port

    def worker(self, name: str) -> WorkerEntry | None:
        return next((w for w in self.workers if w.name == name), None)
