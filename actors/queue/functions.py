"""The queue actor's functions (WORKERS.md §7.3) and ``engine::queue::enqueue`` (§7.8).

Name resolution for the DLQ, redrive and stats functions: a name in ``queue_configs`` (or
``default``) is that named queue; any other name is a durable topic, meaning all its
subscribers' queues.

``engine::queue::enqueue`` is every job's first hop: on a broker that can (builtin, RabbitMQ:
``InlineEnqueue``) it runs inline in the bus client's reader (no task per job) and answers once
the job is stored, which the broker says by a callback (at once in memory; once the journal
batch holding it is written on disk; once RabbitMQ confirmed the publish).
"""

from __future__ import annotations

import uuid
from typing import Any, cast

import structlog

from actors.queue.service import QueueConsumers
from actors.runtime import Payload
from storage import StorageError
from storage.queue_broker import FUNCTION_QUEUE, InlineEnqueue, Message, QueueNotFoundError
from transport.client import DEFERRED, BusClient, FunctionError, InvocationContext
from transport.jsonshape import json_type

__all__ = ["QueueFunctions"]

log = structlog.get_logger("iii-queue")


def _enqueue_failed(queue: str, exc: StorageError) -> FunctionError:
    if isinstance(exc, QueueNotFoundError):
        return FunctionError("enqueue_failed", str(exc))
    return FunctionError("enqueue_failed", f"Failed to enqueue on '{queue}': {exc}")


