"""The supervision room: everything about OS processes.

The state enum and transition table, the restart policy, the per-worker controller (split into
lifecycle, readiness, health and the status snapshot), the child manager, spawn plan, keeper,
log capture, sd_notify and the state directory. It sees the bus only through ``BusLike``,
which the engine implements and the unit tests fake. It may import ``supervisor.config``;
never ``supervisor.engine`` or ``supervisor.status``.

The public names below are loaded on first use: the CLI's client verbs import
``supervision.statedir`` to find the socket, and must not pay for trio and the controller.
Modules inside the room import each other directly, never through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.supervision.buslike import BusEventLike as BusEventLike
    from supervisor.supervision.buslike import BusLike as BusLike
    from supervisor.supervision.buslike import BusNotices as BusNotices
    from supervisor.supervision.buslike import WorkerViewLike as WorkerViewLike
    from supervisor.supervision.children import SUPERVISED_KINDS as SUPERVISED_KINDS
    from supervisor.supervision.children import ChildManager as ChildManager
    from supervisor.supervision.children import ShuttingDown as ShuttingDown
    from supervisor.supervision.children import UnknownWorker as UnknownWorker
    from supervisor.supervision.controller import WorkerController as WorkerController
    from supervisor.supervision.health import HealthRecord as HealthRecord
    from supervisor.supervision.messages import CommandResult as CommandResult
    from supervisor.supervision.restart import RestartPolicy as RestartPolicy
    from supervisor.supervision.runtime import ConfigRejected as ConfigRejected
    from supervisor.supervision.runtime import ControlSocket as ControlSocket
    from supervisor.supervision.runtime import SupervisionOptions as SupervisionOptions
    from supervisor.supervision.runtime import SupervisorRuntime as SupervisorRuntime
    from supervisor.supervision.snapshot import worker_snapshot as worker_snapshot
    from supervisor.supervision.spawn import ChildHandle as ChildHandle
    from supervisor.supervision.spawn import KeeperLauncher as KeeperLauncher
    from supervisor.supervision.spawn import Launcher as Launcher
    from supervisor.supervision.spawn import SpawnError as SpawnError
    from supervisor.supervision.spawn import SpawnRequest as SpawnRequest
    from supervisor.supervision.statedir import AlreadyRunning as AlreadyRunning
    from supervisor.supervision.statedir import StateDir as StateDir
    from supervisor.supervision.states import Phase as Phase
    from supervisor.supervision.states import WorkerState as WorkerState

_EXPORTS = {
    "BusEventLike": "buslike",
    "BusLike": "buslike",
    "BusNotices": "buslike",
    "WorkerViewLike": "buslike",
    "SUPERVISED_KINDS": "children",
    "ChildManager": "children",
    "ShuttingDown": "children",
    "UnknownWorker": "children",
    "WorkerController": "controller",
    "HealthRecord": "health",
    "CommandResult": "messages",
    "RestartPolicy": "restart",
    "ConfigRejected": "runtime",
    "ControlSocket": "runtime",
    "SupervisionOptions": "runtime",
    "SupervisorRuntime": "runtime",
    "worker_snapshot": "snapshot",
    "ChildHandle": "spawn",
    "KeeperLauncher": "spawn",
    "Launcher": "spawn",
    "SpawnError": "spawn",
    "SpawnRequest": "spawn",
    "AlreadyRunning": "statedir",
    "StateDir": "statedir",
    "Phase": "states",
    "WorkerState": "states",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
