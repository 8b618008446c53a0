"""``supervise.nice_when_ready`` on a real supervisor: the worker (here iii-observability, whose
telemetry an operator may want to yield the CPU to the workers serving calls) starts at the
supervisor's priority and every thread of it runs at the given niceness once it is ready; the
other workers keep the supervisor's, and without the field nothing is reniced."""

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


def test_nice_when_ready_renices_every_thread_of_that_worker_only(tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    config = {"workers": [{"name": "iii-observability", "supervise": {"nice_when_ready": 10}}]}
    assert niceness(tmp_path / "a", config, {10}) == ({10}, {own})
    config = {"workers": [{"name": "iii-observability", "supervise": {"nice_when_ready": 2}}]}
    assert niceness(tmp_path / "b", config, {2}) == ({2}, {own})


def test_without_it_the_worker_keeps_the_supervisors_niceness(tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness(tmp_path, {"workers": []}, {own}) == ({own}, {own})
