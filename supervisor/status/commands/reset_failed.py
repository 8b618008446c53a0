"""reset-failed — ``failed`` → ``stopped`` with counters cleared; nothing is started.

systemctl's verb. No names means every failed worker.

Wire::

    → {"id": 6, "cmd": "reset-failed", "args": {"names": ["mailer"]}}
    ← {"id": 6, "ok": true, "result": {"changed": true, "workers": [{"name": "mailer",
          "changed": true, "state": "stopped", "pid": null}]}}

CLI::

    iii-supervisor reset-failed [NAME…]
"""

from __future__ import annotations

from typing import Any

from supervisor.status.commands._common import guarded, lifecycle_result
from supervisor.status.control import CommandContext, names_arg

NAME = "reset-failed"
MUTATING = True


async def execute(ctx: CommandContext) -> Any:
    names = names_arg(ctx.args)
    return lifecycle_result(await guarded(lambda: ctx.control.manager.reset_failed(names)))
