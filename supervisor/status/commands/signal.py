"""signal — ``killpg`` one worker's process group with a signal.

Does not change the desired state; an exit it causes counts as ``killed``.

Wire::

    → {"id": 5, "cmd": "signal", "args": {"name": "api", "signal": "USR1"}}
    ← {"id": 5, "ok": true, "result": {"changed": true, "workers": [{"name": "api", …}]}}

CLI::

    iii-supervisor signal NAME SIG
"""

from __future__ import annotations

import signal as _signal
from typing import Any

from supervisor.status.commands._common import guarded, lifecycle_result
from supervisor.status.control import CommandContext
from supervisor.status.protocol import ProtocolError

NAME = "signal"
MUTATING = True


def parse_signal(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(_signal.Signals(value))
        except ValueError:
            pass
    elif isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return parse_signal(int(text))
        if not text.startswith("SIG"):
            text = "SIG" + text
        try:
            return int(_signal.Signals[text])
        except KeyError:
            pass
    raise ProtocolError(
        "INVALID_ARGUMENT", f"unknown signal {value!r}; use a name like TERM or HUP"
    )


async def execute(ctx: CommandContext) -> Any:
    name = ctx.args.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError("INVALID_ARGUMENT", '"name" must be a worker name')
    signo = parse_signal(ctx.args.get("signal"))
    result = await guarded(lambda: ctx.control.manager.signal(name, signo))
    return lifecycle_result([result])
