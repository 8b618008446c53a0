"""One module per status-socket command; each module's docstring is its documentation.

A command module has ``NAME``, ``MUTATING`` (needs full control; refused while shutting
down) and ``async def execute(ctx) -> result``. Streaming commands (``logs --follow``,
``events``) send event lines through ``ctx.send`` and return ``STREAMED``.
"""

from __future__ import annotations

from types import ModuleType

from supervisor.status.commands import (
    check,
    events,
    hello,
    logs,
    ping,
    reload,
    reset_failed,
    restart,
    shutdown,
    signal,
    start,
    status,
    stop,
)
from supervisor.status.commands._common import STREAMED

__all__ = ["COMMANDS", "STREAMED", "READ_ONLY"]

COMMANDS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        hello,
        ping,
        status,
        start,
        stop,
        restart,
        signal,
        reset_failed,
        reload,
        shutdown,
        logs,
        events,
        check,
    )
}

READ_ONLY = frozenset(name for name, m in COMMANDS.items() if not m.MUTATING)
