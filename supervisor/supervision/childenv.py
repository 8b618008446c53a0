"""A worker's environment, command line and working directory (SUPERVISOR.md §7.1, §7.2).

Pure functions of the worker entry: what the child manager hands the keeper to exec.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from manifests import RESERVED_ENV  # the variables we set; a worker's env cannot
from supervisor.config.model import WorkerEntry, WorkerKind
from supervisor.supervision.notify import NOTIFY_ENV_VARS

__all__ = [
    "BASELINE_ENV",
    "STRIPPED_ENV",
    "build_env",
    "command_display",
    "flatten_config",
    "resolve_command",
    "working_dir",
]

BASELINE_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "TMPDIR",
    "TZ",
    "LANG",
    "LC_ALL",
)
STRIPPED_ENV = (
    *NOTIFY_ENV_VARS,
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
)
_SHELL_CHARS = set("|&;<>()$`\"'*?[]#~=%\n")


def flatten_config(config: Any, prefix: str = "") -> dict[str, str]:
    """Upstream's rule: keys upper-cased, nesting joined with ``_``, non-strings as JSON."""
    out: dict[str, str] = {}
    if not isinstance(config, Mapping):
        return out
    for key, value in config.items():
        name = f"{prefix}_{key}" if prefix else str(key)
        name = name.upper().replace("-", "_").replace(".", "_")
        if isinstance(value, Mapping):
            out.update(flatten_config(value, name))
        elif isinstance(value, str):
            out[name] = value
        else:
            out[name] = json.dumps(value, separators=(",", ":"), default=str)
    return out


def build_env(
    entry: WorkerEntry,
    *,
    base: Mapping[str, str],
    reserved: Mapping[str, str],
) -> dict[str, str]:
    spec = entry.supervise
    if spec.inherit_env:
        env = dict(base)
    else:
        env = {k: base[k] for k in BASELINE_ENV if k in base}
    for key in list(env):
        if key in STRIPPED_ENV or key in RESERVED_ENV or key.startswith("III_SUPERVISOR_"):
            del env[key]
        elif key == "NOTIFY_SOCKET":
            del env[key]
    if entry.manifest is not None:
        for key, value in entry.manifest.env.items():
            if key not in ("III_URL", "III_ENGINE_URL"):
                env[key] = str(value)
    if entry.kind in (WorkerKind.MANIFEST, WorkerKind.COMMAND):
        env.update(flatten_config(entry.config))
    env.update({k: str(v) for k, v in spec.env.items()})
    env.update(reserved)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def resolve_command(entry: WorkerEntry) -> tuple[tuple[str, ...] | None, str | None]:
    """(argv, None) for a plain command exec'd directly, (None, shell) for ``sh -c``."""
    cmd: str | list[str] | None = entry.supervise.command
    if cmd is None and entry.kind is WorkerKind.ACTOR and entry.actor_module:
        # Our own interpreter, not whatever `python` is first on PATH: the actor needs the
        # supervisor's environment (the built-in manifest's `python -m …` is descriptive).
        return (sys.executable, "-m", entry.actor_module), None
    if cmd is None and entry.manifest is not None:
        cmd = entry.manifest.start
    if cmd is None:
        raise ValueError(f"worker {entry.name!r} has no command")
    if isinstance(cmd, list | tuple):
        return tuple(str(c) for c in cmd), None
    if any(ch in _SHELL_CHARS for ch in cmd):
        return None, cmd
    try:
        argv = shlex.split(cmd)
    except ValueError:
        return None, cmd
    return (tuple(argv), None) if argv else (None, cmd)


def command_display(entry: WorkerEntry) -> str:
    try:
        argv, shell = resolve_command(entry)
    except ValueError:
        return ""
    return shell if shell is not None else shlex.join(argv or ())


def working_dir(entry: WorkerEntry, config_dir: Path | None) -> str:
    for cand in (entry.supervise.working_dir, entry.working_dir, entry.worker_path, config_dir):
        if cand:
            return str(cand)
    return os.getcwd()
