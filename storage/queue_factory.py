"""``open_queue_broker``: a queue backend description in, an open broker out (WORKERS.md §7.2).

Kept apart from the adapters so that none of them imports the module that imports it; the
RabbitMQ and Redis clients are imported only when their adapter is opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final, Literal

import attrs
import structlog

from storage.queue_broker import QueueBroker
from storage.queue_file import open_file_broker
from storage.queue_memory import open_builtin_broker

__all__ = [
    "IN_MEMORY_QUEUE_WARNING",
    "BuiltinFile",
    "BuiltinMemory",
    "QueueBackend",
    "RabbitMqServer",
    "RedisPublisher",
    "open_queue_broker",
]

log = structlog.get_logger(__name__)

IN_MEMORY_QUEUE_WARNING: Final = (
    "iii-queue: builtin adapter with store_method in_memory - queued jobs are lost when the "
    "process stops; use file_based or rabbitmq in production"
)


@attrs.frozen
class BuiltinMemory:
    """Jobs held by this process alone."""


@attrs.frozen
class BuiltinFile:
    """Jobs journaled in ``directory`` (``storage.queue_file``)."""

    directory: Path
    fsync: Literal["always", "interval", "never"] = "interval"
    save_interval_ms: int = 5000


@attrs.frozen
class RabbitMqServer:
    """A RabbitMQ broker shared by every engine pointing at it (§7.9, §14)."""

    url: str
    queue_type: Literal["classic", "quorum"] = "classic"
    prefetch_count: int = 10
    heartbeat: int = 30


@attrs.frozen
class RedisPublisher:
    """Upstream's publish-only Redis transport (§7.9): no consumer, no retries, no DLQ."""

    url: str


QueueBackend = BuiltinMemory | BuiltinFile | RabbitMqServer | RedisPublisher


@asynccontextmanager
async def open_queue_broker(backend: QueueBackend) -> AsyncIterator[QueueBroker]:
    """Open the broker ``backend`` describes; closed (journal flushed) on exit."""
    if isinstance(backend, BuiltinMemory):
        log.warning(IN_MEMORY_QUEUE_WARNING)
        async with open_builtin_broker() as memory:
            yield memory
    elif isinstance(backend, BuiltinFile):
        interval = max(backend.save_interval_ms or 5000, 100) / 1000
        async with open_file_broker(
            backend.directory, fsync=backend.fsync, save_interval=interval
        ) as file_broker:
            yield file_broker
    elif isinstance(backend, RabbitMqServer):
        from storage.queue_rabbitmq import open_rabbitmq_broker

        async with open_rabbitmq_broker(
            backend.url,
            queue_type=backend.queue_type,
            prefetch_count=backend.prefetch_count,
            heartbeat=backend.heartbeat,
        ) as rabbit:
            yield rabbit
    else:
        from storage.queue_redis import open_redis_queue

        async with open_redis_queue(backend.url) as redis_queue:
            yield redis_queue
