"""The builtin broker: ``storage.queue_core`` driven by trio, optionally journaled to disk.

One pump task calls ``core.take(now)`` whenever something changed (an enqueue, a settled
delivery, a redrive) or the next retry falls due, and sends what it took on ``deliveries``.
``clock`` gives ``now``: the wall clock by default, so the due times a journal keeps stay
meaningful across a restart; tests pass ``trio.current_time`` and a ``MockClock``.

With a :class:`Journal` (``storage.queue_file``), every change is noted in it as it is made, in
order; ``enqueue`` returns only once its record is written, so an acknowledged job survives the
process being killed. Acks are not waited for: one lost in a crash means a redelivery
(at-least-once), never a lost job. ``enqueue_nowait`` is the same store without a task: it
calls back once the job is stored (at once in memory, after its journal batch on disk).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import orjson
import structlog
import trio

from storage._util import owned_nursery
from storage.errors import StorageError
from storage.queue_broker import (
    DeadMessage,
    Delivery,
    Message,
    QueueNotFoundError,
    QueueSpec,
)
from storage.queue_core import Job, QueueCore, QueueCounts

__all__ = ["BuiltinBroker", "Journal", "Stored", "open_builtin_broker"]

log = structlog.get_logger(__name__)


class Journal(Protocol):
    """Where the builtin broker writes down what changed (``storage.queue_file``)."""

    def note(self, entry: list[Any]) -> None:
        """Append one change record (``["e", job]``, ``["a", id]``, ...) to the journal."""
        ...

    async def commit(self) -> None:
        """Return once every record noted so far is written (and synced, per its mode)."""
        ...

    def after_write(self, callback: Stored) -> None:
        """Call ``callback`` (with the write's error, else ``None``) once every record noted so
        far is written: ``commit`` without a task waiting in it."""
        ...


# Called once a job is stored: with the error that kept it from being stored, else None.
Stored = Callable[[StorageError | None], None]


class BuiltinBroker:
    broker_type = "builtin"

    def __init__(
        self,
        core: QueueCore | None = None,
        *,
        journal: Journal | None = None,
        clock: Callable[[], float] = time.time,
        specs: dict[str, QueueSpec] | None = None,
    ) -> None:
        self.core = core or QueueCore()
        self.journal = journal
        self.clock = clock
        self._specs: dict[str, QueueSpec] = dict(specs or {})
        self._send, self._recv = trio.open_memory_channel[Delivery](math.inf)
        self._wake = trio.Event()

    @property
    def deliveries(self) -> trio.MemoryReceiveChannel[Delivery]:
        return self._recv

    def _note(self, *entry: Any) -> None:
        if self.journal is not None:
            self.journal.note(list(entry))

    def _kick(self) -> None:
        self._wake.set()

    async def pump(self) -> None:
        """Hand out work until cancelled (``open_builtin_broker`` runs it)."""
        while True:
            self._wake = trio.Event()
            now = self.clock()
            for job in self.core.take(now):
                self._send.send_nowait(
                    Delivery(
                        queue=job.queue,
                        id=job.id,
                        data=job.data,
                        attempt=job.attempts + 1,
                        target=job.target,
                        token=job.id,
                    )
                )
            due = self.core.next_due()
            if due is None:  # no retry waiting: no deadline to arm either
                await self._wake.wait()
                continue
            with trio.move_on_after(max(due - now, 0.0)):
                await self._wake.wait()

    # -- queues -------------------------------------------------------------------------

    async def declare(self, spec: QueueSpec, *, consume: bool = True) -> None:
        known = self._specs.get(spec.name)
        self.core.declare(spec.name, spec.settings, consumed=consume)
        self._specs[spec.name] = spec
        if spec.is_topic and (known is None or known.topic != spec.topic):
            self._note("q", _spec_record(spec))
        self._kick()

    def queue_names(self) -> list[str]:
        return list(dict.fromkeys([*self._specs, *self.core.queue_names()]))

    def topics(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for spec in self._specs.values():
            if spec.topic is not None:
                out.setdefault(spec.topic, []).append(spec.name)
        return out

    # -- messages in ----------------------------------------------------------------------

    async def enqueue(self, queue: str, message: Message) -> None:
        if self._store(queue, message) and self.journal is not None:
            await self.journal.commit()

    def enqueue_nowait(self, queue: str, message: Message, stored: Stored) -> None:
        """``enqueue`` for a caller without a task to wait in: ``stored`` is called once the
        job is stored as ``enqueue`` would return (at once without a journal). Raises what
        ``enqueue`` raises before storing anything (``QueueNotFoundError``)."""
        if self._store(queue, message) and self.journal is not None:
            self.journal.after_write(stored)
        else:
            stored(None)

    def _store(self, queue: str, message: Message) -> bool:
        """Put the job in the core (and note it); ``False``: its id is known, already stored."""
        if not self.core.has_queue(queue):
            raise QueueNotFoundError(f"Queue '{queue}' not found")
        job = Job(
            id=message.id,
            queue=queue,
            data=message.data,
            enqueued_at=self.clock(),
            target=message.target(),
            group=message.group,
        )
        if not self.core.enqueue(job):
            return False  # the same id again: already stored (a re-sent enqueue)
        self._kick()
        if self.journal is not None:
            self.journal.note(["e", job.record()])
        return True

    async def publish(self, topic: str, message: Message) -> int:
        queues = self.topics().get(topic, [])
        for index, name in enumerate(queues):
            copy_id = message.id if index == 0 else f"{message.id}:{index}"
            job = Job(
                id=copy_id,
                queue=name,
                data=message.data,
                enqueued_at=self.clock(),
                target=message.target(),
                group=message.group,
            )
            if self.core.enqueue(job) and self.journal is not None:
                self.journal.note(["e", job.record()])
        if queues:
            self._kick()
            if self.journal is not None:
                await self.journal.commit()
        return len(queues)

    # -- settling -----------------------------------------------------------------------

    async def ack(self, delivery: Delivery) -> None:
        try:
            self.core.ack(delivery.token)
        except KeyError:
            return  # redriven or released meanwhile; nothing to settle
        self._note("a", delivery.token)
        self._kick()

    async def fail(self, delivery: Delivery, error: str) -> None:
        try:
            job = self.core.fail(delivery.token, error, self.clock())
        except KeyError:
            return
        if job.state == "dead":
            self._note("x", job.id, job.attempts, error, job.failed_at)
            log.warning(
                "job dead-lettered",
                queue=job.queue,
                message_id=job.id,
                attempts=job.attempts,
                error=error,
            )
        else:
            self._note("f", job.id, job.attempts, job.due, error)
        self._kick()

    async def release_all(self) -> int:
        """Give every in-flight job back (nothing counted): the consumers are stopping."""
        released = self.core.release_all()  # the journal never records "active": nothing to note
        self._kick()
        return len(released)

    # -- the DLQ ------------------------------------------------------------------------

    async def dead_messages(self, queue: str, offset: int, limit: int) -> list[DeadMessage]:
        jobs = self.core.dead(queue)[offset : offset + limit]
        return [
            DeadMessage(
                id=j.id,
                data=j.data,
                error=j.error,
                failed_at=j.failed_at,
                attempts=j.attempts,
                size_bytes=len(orjson.dumps(j.data)),
            )
            for j in jobs
        ]

    async def redrive(self, queue: str, message_id: str | None = None) -> int:
        moved = self.core.redrive(queue, message_id)
        for job in moved:
            self._note("r", job.id)
        if moved:
            self._kick()
        return len(moved)

    async def discard(self, queue: str, message_id: str) -> int:
        job = self.core.discard(queue, message_id)
        if job is None:
            return 0
        self._note("d", job.id)
        return 1

    async def counts(self, queue: str) -> QueueCounts:
        return self.core.counts(queue)

    def spec_records(self) -> list[dict[str, Any]]:
        """The durable subscribers' queue specs, as the journal keeps them."""
        return [_spec_record(s) for s in self._specs.values() if s.is_topic]


def _spec_record(spec: QueueSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "topic": spec.topic,
        "function_id": spec.function_id,
        "namespace": spec.namespace,
    }


def spec_from_record(raw: dict[str, Any]) -> QueueSpec:
    return QueueSpec(
        name=raw["name"],
        topic=raw.get("topic"),
        function_id=raw.get("function_id"),
        namespace=raw.get("namespace"),
    )


@asynccontextmanager
async def open_builtin_broker(
    broker: BuiltinBroker | None = None,
) -> AsyncIterator[BuiltinBroker]:
    """Run ``broker``'s pump (a fresh in-memory broker by default) for the block's duration."""
    broker = broker or BuiltinBroker()
    async with owned_nursery() as nursery:
        nursery.start_soon(broker.pump)
        yield broker
