"""How an end reads to an operator: the ``last_exit`` record and the ``last_error`` message
that ``status`` shows (SUPERVISOR.md §5.3, §12). Pure functions of the end and the entry.
"""

from __future__ import annotations

from typing import Any

from supervisor.config.model import WorkerEntry
from supervisor.supervision.childenv import command_display
from supervisor.supervision.logcapture import rfc3339
from supervisor.supervision.restart import Decision, End, describe_exit, signal_name
from supervisor.supervision.states import ErrorCode

__all__ = ["exit_record", "failure_message"]


def exit_record(end: End, at: float) -> dict[str, Any]:
    """``last_exit``: when (unix ``at``), why, and the status if the child had one."""
    status = end.status
    return {
        "at": rfc3339(at),
        "cause": end.cause.value,
        "code": status.code if status else None,
        "signal": status.signal if status else None,
        "signal_name": signal_name(status.signal) if status else None,
        "core": status.core if status else False,
    }


def failure_message(
    entry: WorkerEntry, decision: Decision, end: End, spawn_message: str | None
) -> str:
    """``last_error.message``: what went wrong and the command that gets the worker back."""
    name = entry.name
    code = decision.error_code
    cmd = command_display(entry)
    where = f" (manifest {entry.manifest.path})" if entry.manifest is not None else ""
    if code is ErrorCode.START_COMMAND_NOT_FOUND:
        return (
            f"worker {name!r}: start command not found: `{cmd}`{where} exited 127 "
            "before it was ready; not retried. Fix the command or PATH, then run "
            f"`iii-supervisor start {name}`"
        )
    if code is ErrorCode.START_COMMAND_NOT_EXECUTABLE:
        return (
            f"worker {name!r}: start command not executable: `{cmd}`{where} exited "
            f"126 before it was ready; not retried. Check permissions, then run "
            f"`iii-supervisor start {name}`"
        )
    if code is ErrorCode.SPAWN_FAILED:
        return (
            f"worker {name!r}: could not start `{cmd}`{where}: {spawn_message}; not "
            f"retried. Fix it, then run `iii-supervisor start {name}`"
        )
    if code is ErrorCode.RESTART_INTENSITY:
        return (
            f"worker {name!r}: {decision.detail}; left failed (run `iii-supervisor restart {name}`)"
        )
    return f"worker {name!r}: {decision.detail or describe_exit(end.status)}"
