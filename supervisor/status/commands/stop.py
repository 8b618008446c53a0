"""stop — set workers' desired state to stopped and stop them (§9.1: drain, TERM, KILL).

``all`` stops in reverse dependency order. A worker in backoff just has its pending
restart cancelled. ``changed`` is false for a worker that was not running.

Wire::

    → {"id": 3, "cmd": "stop", "args": {"names": ["api"]}}
    ← {"id": 3, "ok": true, "result": {"changed": true,
          "workers": [{"name": "api", "changed": true, "state": "stopped", "pid": null}]}}

CLI::

    iii-supervisor stop NAME…|all
"""

from __future__ import annotations

from typing import Any

import trio

from supervisor.status.commands._common import guarded, lifecycle_result
from supervisor.status.control import CommandContext, names_arg
from supervisor.status.protocol import parse_duration

NAME = "stop"
MUTATING = True


async def execute(ctx: CommandContext) -> Any:
    names = names_arg(ctx.args, required=True)
    within = parse_duration(ctx.args.get("timeout"))

    async def run() -> Any:
        with trio.fail_after(within if within is not None else float("inf")):
            return await ctx.control.manager.stop(names)

    return lifecycle_result(await guarded(run))
