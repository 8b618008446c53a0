"""Data channels (PROTOCOL.md §11): a bounded FIFO between one writer and one reader socket.

``engine::channels::create`` makes a ``Channel``; the listener's ``/ws/channels/{id}``
endpoint attaches each side once. Back-pressure is the FIFO's bound (the writer's socket is
not read while it is full); end of stream is the writer leaving and the FIFO draining. A
channel is deleted when both sides are done, or by the sweep when it was never fully
connected within its TTL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import attrs
import structlog
import trio

log = structlog.get_logger(__name__)

DEFAULT_BUFFER = 64
MAX_BUFFER = 1024
UNCONNECTED_TTL = 300.0
SWEEP_INTERVAL = 60.0
WRITER_CLOSE_GRACE = 0.010  # keep reading 10 ms after a writer's Close (§11.4)


@attrs.define(eq=False)
class Channel:
    channel_id: str
    access_key: str
    buffer_size: int
    created: float
    send: trio.MemorySendChannel[str | bytes]
    recv: trio.MemoryReceiveChannel[str | bytes]
    writer_taken: bool = False
    reader_taken: bool = False
    writer_done: bool = False
    reader_done: bool = False

    def refs(self) -> dict[str, dict[str, str]]:
        ref = {"channel_id": self.channel_id, "access_key": self.access_key}
        return {"writer": {**ref, "direction": "write"}, "reader": {**ref, "direction": "read"}}


class ChannelRegistry:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.channels: dict[str, Channel] = {}

    def create(self, buffer_size: int | None = None) -> Channel:
        size = DEFAULT_BUFFER if buffer_size is None else max(1, min(int(buffer_size), MAX_BUFFER))
        send, recv = trio.open_memory_channel[str | bytes](size)
        channel = Channel(
            channel_id=str(uuid.uuid4()),
            access_key=str(uuid.uuid4()),
            buffer_size=size,
            created=self._clock(),
            send=send,
            recv=recv,
        )
        self.channels[channel.channel_id] = channel
        return channel

    def lookup(self, channel_id: str, key: str | None) -> Channel | None:
        channel = self.channels.get(channel_id)
        if channel is None or key is None or key != channel.access_key:
            return None
        return channel

    def forget(self, channel_id: str, key: str | None) -> bool:
        """Drop a channel record on its creator's request; attached sides run to the end."""
        channel = self.lookup(channel_id, key)
        if channel is None:
            return False
        del self.channels[channel_id]
        if not channel.writer_taken:
            channel.send.close()
        if not channel.reader_taken:
            channel.recv.close()
        return True

    def finish(self, channel: Channel) -> None:
        if channel.writer_done and channel.reader_done:
            self.channels.pop(channel.channel_id, None)

    def sweep(self) -> int:
        """Delete channels whose two sides were not both taken within the TTL."""
        now = self._clock()
        stale = [
            c
            for c in self.channels.values()
            if not (c.writer_taken and c.reader_taken) and now - c.created > UNCONNECTED_TTL
        ]
        for channel in stale:
            self.channels.pop(channel.channel_id, None)
            channel.send.close()
            channel.recv.close()
        if stale:
            log.info("swept abandoned channels", count=len(stale))
        return len(stale)

    async def run_sweeper(self) -> None:
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            self.sweep()
