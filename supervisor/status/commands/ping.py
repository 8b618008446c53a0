"""ping — cheap liveness check; never waits on a worker.

Wire::

    → {"id": 1, "cmd": "ping"}
    ← {"id": 1, "ok": true, "result": {"pong": true, "uptime_s": 3601.2}}

CLI: ``iii-supervisor health`` (exit 0 when the supervisor answers within 2 s).
"""

from __future__ import annotations

from typing import Any

from supervisor.status.control import CommandContext

NAME = "ping"
MUTATING = False


async def execute(ctx: CommandContext) -> Any:
    return {"pong": True, "uptime_s": round(ctx.control.uptime(), 3)}
