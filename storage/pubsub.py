"""Topic publish/subscribe for the iii-pubsub actor and the stream event fan-out (WORKERS.md §9).

``PubSub`` is the interface; ``LocalPubSub`` delivers in-process; ``open_pubsub`` reads the
upstream adapter block and opens ``LocalPubSub`` or ``storage.redis_pubsub.RedisPubSub``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, Protocol, runtime_checkable

import structlog
import trio

from storage.kv import DEFAULT_REDIS_URL, StorageClosedError, StorageConfigError

__all__ = [
    "DEFAULT_BUFFER",
    "LocalPubSub",
    "PubSub",
    "Subscription",
    "open_pubsub",
]

log = structlog.get_logger(__name__)

DEFAULT_BUFFER: Final = 1024

Subscription = trio.MemoryReceiveChannel[Any]
"""What ``subscribe`` yields: ``async for data in subscription`` gets each published value."""


@runtime_checkable
class PubSub(Protocol):
    """Fire-and-forget topic delivery. Every subscription of a topic gets every message
    published after its ``subscribe`` block was entered; closing one subscription never
    affects the others (§16 items 9, 10)."""

    async def publish(self, topic: str, data: Any) -> None:
        """Deliver ``data`` (a JSON value) to the topic's subscribers; never waits for them."""
        ...

    def subscribe(
        self, topic: str, *, buffer: int = DEFAULT_BUFFER
    ) -> AbstractAsyncContextManager[Subscription]:
        """A subscription for the duration of the block. A subscriber that falls ``buffer``
        messages behind loses the newest ones (logged at WARN)."""
        ...

    async def aclose(self) -> None:
        """Stop delivery and release resources; open subscriptions end. Idempotent."""
        ...


class _Fanout:
    """Topic → subscriber channels, with non-blocking delivery. Shared by both adapters."""

    def __init__(self, adapter: str) -> None:
        self._adapter = adapter
        self._topics: dict[str, set[trio.MemorySendChannel[Any]]] = {}
        self._dropped: dict[str, int] = {}

    def topics(self) -> list[str]:
        return list(self._topics)

    def has(self, topic: str) -> bool:
        return topic in self._topics

    def add(self, topic: str, buffer: int) -> tuple[trio.MemorySendChannel[Any], Subscription]:
        send, receive = trio.open_memory_channel[Any](buffer)
        self.adopt(topic, send)
        return send, receive

    def adopt(self, topic: str, send: trio.MemorySendChannel[Any]) -> None:
        self._topics.setdefault(topic, set()).add(send)

    def remove(self, topic: str, send: trio.MemorySendChannel[Any]) -> bool:
        """Forget one subscriber; true when it was the topic's last one."""
        senders = self._topics.get(topic)
        if senders is None:
            return False
        senders.discard(send)
        send.close()
        if senders:
            return False
        del self._topics[topic]
        return True

    def deliver(self, topic: str, data: Any) -> None:
        for send in list(self._topics.get(topic, ())):
            try:
                send.send_nowait(data)
            except trio.WouldBlock:
                self._dropped[topic] = self._dropped.get(topic, 0) + 1
                log.warning(
                    "pubsub.subscriber_full_message_dropped",
                    adapter=self._adapter,
                    topic=topic,
                    dropped_total=self._dropped[topic],
                )
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the subscriber is leaving; its block removes it

    def close_all(self) -> None:
        for senders in self._topics.values():
            for send in senders:
                send.close()
        self._topics.clear()


class LocalPubSub:
    """In-process ``PubSub`` (adapter ``local``): bounded trio memory channels per subscriber.

    Every subscriber receives the very object that was published: treat messages as read-only.
    """

    def __init__(self) -> None:
        self._fanout = _Fanout("local")
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


@asynccontextmanager
async def open_pubsub(adapter: dict[str, Any] | None) -> AsyncIterator[PubSub]:
    """Open the pub/sub described by an iii-pubsub adapter block (§9.1); close it on exit.

    ``None`` or ``{"name": "local"}`` (its ``config`` must be absent/null/empty) → local;
    ``{"name": "redis", "config": {"redis_url": ...}}`` → Redis (default
    ``redis://localhost:6379``).
    """
    if adapter is None:
        adapter = {"name": "local"}
    if not isinstance(adapter, dict):
        raise StorageConfigError(f"adapter: expected an object, got {type(adapter).__name__}")
    unknown = sorted(set(adapter) - {"name", "config"})
    if unknown:
        raise StorageConfigError(f"adapter: unknown field(s) {', '.join(unknown)}")
    name = adapter.get("name", "local")
    config = adapter.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise StorageConfigError(f"adapter.config: expected an object for adapter {name!r}")
    pubsub: PubSub
    if name == "local":
        if config:
            raise StorageConfigError(
                f"adapter 'local' takes no config, got field(s) {', '.join(sorted(config))}"
            )
        pubsub = LocalPubSub()
        try:
            yield pubsub
        finally:
            await pubsub.aclose()
    elif name == "redis":
        unknown = sorted(set(config) - {"redis_url"})
        if unknown:
            raise StorageConfigError(f"adapter 'redis': unknown field(s) {', '.join(unknown)}")
        url = config.get("redis_url") or DEFAULT_REDIS_URL
        if not isinstance(url, str):
            raise StorageConfigError("adapter.config.redis_url: expected a string")
        from storage.redis_pubsub import open_redis_pubsub

        async with open_redis_pubsub(url) as pubsub:
            yield pubsub
    else:
        raise StorageConfigError(
            f"adapter.name: unknown adapter {name!r} (expected local or redis)"
        )
