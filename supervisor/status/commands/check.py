"""check — validate a config file without applying it (same report as ``iii-supervisor check``).

Wire::

    → {"id": 10, "cmd": "check", "args": {"path": "/etc/iii/config.yaml"}}
    ← {"id": 10, "ok": true, "result": {"valid": false,
          "errors": [{"file": "…", "line": 4, "path": "workers[1].supervise.restart",
                      "message": "…"}], "warnings": []}}

CLI::

    iii-supervisor check [-c config.yaml] [--strict] [--json]   (offline; exits 0 or 1)
"""

from __future__ import annotations

from typing import Any

from supervisor.status.control import CommandContext
from supervisor.status.protocol import ProtocolError

NAME = "check"
MUTATING = False


async def execute(ctx: CommandContext) -> Any:
    path = ctx.args.get("path")
    if path is not None and not isinstance(path, str):
        raise ProtocolError("INVALID_ARGUMENT", '"path" must be a file path')
    return ctx.control.check(path)
