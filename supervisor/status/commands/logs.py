"""logs — the last lines a worker printed, optionally followed live.

``tail`` defaults to 100 (max 10000); ``stream`` picks ``stdout`` or ``stderr``. Terminal
control sequences are stripped. Without ``follow`` the reply carries the lines; with it,
each line is an event until the client disconnects, then ``done``.

Wire::

    → {"id": 4, "cmd": "logs", "args": {"name": "api", "tail": 2}}
    ← {"id": 4, "ok": true, "result": {"worker": "api", "lines": [
          {"stream": "stderr", "ts": "…", "line": "listening on 8080", "pid": 4242}, …]}}
    → {"id": 5, "cmd": "logs", "args": {"name": "api", "tail": 50, "follow": true}}
    ← {"id": 5, "event": "log", "worker": "api", "stream": "stderr", "ts": "…", "line": "…"}
    ← … until the client closes the connection:
    ← {"id": 5, "ok": true, "done": true}

CLI::

    iii-supervisor logs NAME [-n N] [-f] [--stream stdout|stderr]
"""

from __future__ import annotations

from typing import Any

import trio

from supervisor.status.commands._common import STREAMED
from supervisor.status.control import CommandContext, bool_arg, int_arg
from supervisor.status.protocol import ProtocolError, event
from supervisor.supervision.children import UnknownWorker
from supervisor.supervision.logcapture import read_file_tail, strip_control

NAME = "logs"
MUTATING = False


async def execute(ctx: CommandContext) -> Any:
    args = ctx.args
    name = args.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError("INVALID_ARGUMENT", '"name" must be a worker name')
    tail = int_arg(args, "tail", 100, low=0, high=10000)
    follow = bool_arg(args, "follow", False)
    stream = args.get("stream")
    if stream not in (None, "stdout", "stderr"):
        raise ProtocolError("INVALID_ARGUMENT", '"stream" must be stdout or stderr')
    try:
        worker = ctx.control.manager.get(name)
    except UnknownWorker as exc:
        raise ProtocolError("UNKNOWN_WORKER", str(exc)) from None
    wlog = worker.log
    lines = [r.to_wire() for r in wlog.tail(tail, stream)]
    if len(lines) < tail and len(wlog.ring) == wlog.ring.maxlen and wlog.file_path is not None:
        # The ring has rolled over: older lines only survive in the file.
        path = wlog.file_path
        lines = await trio.to_thread.run_sync(lambda: _from_file(path, tail, stream))
    if not follow:
        return {"worker": name, "lines": lines}
    rid = ctx.request.id
    with wlog.follow() as live:
        for line in lines:
            await ctx.send(event(rid, "log", worker=name, **line))
        async for rec in live:
            if stream is None or rec.stream == stream:
                await ctx.send(event(rid, "log", worker=name, **rec.to_wire()))
    return STREAMED


_FILE_STREAMS = {"out": "stdout", "err": "stderr", "---": "supervisor"}


def _from_file(path: Any, tail: int, stream: str | None) -> list[dict[str, Any]]:
    """Parse ``<ts> <out|err|---> <line>`` records back from a worker log file."""
    out: list[dict[str, Any]] = []
    for raw in read_file_tail(path, tail * 4 if stream else tail):
        ts, _, rest = raw.partition(" ")
        tag, _, line = rest.partition(" ")
        name = _FILE_STREAMS.get(tag, "stdout")
        if stream is None or name == stream:
            out.append({"stream": name, "ts": ts, "line": strip_control(line)})
    return out[-tail:]
