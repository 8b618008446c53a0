"""reload — re-read config.yaml (+ manifests, iii-supervisor.yaml), validate, apply the diff.

Any validation error answers ``CONFIG_INVALID`` listing every error, and nothing changes
(unlike upstream, where a failed reload stops the engine). Otherwise: added workers start
(if autostart), removed ones stop and are forgotten, changed ones restart with the new
spec, unchanged ones are untouched — a failed unchanged worker stays failed. SIGHUP does
the same. This is systemd's reload (supervisorctl's ``update``), not supervisorctl's
``reload``.

Wire::

    → {"id": 7, "cmd": "reload"}
    ← {"id": 7, "ok": true, "result": {"added": [], "removed": [], "changed": ["api"],
                                       "unchanged": ["http", "state"]}}
    ← {"id": 7, "ok": false, "error": {"code": "CONFIG_INVALID", "message": "…",
                                       "details": {"errors": ["config.yaml:4: …"]}}}

CLI::

    iii-supervisor reload        (synchronous; fit for ExecReload=)
"""

from __future__ import annotations

from typing import Any

from supervisor.status.commands._common import guarded
from supervisor.status.control import CommandContext

NAME = "reload"
MUTATING = True


async def execute(ctx: CommandContext) -> Any:
    return await guarded(ctx.control.reload)
