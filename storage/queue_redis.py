"""The ``redis`` queue adapter: upstream's publish-only transport (WORKERS.md §7.9, §14).

``iii::durable::publish`` publishes ``{"__trace": {"traceparent", "baggage"}, "data": <data>}``
on the Redis channel named exactly the topic; each durable subscriber queue consumed on any
engine holds a Redis subscription to it and gets each message once, attempt 1, nothing more:
no persistence (a message published while nobody listens is lost), no retries, no DLQ, no FIFO,
no backpressure. A failed delivery is logged and dropped.

Named queues (``TriggerAction.Enqueue``): upstream publishes them on ``__queue::<name>`` where no
consumer exists, so they are silently lost. Here an enqueue is **refused** with an error that
says so (§16 item 23's "do not silently lose messages"), and the DLQ functions fail with
upstream's ``RedisAdapter does not support DLQ operations (pub/sub only)``. The adapter says all
of this in a warning when it opens.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import structlog
import trio

from storage._util import owned_nursery
from storage.pubsub import PubSub
from storage.queue_broker import (
    DeadMessage,
    Delivery,
    Message,
    QueueSpec,
    UnsupportedError,
)
from storage.queue_core import QueueCounts

__all__ = ["PUBLISH_ONLY_WARNING", "RedisQueue", "open_redis_queue"]

log = structlog.get_logger(__name__)

PUBLISH_ONLY_WARNING: Final = (
    "iii-queue redis adapter is PUBLISH-ONLY (as upstream): durable topics are Redis pub/sub "
    "broadcasts to the subscribers connected at that moment - no persistence, no retries, no "
    "DLQ, no FIFO; named queues (TriggerAction.Enqueue) have no consumer, so enqueue is refused. "
    "Use the builtin or rabbitmq adapter for durable job queues."
)
NO_DLQ: Final = "RedisAdapter does not support DLQ operations (pub/sub only)"


class RedisQueue:
    broker_type = "redis"

    def __init__(self, pubsub: PubSub, nursery: trio.Nursery) -> None:
        self._pubsub = pubsub
        self._nursery = nursery
        self._send, self._recv = trio.open_memory_channel[Delivery](math.inf)
        self._specs: dict[str, QueueSpec] = {}
        self._listening: dict[str, trio.CancelScope] = {}
        self._seq = 0

    @property
    def deliveries(self) -> trio.MemoryReceiveChannel[Delivery]:
        return self._recv

    async def declare(self, spec: QueueSpec, *, consume: bool = True) -> None:
        self._specs[spec.name] = spec
        if spec.topic is None:
            return
        scope = self._listening.pop(spec.name, None)
        if scope is not None:
            scope.cancel()
        if consume:
            await self._nursery.start(self._listen, spec)

    async def _listen(
        self, spec: QueueSpec, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        assert spec.topic is not None
        with trio.CancelScope() as scope:
            self._listening[spec.name] = scope
            async with self._pubsub.subscribe(spec.topic) as messages:
                task_status.started()
                async for raw in messages:
                    self._seq += 1
                    data = raw.get("data") if isinstance(raw, dict) and "__trace" in raw else raw
                    self._send.send_nowait(
                        Delivery(queue=spec.name, id=f"redis-{self._seq}", data=data, attempt=1)
                    )

    async def enqueue(self, queue: str, message: Message) -> None:
        raise UnsupportedError(
            f"the redis queue adapter is publish-only: named queue '{queue}' has no consumer, "
            "so the job would be lost (use the builtin or rabbitmq adapter)"
        )

    async def publish(self, topic: str, message: Message) -> int:
        trace = {"traceparent": message.traceparent, "baggage": message.baggage}
        await self._pubsub.publish(topic, {"__trace": trace, "data": message.data})
        return -1  # Redis fans out; nobody knows how many got it

    async def ack(self, delivery: Delivery) -> None:
        return None

    async def fail(self, delivery: Delivery, error: str) -> None:
        log.warning(
            "delivery failed; the redis adapter does not retry", queue=delivery.queue, error=error
        )

    async def dead_messages(self, queue: str, offset: int, limit: int) -> list[DeadMessage]:
        raise UnsupportedError(NO_DLQ)

    async def redrive(self, queue: str, message_id: str | None = None) -> int:
        raise UnsupportedError(NO_DLQ)

    async def discard(self, queue: str, message_id: str) -> int:
        raise UnsupportedError(NO_DLQ)

    async def counts(self, queue: str) -> QueueCounts:
        return QueueCounts(0, 0, 0, 0)

    def queue_names(self) -> list[str]:
        return list(self._specs)

    def topics(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for spec in self._specs.values():
            if spec.topic is not None:
                out.setdefault(spec.topic, []).append(spec.name)
        return out


@asynccontextmanager
async def open_redis_queue(url: str) -> AsyncIterator[RedisQueue]:
    from storage.redis_pubsub import open_redis_pubsub

    log.warning(PUBLISH_ONLY_WARNING, redis_url=url)
    async with open_redis_pubsub(url) as pubsub, owned_nursery() as nursery:
        yield RedisQueue(pubsub, nursery)
