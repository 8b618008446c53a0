"""Topic publish/subscribe for the iii-pubsub actor and the stream event fan-out (WORKERS.md §9).

``PubSub`` is the interface; ``storage.local_pubsub`` and ``storage.redis_pubsub`` implement it.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol, runtime_checkable

import trio

__all__ = ["DEFAULT_BUFFER", "PubSub", "Subscription"]

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
