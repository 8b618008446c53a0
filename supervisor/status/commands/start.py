"""start — set workers' desired state to running and start them now (no backoff).

Clears ``failed`` and the restart counters, waits for dependencies. ``changed`` is false
for a worker that was already ready or starting. With ``wait`` (the default) the reply
comes once each worker is ready or has come to rest (failed/exited), or ``TIMEOUT``.

Wire::

    → {"id": 2, "cmd": "start", "args": {"names": ["api"], "wait": true, "timeout": "30s"}}
    ← {"id": 2, "ok": true, "result": {"changed": true,
          "workers": [{"name": "api", "changed": true, "state": "ready", "pid": 5120}]}}

CLI::

    iii-supervisor start NAME…|all [--no-wait] [--timeout T]
"""

from __future__ import annotations

from typing import Any

from supervisor.status.commands._common import guarded, lifecycle_result
from supervisor.status.control import CommandContext, bool_arg, names_arg
from supervisor.status.protocol import parse_duration

NAME = "start"
MUTATING = True


async def execute(ctx: CommandContext) -> Any:
    names = names_arg(ctx.args, required=True)
    wait = bool_arg(ctx.args, "wait", True)
    within = parse_duration(ctx.args.get("timeout", "60s"))
    results = await guarded(lambda: ctx.control.manager.start(names, wait=wait, within=within))
    return lifecycle_result(results)
