"""What a load produces: the engine config with the supervisor settings and warnings, the answer of
``check``, and :class:`ConfigError` listing every problem found."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from manifests.problems import ConfigProblem
from supervisor.config.model import EngineConfig

__all__ = ["CheckReport", "ConfigError", "LoadedConfig", "SupervisorSettings", "in_file_order"]


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds every problem found, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@attrs.frozen
class SupervisorSettings:
    """``iii-supervisor.yaml``: supervisor-wide settings (durations in seconds) and ``defaults:``."""

    path: Path | None = None
    values: dict[str, Any] = attrs.field(factory=dict)
    defaults: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class LoadedConfig:
    """Everything one load produced: the engine config, the settings and the warnings."""

    engine: EngineConfig
    settings: SupervisorSettings
    warnings: tuple[ConfigProblem, ...] = ()


@attrs.frozen
class CheckReport:
    """The answer of ``check``: valid or not, every error, every warning."""

    valid: bool
    errors: tuple[ConfigProblem, ...] = ()
    warnings: tuple[ConfigProblem, ...] = ()
    config: LoadedConfig | None = None

    def to_json(self) -> dict[str, Any]:
        """``{valid, errors: [{file, line, path, message}], warnings: [...]}``."""
        return {
            "valid": self.valid,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
        }


def in_file_order(problems: list[ConfigProblem], file_order: list[str]) -> list[ConfigProblem]:
    """Problems sorted by the order their files were read, then by line."""
    rank = {name: index for index, name in enumerate(file_order)}
    return sorted(problems, key=lambda p: (rank.get(p.file, len(rank)), p.line or 0))
