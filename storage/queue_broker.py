"""The queue broker interface the ``iii-queue`` actor runs on (WORKERS.md §7), and its values.

A broker holds *internal queues*: a named queue (``queue_configs.<name>``) or the queue of one
durable subscriber (``<topic>::<function_id>@<namespace>``, §7.5). It hands out
:class:`Delivery` values on ``deliveries`` within each queue's concurrency, and the actor
settles each one with ``ack`` (done) or ``fail`` (a failed attempt: retried or dead-lettered by
the rule of ``storage.queue_core``). Delivery is at-least-once.

Implementations: ``storage.queue_memory`` (builtin, in memory or with the journal of
``storage.queue_file``), ``storage.queue_rabbitmq``, ``storage.queue_redis`` (publish only).
``storage.queue_factory.open_queue_broker`` opens the one a backend names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol, runtime_checkable

import attrs
import trio

from storage.errors import StorageError
from storage.queue_core import QueueCounts, QueueSettings

__all__ = [
    "FUNCTION_QUEUE",
    "DeadMessage",
    "Delivery",
    "InlineEnqueue",
    "Message",
    "QueueBroker",
    "QueueNotFoundError",
    "QueueSpec",
    "Stored",
    "UnsupportedError",
    "subscriber_queue_name",
]

FUNCTION_QUEUE: Final = "function_queue"  # the broker_type the DLQ listings give named queues


class QueueNotFoundError(StorageError):
    """An enqueue named a queue nobody declared (``Queue '<name>' not found``)."""


class UnsupportedError(StorageError):
    """The adapter cannot do this (the Redis adapter has no DLQ, §7.9)."""


def _escape(part: str) -> str:
    return part.replace("\\", "\\\\").replace("@", "\\@")


def subscriber_queue_name(topic: str, function_id: str, namespace: str | None) -> str:
    """``<topic>::<function_id>@<namespace>`` with ``@`` and ``\\`` in the parts escaped."""
    return f"{topic}::{_escape(function_id)}@{_escape(namespace or 'default')}"


@attrs.frozen
class QueueSpec:
    """One internal queue. ``topic`` set: a durable subscriber's queue, fed by ``publish`` of
    that topic, whose messages go to ``function_id`` in ``namespace``."""

    name: str
    settings: QueueSettings = QueueSettings()
    topic: str | None = None
    function_id: str | None = None
    namespace: str | None = None
    max_priority: int | None = None  # RabbitMQ: x-max-priority
    priority_field: str | None = None  # RabbitMQ: the data field holding a message's priority

    @property
    def is_topic(self) -> bool:
        return self.topic is not None


@attrs.frozen
class Message:
    """What is enqueued: ``data`` for ``function_id`` (``None`` on a subscriber's queue, whose
    spec names it) in ``namespace``; ``group`` is the FIFO group key."""

    id: str
    data: Any
    function_id: str | None = None
    namespace: str | None = None
    group: str | None = None
    traceparent: str | None = None
    baggage: str | None = None

    def target(self) -> dict[str, Any]:
        """The routing fields a broker stores beside ``data``."""
        out: dict[str, Any] = {}
        for key in ("function_id", "namespace", "traceparent", "baggage"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@attrs.frozen(eq=False)
class Delivery:
    """One attempt at one message; ``attempt`` counts from 1. ``token`` is the adapter's own
    handle (a job id, a delivery tag)."""

    queue: str
    id: str
    data: Any
    attempt: int
    target: dict[str, Any] = attrs.Factory(dict)
    token: Any = None

    @property
    def function_id(self) -> str | None:
        value = self.target.get("function_id")
        return value if isinstance(value, str) else None

    @property
    def namespace(self) -> str | None:
        value = self.target.get("namespace")
        return value if isinstance(value, str) else None


@attrs.frozen
class DeadMessage:
    """A DLQ entry as ``engine::queue::dlq_messages`` lists it (``failed_at`` in seconds)."""

    id: str
    data: Any
    error: str | None
    failed_at: float | None
    attempts: int
    size_bytes: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "payload": self.data,
            "error": self.error,
            "failed_at": None if self.failed_at is None else int(self.failed_at),
            "retries": self.attempts,
            "size_bytes": self.size_bytes,
        }


@runtime_checkable
class QueueBroker(Protocol):
    broker_type: str  # "builtin", "rabbitmq", "redis": what list_topics shows

    @property
    def deliveries(self) -> trio.MemoryReceiveChannel[Delivery]:
        """Every delivery of every consumed queue, within each queue's concurrency."""
        ...

    async def declare(self, spec: QueueSpec, *, consume: bool = True) -> None:
        """Create the queue (or update its settings) and start or stop handing out its
        messages; a queue not consumed keeps what it holds."""
        ...

    async def enqueue(self, queue: str, message: Message) -> None:
        """Store ``message`` durably (per the adapter) before returning; an id already in the
        queue is not stored twice (builtin). ``QueueNotFoundError`` for an unknown queue."""
        ...

    async def publish(self, topic: str, message: Message) -> int:
        """One copy per subscriber queue of ``topic``; how many were stored (RabbitMQ: -1,
        the broker fans out)."""
        ...

    async def ack(self, delivery: Delivery) -> None: ...

    async def fail(self, delivery: Delivery, error: str) -> None:
        """A failed attempt: retry after the backoff, or dead-letter after the last one."""
        ...

    async def dead_messages(self, queue: str, offset: int, limit: int) -> list[DeadMessage]:
        """The queue's DLQ, newest first."""
        ...

    async def redrive(self, queue: str, message_id: str | None = None) -> int:
        """Move one DLQ message (by id) or all of them back with attempts reset; how many."""
        ...

    async def discard(self, queue: str, message_id: str) -> int:
        """Delete one DLQ message; 1 if it was there."""
        ...

    async def counts(self, queue: str) -> QueueCounts: ...

    def queue_names(self) -> list[str]:
        """Every internal queue this broker knows of."""
        ...

    def topics(self) -> dict[str, list[str]]:
        """Durable topic → its subscriber queues."""
        ...


# Called once a job is stored: with the error that kept it from being stored, else None.
Stored = Callable[[StorageError | None], None]


@runtime_checkable
class InlineEnqueue(Protocol):
    """A broker that can store a job for a caller without a task to wait in (the queue actor
    runs ``engine::queue::enqueue`` in its bus reader on such a broker)."""

    def enqueue_nowait(self, queue: str, message: Message, stored: Stored) -> None:
        """Store ``message`` as ``enqueue`` would and call ``stored`` (in trio) once it is
        stored as ``enqueue`` would return; raise what ``enqueue`` raises before storing
        anything (``QueueNotFoundError``)."""
        ...
