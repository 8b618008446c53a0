"""restart — stop, then start at once: no backoff, counters reset, ``failed`` cleared.

For a single name, dependents are left alone unless their edge says
``on_dependency_restart: restart``. Two concurrent restarts of one worker cause one.

Wire::

    → {"id": 2, "cmd": "restart", "args": {"names": ["api"], "wait": true, "timeout": "30s"}}
    ← {"id": 2, "ok": true, "result": {"changed": true,
          "workers": [{"name": "api", "changed": true, "state": "ready", "pid": 5120}]}}

CLI::

    iii-supervisor restart NAME…|all [--no-wait] [--timeout T]
"""

from __future__ import annotations

from typing import Any

from supervisor.status.commands._common import guarded, lifecycle_result
from supervisor.status.control import CommandContext, bool_arg, names_arg
from supervisor.status.protocol import parse_duration

NAME = "restart"
MUTATING = True


async def execute(ctx: CommandContext) -> Any:
    names = names_arg(ctx.args, required=True)
    wait = bool_arg(ctx.args, "wait", True)
    within = parse_duration(ctx.args.get("timeout", "60s"))
    results = await guarded(lambda: ctx.control.manager.restart(names, wait=wait, within=within))
    return lifecycle_result(results)
