"""Processes the benchmarks talk to: a bare trio-websocket echo, and a raw protocol callee.

Run as ``python -m tests.perf._peers echo PORT`` or ``python -m tests.perf._peers callee URL``.
The callee answers ``bench::echo`` with its input and is written straight on the wire
protocol, so the figures measure the engine rather than an SDK's own overhead.
"""

from __future__ import annotations

import sys

import orjson
import trio
import trio_websocket


async def echo_server(port: int) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    await trio_websocket.serve_websocket(
        handler,
        "127.0.0.1",
        port,
        ssl_context=None,
        message_queue_size=64,
        receive_buffer_size=256 * 1024,
    )


async def callee(url: str) -> None:
    from tests.perf._leanws import LeanClient

    ws = await LeanClient.connect(url)
    await ws.recv()  # workerregistered
    announce = {
        "type": "invokefunction",
        "function_id": "engine::workers::register",
        "action": {"type": "void"},
        "data": {"name": "bench-callee", "pid": 0},
    }
    await ws.send(orjson.dumps(announce).decode())
    await ws.send(orjson.dumps({"type": "registerfunction", "id": "bench::echo"}).decode())
    while True:
        frames = [await ws.recv()]
        while ws.ready:  # everything that arrived in the same read: one write answers it all
            frames.append(ws.ready.popleft())
        replies = []
        for raw in frames:
            msg = orjson.loads(raw)
            if msg.get("type") == "invokefunction" and msg.get("invocation_id"):
                reply = {
                    "type": "invocationresult",
                    "invocation_id": msg["invocation_id"],
                    "function_id": msg["function_id"],
                    "result": msg.get("data"),
                }
                replies.append(orjson.dumps(reply).decode())
        if replies:
            await ws.send_many(replies)


if __name__ == "__main__":
    kind, arg = sys.argv[1], sys.argv[2]
    if kind == "echo":
        trio.run(echo_server, int(arg))
    else:
        trio.run(callee, arg)
