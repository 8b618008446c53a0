"""shutdown — stop every worker in reverse dependency order, then exit 0 (§9.4).

The reply is written before the teardown starts. During shutdown the socket answers
mutating commands with ``SHUTTING_DOWN`` but still serves status, logs and events.

Wire::

    → {"id": 8, "cmd": "shutdown", "args": {"timeout": "30s"}}
    ← {"id": 8, "ok": true, "result": {"stopping": ["api", "http", "state"]}}

CLI::

    iii-supervisor shutdown [--timeout T]
"""

from __future__ import annotations

from typing import Any

from supervisor.status.control import CommandContext
from supervisor.status.protocol import parse_duration

NAME = "shutdown"
MUTATING = True


async def execute(ctx: CommandContext) -> Any:
    within = parse_duration(ctx.args.get("timeout"))
    return {"stopping": ctx.control.request_shutdown(within)}
