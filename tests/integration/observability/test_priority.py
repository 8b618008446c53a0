"""iii-observability runs at nice 10 by default (telemetry yields the CPU to the workers
serving calls when it is short); the operator's ``supervise.nice`` wins; other built-ins keep
the supervisor's niceness."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support import EngineProcess, find_process


def nice_of(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def niceness(tmp: Path, config: dict[str, Any]) -> tuple[int, int]:
    """The nice of the running iii-observability and configuration actors."""
    engine = EngineProcess(config, tmp).start()
    try:
        assert engine.proc is not None
        observability = find_process(engine.proc.pid, "actors.observability")
        configuration = find_process(engine.proc.pid, "actors.configuration")
        return nice_of(observability), nice_of(configuration)
    finally:
        engine.stop()


def test_observability_actor_runs_at_nice_10_and_others_at_the_supervisors(
    tmp_path: Path,
) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness(tmp_path, {"workers": []}) == (10, own)


def test_the_operators_supervise_nice_wins(tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    config = {"workers": [{"name": "iii-observability", "supervise": {"nice": 2}}]}
    assert niceness(tmp_path, config) == (2, own)
