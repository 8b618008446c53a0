"""The config room: loading ``config.yaml`` (+ manifests, + interpolation) into a validated model.

Also the registry of built-in workers (one row each: name, manifest, block schema, defaults).
It imports nothing else of ``supervisor``: the engine and supervision rooms read its model.
"""

from supervisor.config.builtins import BUILTINS, Builtin, builtin_worker
from supervisor.config.loader import check_config, load, load_config, load_supervisor_settings
from supervisor.config.model import (
    Backoff,
    EngineConfig,
    Health,
    Limits,
    ListenerConfig,
    LogSettings,
    RbacConfig,
    RestartMode,
    SuperviseSpec,
    WorkerEntry,
    WorkerKind,
)
from supervisor.config.results import CheckReport, ConfigError, LoadedConfig, SupervisorSettings

__all__ = [
    "BUILTINS",
    "Backoff",
    "Builtin",
    "CheckReport",
    "ConfigError",
    "EngineConfig",
    "Health",
    "Limits",
    "ListenerConfig",
    "LoadedConfig",
    "LogSettings",
    "RbacConfig",
    "RestartMode",
    "SuperviseSpec",
    "SupervisorSettings",
    "WorkerEntry",
    "WorkerKind",
    "builtin_worker",
    "check_config",
    "load",
    "load_config",
    "load_supervisor_settings",
]
