"""A lean WebSocket client for the benchmarks: wsproto for the handshake, then
``transport.wsframes`` for frames, the engine's own socket reads and writes
(``transport.carrier.read_fd`` / ``try_write_fd``) and no reader task.

With trio-websocket as the load generator, the client itself used as much CPU per message as
the servers it measures, on a 2-core machine where client, engine and callee share the cores.
The echo baseline and the engine are measured with this same client, so their ratio stays fair.
"""

from __future__ import annotations

import os
from collections import deque
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from transport.carrier import RECEIVE_CHUNK, read_fd, try_write_fd
from transport.wsframes import OP_TEXT, FrameParser, Message, encode_masked_frame


class LeanClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser = FrameParser(max_frame=1 << 26, max_message=1 << 26, masked=False)
        self.ready: deque[str | bytes | bytearray] = deque()
        self.mask = os.urandom(4)
        self._send_lock = trio.StrictFIFOLock()  # several caller tasks share one socket
        self._fd = stream.socket.fileno()
        self._drained = False

    @classmethod
    async def connect(cls, url: str) -> LeanClient:
        parts = urlsplit(url)
        stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=parts.netloc, target=parts.path or "/")))
        rest = b""
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            head, sep, tail = (rest + data).partition(b"\r\n\r\n")
            if not sep:
                rest += data
                continue
            ws.receive_data(head + sep)
            if not any(isinstance(e, AcceptConnection) for e in ws.events()):
                raise ConnectionError("upgrade refused")
            client = cls(stream)
            if tail:
                client.ready.extend(
                    i.data for i in client.parser.feed(tail) if isinstance(i, Message)
                )
            return client

    async def send(self, text: str) -> None:
        await self._write(encode_masked_frame(OP_TEXT, text.encode(), self.mask))

    async def _write(self, data: bytes) -> None:
        """The engine's write path: straight to the socket when idle, else through trio."""
        async with self._send_lock:
            rest = try_write_fd(self._fd, data)
            if rest:
                await self.stream.send_all(rest)
            else:
                await trio.lowlevel.checkpoint()

    async def send_many(self, texts: list[str]) -> None:
        """Many messages in one write (a burst of registrations, say)."""
        await self._write(
            b"".join(encode_masked_frame(OP_TEXT, t.encode(), self.mask) for t in texts)
        )

    async def recv(self) -> str | bytes | bytearray:
        while not self.ready:
            # The engine's own read path (one syscall less per message than receive_some).
            data = await read_fd(self._fd, RECEIVE_CHUNK, self._drained)
            self._drained = len(data) < RECEIVE_CHUNK
            if not data:
                raise ConnectionError("closed")
            for item in self.parser.feed(data):
                if isinstance(item, Message):
                    self.ready.append(item.data)
        return self.ready.popleft()

    async def aclose(self) -> None:
        await self.stream.aclose()
