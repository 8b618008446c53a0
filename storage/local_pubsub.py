"""In-process ``PubSub`` (adapter ``local``): one process, bounded trio memory channels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from storage.errors import StorageClosedError
from storage.fanout import TopicFanout
from storage.pubsub import DEFAULT_BUFFER, Subscription

__all__ = ["LocalPubSub"]


class LocalPubSub:
    """In-process ``PubSub`` (adapter ``local``): bounded trio memory channels per subscriber.

    Every subscriber receives the very object that was published: treat messages as read-only.
    """

    def __init__(self) -> None:
        self._fanout = TopicFanout("local")
        self._closed = False

    async def publish(self, topic: str, data: Any) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise StorageClosedError("pub/sub is closed")
        self._fanout.deliver(topic, data)

    @asynccontextmanager
    async def subscribe(
        self, topic: str, *, buffer: int = DEFAULT_BUFFER
    ) -> AsyncIterator[Subscription]:
        if self._closed:
            raise StorageClosedError("pub/sub is closed")
        send, receive = self._fanout.add(topic, buffer)
        try:
            async with receive:
                yield receive
        finally:
            self._fanout.remove(topic, send)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self._closed = True
        self._fanout.close_all()
