"""The manifest value the supervisor runs from: the parts of ``iii.worker.yaml`` that matter
on a bare host. Lives here (not in supervisor/) so manifests import nothing of ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class Manifest:
    """The parts of an ``iii.worker.yaml`` that matter on a bare host (SUPERVISOR.md §1.2)."""

    path: Path
    name: str | None = None
    description: str | None = None
    start: str | None = None
    install: str | None = None
    setup: str | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    raw: dict[str, Any] = attrs.field(factory=dict)
