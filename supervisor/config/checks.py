"""The checks only ``iii-supervisor check`` runs: whether each simple command's program exists
(SUPERVISOR.md §7.2), a warning since PATH at run time may differ."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from manifests.problems import ConfigProblem, show_value
from supervisor.config.model import WorkerKind
from supervisor.config.results import LoadedConfig

__all__ = ["command_warnings"]


def command_warnings(
    loaded: LoadedConfig, env: Mapping[str, str], shown: str
) -> list[ConfigProblem]:
    """``check`` warns when a simple command's program is not found (SUPERVISOR.md §7.2)."""
    shell_chars = set("|&;<>()$`\"'*?[]#~=%\n")
    warnings: list[ConfigProblem] = []
    for entry in loaded.engine.workers:
        command = entry.supervise.command
        if command is None and entry.manifest is not None and entry.kind is not WorkerKind.ACTOR:
            command = entry.manifest.start
        if command is None:
            continue
        if isinstance(command, list):
            program = command[0]
        elif shell_chars & set(command):
            continue
        else:
            words = shlex.split(command)
            if not words:
                continue
            program = words[0]
        cwd = entry.working_dir or Path.cwd()
        if "/" in program:
            exists = (cwd / program).exists()
        else:
            exists = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
        if not exists:
            warnings.append(
                ConfigProblem(
                    shown,
                    entry.line,
                    entry.name,
                    f"command {show_value(program)} not found on PATH or in {cwd} "
                    "(a warning: PATH at run time may differ)",
                )
            )
    return warnings
