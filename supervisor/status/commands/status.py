"""status — the supervisor and every (or the named) worker, as in SUPERVISOR.md §12.

Wire::

    → {"id": 1, "cmd": "status", "args": {"names": ["api"]}}
    ← {"id": 1, "ok": true, "result": {"supervisor": {…}, "workers": [{"name": "api",
          "state": "ready", "pid": 4242, "restarts": 2, "last_exit": {…}, …}]}}

An unknown name is ``UNKNOWN_WORKER``. ``"remote": true`` adds ``remote``: one read-only row
per connected worker we do not supervise (name, namespace, peer, connected_since, functions).

CLI::

    iii-supervisor status [NAME…] [--json] [--remote]

One supervisorctl-style line per worker; exit 0 when every named (or autostart) worker is
ready, 3 when one is not, 4 for an unknown name or when no supervisor answers.
"""

from __future__ import annotations

from typing import Any

from supervisor.status.control import CommandContext, names_arg
from supervisor.status.protocol import ProtocolError
from supervisor.supervision.children import UnknownWorker

NAME = "status"
MUTATING = False


async def execute(ctx: CommandContext) -> Any:
    names = names_arg(ctx.args)
    try:
        return ctx.control.status_document(names, remote_rows=ctx.args.get("remote") is True)
    except UnknownWorker as exc:
        raise ProtocolError("UNKNOWN_WORKER", str(exc)) from None
