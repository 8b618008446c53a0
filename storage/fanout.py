"""Topic → subscriber channels with non-blocking delivery: the local half of every pub/sub
adapter (the local adapter feeds it directly, the Redis one from its listener thread)."""

from __future__ import annotations

from typing import Any

import structlog
import trio

from storage.pubsub import Subscription

__all__ = ["TopicFanout"]

log = structlog.get_logger(__name__)


class TopicFanout:
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