class QueueFunctions:
    def __init__(self, client: BusClient, consumers: QueueConsumers) -> None:
        self.client = client
        self.consumers = consumers

    @property
    def broker(self) -> Any:
        return self.consumers.broker

    def register(self) -> None:
        reg = self.client.register_function
        enqueue_text = "Enqueue a call on a named queue"
        if isinstance(self.broker, InlineEnqueue):
            self.client.register_inline(
                "engine::queue::enqueue", self.enqueue_inline, description=enqueue_text
            )
        else:
            reg("engine::queue::enqueue", self.enqueue, description=enqueue_text)
        reg("iii::durable::publish", self.publish, description="Publish to a durable topic")
        reg("iii::queue::redrive", self.redrive, description="Move a queue's DLQ back")
        reg("iii::queue::redrive_message", self.redrive_message, description="Redrive one")
        reg("iii::queue::discard_message", self.discard_message, description="Drop one")
        reg("engine::queue::list_topics", self.list_topics, description="Topics and queues")
        reg("engine::queue::topic_stats", self.topic_stats, description="Depths of a queue")
        reg("engine::queue::dlq_topics", self.dlq_topics, description="DLQ sizes")
        reg("engine::queue::dlq_messages", self.dlq_messages, description="DLQ messages")

    # -- names ------------------------------------------------------------------------------

    def _named(self) -> dict[str, Any]:
        return self.consumers.block.queues()

    def resolve(self, name: str) -> list[str]:
        """The internal queues a user-facing name means (module docstring)."""
        if name in self._named():
            return [name]
        return list(self.broker.topics().get(name, []))

    @staticmethod
    def _name(p: Payload, missing_code: str, missing_text: str) -> str:
        value = p.data.get("queue", p.data.get("topic"))
        if value is None or value == "":
            raise FunctionError(missing_code, missing_text)
        if not isinstance(value, str):
            raise p.error(f"`queue`: invalid type: {json_type(value)}, expected a string")
        return value

    @staticmethod
    def _message_id(p: Payload) -> str:
        value = p.data.get("message_id")
        if value is None or value == "":
            raise FunctionError("message_id_not_set", "Message id is not set")
        if not isinstance(value, str):
            raise p.error(f"`message_id`: invalid type: {json_type(value)}, expected a string")
        return value

    # -- producing --------------------------------------------------------------------------

    async def enqueue(self, data: Any, ctx: InvocationContext) -> Any:
        queue, message = self._message(data)
        try:
            await self.broker.enqueue(queue, message)
        except StorageError as exc:
            raise _enqueue_failed(queue, exc) from exc
        return {"messageReceiptId": message.id}

    def enqueue_inline(self, data: Any, ctx: InvocationContext) -> Any:
        """``enqueue`` on a broker that stores without a task (builtin, RabbitMQ), run in the
        reader: the answer goes out once the broker calls back that the job is stored."""
        queue, message = self._message(data)
        receipt = {"messageReceiptId": message.id}

        def stored(error: StorageError | None) -> None:
            if error is None:
                self.client.reply(ctx, receipt)
            else:
                self.client.reply(ctx, error=_enqueue_failed(queue, error))

        broker = cast(InlineEnqueue, self.broker)  # register() checked it
        try:
            broker.enqueue_nowait(queue, message, stored)
        except StorageError as exc:
            raise _enqueue_failed(queue, exc) from exc
        return DEFERRED

    def _message(self, data: Any) -> tuple[str, Message]:
        """The queue and the message an ``engine::queue::enqueue`` payload asks for."""
        p = Payload("engine::queue::enqueue", data)
        queue = p.str("queue")
        function_id = p.str("function_id")
        receipt = p.opt_str("messageReceiptId") or str(uuid.uuid4())
        config = self._named().get(queue)
        if config is None:
            raise FunctionError("enqueue_failed", f"Queue '{queue}' not found")
        body = p.data.get("data")
        group: str | None = None
        if config.fifo:
            field = config.message_group_field
            if not isinstance(body, dict) or field not in body:
                raise FunctionError(
                    "enqueue_failed",
                    f"FIFO queue '{queue}' requires field '{field}' in data, but it was not found",
                )
            if body[field] is None:
                raise FunctionError(
                    "enqueue_failed", f"FIFO queue '{queue}' field '{field}' must not be null"
                )
            group = body[field] if isinstance(body[field], str) else repr(body[field])
        message = Message(
            id=receipt,
            data=body,
            function_id=function_id,
            namespace=p.opt_str("namespace"),
            group=group,
            traceparent=p.opt_str("traceparent"),
            baggage=p.opt_str("baggage"),
        )
        return queue, message

    async def publish(self, data: Any, ctx: InvocationContext) -> None:
        p = Payload("iii::durable::publish", data)
        topic = p.any("topic")
        if not isinstance(topic, str):
            raise p.error(f"`topic`: invalid type: {json_type(topic)}, expected a string")
        if not topic:
            raise FunctionError("topic_not_set", "Topic is not set")
        message = Message(
            id=str(uuid.uuid4()),
            data=p.data.get("data"),
            traceparent=ctx.traceparent,
            baggage=ctx.baggage,
        )
        try:
            copies = await self.broker.publish(topic, message)
        except StorageError as exc:
            raise FunctionError("publish_failed", f"Failed to publish to {topic!r}: {exc}") from exc
        if copies == 0:
            # §16 item 7: dropped, not parked in a queue nobody consumes.
            log.info("published to a topic without subscribers; dropped", topic=topic)

    # -- the DLQ ----------------------------------------------------------------------------

    async def redrive(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("iii::queue::redrive", data)
        name = self._name(p, "queue_not_set", "Queue is not set")
        try:
            count = 0
            for queue in self.resolve(name):
                count += await self.broker.redrive(queue)
        except StorageError as exc:
            raise FunctionError("redrive_failed", str(exc)) from exc
        return {"queue": name, "redriven": count}

    async def redrive_message(self, data: Any, ctx: InvocationContext) -> Any:
        return await self._one(data, "iii::queue::redrive_message", "redrive_message_failed")

    async def discard_message(self, data: Any, ctx: InvocationContext) -> Any:
        return await self._one(data, "iii::queue::discard_message", "discard_message_failed")

    async def _one(self, data: Any, function_id: str, failed_code: str) -> Any:
        p = Payload(function_id, data)
        name = self._name(p, "queue_not_set", "Queue is not set")
        message_id = self._message_id(p)
        count = 0
        try:
            for queue in self.resolve(name):
                if function_id.endswith("redrive_message"):
                    count = await self.broker.redrive(queue, message_id)
                else:
                    count = await self.broker.discard(queue, message_id)
                if count:
                    break
        except StorageError as exc:
            raise FunctionError(failed_code, str(exc)) from exc
        return {"queue": name, "message_id": message_id, "redriven": count}

    # -- reading ----------------------------------------------------------------------------

    async def list_topics(self, data: Any, ctx: InvocationContext) -> Any:
        try:
            out = [
                {
                    "name": topic,
                    "broker_type": self.broker.broker_type,
                    "subscriber_count": self.consumers.subscriber_count(topic),
                }
                for topic in sorted(self.broker.topics())
            ]
            out += [
                {
                    "name": name,
                    "broker_type": self.broker.broker_type,
                    "subscriber_count": config.concurrency,
                }
                for name, config in sorted(self._named().items())
            ]
        except StorageError as exc:
            raise FunctionError("list_topics_failed", str(exc)) from exc
        return out

    async def topic_stats(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("engine::queue::topic_stats", data)
        name = self._name(p, "topic_required", "Topic is required")
        named = self._named().get(name)
        try:
            depth = dead = 0
            for queue in self.resolve(name):
                counts = await self.broker.counts(queue)
                depth += counts.depth
                dead += counts.dead
        except StorageError as exc:
            raise FunctionError("topic_stats_failed", str(exc)) from exc
        consumers = named.concurrency if named else self.consumers.subscriber_count(name)
        return {"depth": depth, "consumer_count": consumers, "dlq_depth": dead, "config": None}

    async def dlq_topics(self, data: Any, ctx: InvocationContext) -> Any:
        try:
            out = []
            for topic in sorted(self.broker.topics()):
                total = 0
                for queue in self.resolve(topic):
                    total += (await self.broker.counts(queue)).dead
                out.append(
                    {"topic": topic, "broker_type": self.broker.broker_type, "message_count": total}
                )
            for name in sorted(self._named()):
                dead = (await self.broker.counts(name)).dead
                out.append({"topic": name, "broker_type": FUNCTION_QUEUE, "message_count": dead})
        except StorageError as exc:
            raise FunctionError("dlq_topics_failed", str(exc)) from exc
        return out

    async def dlq_messages(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("engine::queue::dlq_messages", data)
        name = self._name(p, "topic_required", "Topic is required")
        offset, limit = p.data.get("offset", 0), p.data.get("limit", 50)
        for key, value in (("offset", offset), ("limit", limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise p.error(f"`{key}`: expected a non-negative integer, got {json_type(value)}")
        try:
            found = []
            for queue in self.resolve(name):
                found += await self.broker.dead_messages(queue, 0, offset + limit)
        except StorageError as exc:
            raise FunctionError("dlq_messages_failed", str(exc)) from exc
        found.sort(key=lambda d: d.failed_at or 0.0, reverse=True)
        return [d.as_json() for d in found[offset : offset + limit]]
