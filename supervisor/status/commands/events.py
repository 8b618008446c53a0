"""events — the stream of state transitions (§6), spawns and ends.

Each transition is ``{"event": "transition", "worker", "from", "to", "cause", "pid", "ts",
…}``; a spawn is ``{"event": "spawned", "worker", "pid", …}``, an end ``{"event": "ended",
"worker", "cause", "code", "signal", …}``. ``follow`` (default true) streams until the
client disconnects; ``follow: false`` returns the recent history. ``names`` filters.

Wire::

    → {"id": 9, "cmd": "events", "args": {"names": ["crasher"]}}
    ← {"id": 9, "event": "transition", "worker": "crasher", "from": "starting",
       "to": "backoff", "cause": "exited", "delay_ms": 100, …}
    ← …
    ← {"id": 9, "ok": true, "done": true}

CLI::

    iii-supervisor status --watch
"""

from __future__ import annotations

from typing import Any

from supervisor.status.commands._common import STREAMED
from supervisor.status.control import CommandContext, bool_arg, names_arg

NAME = "events"
MUTATING = False


async def execute(ctx: CommandContext) -> Any:
    follow = bool_arg(ctx.args, "follow", True)
    names = names_arg(ctx.args)
    wanted = set(names) if names else None
    manager = ctx.control.manager
    if not follow:
        return {
            "events": [e for e in manager.history if wanted is None or e.get("worker") in wanted]
        }
    rid = ctx.request.id
    with manager.subscribe() as events:
        async for ev in events:
            if wanted is None or ev.get("worker") in wanted:
                await ctx.send({"id": rid, **ev})
    return STREAMED
