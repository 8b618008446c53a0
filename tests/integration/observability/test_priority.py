"""iii-observability starts at the supervisor's priority and runs at nice 10 once ready
(telemetry yields the CPU to the workers serving calls when it is short, without a slow start
under load); the operator's ``supervise`` wins; other built-ins keep the supervisor's
niceness. Every thread of the actor is reniced, not only its main one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support import EngineProcess, find_process, wait_for


def threads_nice(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def niceness(tmp: Path, config: dict[str, Any], want: set[int]) -> tuple[set[int], set[int]]:
    """The nice values of the iii-observability and configuration actors' threads, once the
    observability actor's reach ``want`` (or after 15 s)."""
    tmp.mkdir(exist_ok=True)
    engine = EngineProcess(config, tmp).start()
    try:
        assert engine.proc is not None
        observability = find_process(engine.proc.pid, "actors.observability")
        configuration = find_process(engine.proc.pid, "actors.configuration")
        try:
            wait_for(lambda: threads_nice(observability) == want, 15.0, interval=0.1)
        except TimeoutError:
            pass  # compared below, with the values seen
        return threads_nice(observability), threads_nice(configuration)
    finally:
        engine.stop()


def test_observability_actor_runs_at_nice_10_once_ready_and_others_at_the_supervisors(
    tmp_path: Path,
) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness(tmp_path, {"workers": []}, {10}) == ({10}, {own})


def test_the_operators_supervise_wins(tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    config = {"workers": [{"name": "iii-observability", "supervise": {"nice_when_ready": 2}}]}
    assert niceness(tmp_path / "a", config, {2}) == ({2}, {own})
    config = {"workers": [{"name": "iii-observability", "supervise": {"nice_when_ready": None}}]}
    assert niceness(tmp_path / "b", config, {own}) == ({own}, {own})
