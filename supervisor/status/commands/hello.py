"""hello — protocol handshake; clients SHOULD send it first.

Wire::

    → {"id": 1, "cmd": "hello"}
    ← {"id": 1, "ok": true, "result": {"protocol": 1, "version": "0.1.0", "pid": 812,
                                       "commands": ["hello", "ping", …]}}

CLI: used internally by every client command (refuses unknown protocol versions).
"""

from __future__ import annotations

from typing import Any

from supervisor.status.control import CommandContext
from supervisor.status.protocol import PROTOCOL_VERSION

NAME = "hello"
MUTATING = False


async def execute(ctx: CommandContext) -> Any:
    return {
        "protocol": PROTOCOL_VERSION,
        "version": ctx.control.version,
        "pid": ctx.control.pid,
        "commands": sorted(ctx.commands),
    }
