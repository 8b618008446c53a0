"""The queue actor's consuming side: named queues, the ``durable:subscriber`` trigger type
(WORKERS.md §7.4) and the delivery of every message to its function.

Each delivery the broker hands out is called: the subscriber's condition first (a JSON
``false`` acknowledges and skips the message; a failed condition is a failed attempt), then
the function with the message ``data`` as is and no metadata. Any result acknowledges; an error
(``function_not_found`` and a timeout included) is a failed attempt, which the broker retries
or dead-letters (``storage.queue_core`` states the counting rule). A delivery is a chain of
callbacks, not a task (``QueueConsumers.dispatch``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import attrs
import structlog
import trio

from actors.queue.config import named_queue_spec, subscriber_settings
from manifests.blocks.queue import QueueBlock
from storage import StorageError
from storage.queue_broker import Delivery, QueueBroker, QueueSpec, subscriber_queue_name
from transport.client import BusClient, FunctionError, TriggerBinding

__all__ = ["CONDITION_TIMEOUT", "HANDLER_TIMEOUT", "TRIGGER_TYPE", "QueueConsumers"]

log = structlog.get_logger("iii-queue")

TRIGGER_TYPE: Final = "durable:subscriber"
# Upstream waits for a handler without a deadline; ours is generous, so a handler that never
# answers cannot hold a job (and a concurrency slot) forever: it counts as a failed attempt.
HANDLER_TIMEOUT: Final = 300.0
CONDITION_TIMEOUT: Final = 30.0

TRIGGER_CONFIG_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "description": "The durable topic to consume"},
        "condition_function_id": {"type": "string"},
        "queue_config": {
            "type": "object",
            "description": "type (fifo|standard), maxRetries, concurrency, backoffDelayMs",
        },
    },
    "required": ["topic"],
}


@attrs.define(eq=False)
class Subscriber:
    """One internal queue of a topic and the bindings that consume it (they compete)."""

    spec: QueueSpec
    bindings: dict[str, TriggerBinding] = attrs.Factory(dict)

    @property
    def condition(self) -> str | None:
        for binding in reversed(list(self.bindings.values())):
            config = binding.config if isinstance(binding.config, dict) else {}
            value = config.get("condition_function_id")
            if isinstance(value, str) and value:
                return value
        return None


class QueueConsumers:
    """Declares the queues, tracks the subscribers, and runs every delivery."""

    def __init__(
        self,
        client: BusClient,
        broker: QueueBroker,
        block: QueueBlock,
        nursery: trio.Nursery,
        *,
        default_attempts: int = 3,
    ) -> None:
        self.client = client
        self.broker = broker
        self.block = block
        self.default_attempts = default_attempts
        self._nursery = nursery
        self.subscribers: dict[str, Subscriber] = {}
        self._by_binding: dict[str, str] = {}
        self.in_flight = 0  # started and not yet settled
        self._settle: Callable[[tuple[Delivery, str | None]], None] = self._unstarted

    @staticmethod
    def _unstarted(settlement: tuple[Delivery, str | None]) -> None:
        raise RuntimeError("dispatch() is not running")

    def register(self) -> None:
        self.client.register_trigger_type(
            TRIGGER_TYPE,
            "Calls the function with every message published on a durable topic, with retries "
            "and a dead-letter queue",
            on_register=self._on_register,
            on_unregister=self._on_unregister,
            trigger_request_format=TRIGGER_CONFIG_SCHEMA,
        )

    # -- named queues -------------------------------------------------------------------

    async def declare_named(self) -> None:
        """One consumer per configured queue (``default`` always exists, §7.2)."""
        for name, config in self.block.queues().items():
            await self.broker.declare(named_queue_spec(name, config), consume=True)

    async def adopt(self, block: QueueBlock) -> None:
        """New ``queue_configs``: changed queues take their settings, removed ones stop."""
        old = self.block.queues()
        self.block = block
        new = block.queues()
        for name, config in new.items():
            if old.get(name) != config:
                await self.broker.declare(named_queue_spec(name, config), consume=True)
        for name in old.keys() - new.keys():
            await self.broker.declare(named_queue_spec(name, old[name]), consume=False)

    # -- durable:subscriber -----------------------------------------------------------------

    async def _on_register(self, binding: TriggerBinding) -> None:
        config = binding.config if isinstance(binding.config, dict) else {}
        topic = config.get("topic")
        if not isinstance(topic, str) or not topic:
            log.warning(
                "durable:subscriber trigger without a topic; it does nothing",
                trigger_id=binding.id,
                function_id=binding.function_id,
            )
            return
        name = subscriber_queue_name(topic, binding.function_id, binding.namespace)
        spec = QueueSpec(
            name=name,
            settings=subscriber_settings(config.get("queue_config"), self.default_attempts),
            topic=topic,
            function_id=binding.function_id,
            namespace=binding.namespace,
        )
        subscriber = self.subscribers.get(name)
        if subscriber is None:
            subscriber = self.subscribers[name] = Subscriber(spec)
        subscriber.spec = spec  # per-subscriber tuning applies at the next retry decision
        try:
            await self.broker.declare(spec, consume=True)
        except StorageError as exc:
            raise FunctionError(
                "trigger_registration_failed", f"Failed to subscribe to {topic!r}: {exc}"
            ) from exc
        subscriber.bindings[binding.id] = binding
        self._by_binding[binding.id] = name
        log.debug("subscribed", topic=topic, queue=name, trigger_id=binding.id)

    async def _on_unregister(self, binding: TriggerBinding) -> None:
        name = self._by_binding.pop(binding.id, None)
        subscriber = self.subscribers.get(name) if name else None
        if subscriber is None:
            return
        subscriber.bindings.pop(binding.id, None)
        if not subscriber.bindings:
            # Its queue stays and keeps receiving publishes until the subscriber is back.
            try:
                await self.broker.declare(subscriber.spec, consume=False)
            except StorageError as exc:
                log.warning("unsubscribe failed", queue=name, error=str(exc))

    def subscriber_count(self, topic: str) -> int:
        return sum(len(s.bindings) for s in self.subscribers.values() if s.spec.topic == topic)

    # -- delivery ---------------------------------------------------------------------------

    async def dispatch(self) -> None:
        """Start every delivery the broker hands out (it keeps each queue's concurrency).

        No task per delivery: each is a chain of ``BusClient.call`` callbacks (condition, then
        function), and its settlement goes to one settling task, which acks in arrival order
        and gives each failure a task of its own (a broker may wait on a retry's publish)."""
        settle_send, settle_recv = trio.open_memory_channel[tuple[Delivery, str | None]](math.inf)
        self._settle = settle_send.send_nowait
        self._nursery.start_soon(self._settler, settle_recv)
        deliveries = self.broker.deliveries
        async for delivery in deliveries:
            self._start(delivery)
            while True:  # what else is ready, without a checkpoint each
                try:
                    delivery = deliveries.receive_nowait()
                except trio.WouldBlock:
                    break
                self._start(delivery)

    def _target(self, delivery: Delivery) -> tuple[str | None, str | None, str | None]:
        subscriber = self.subscribers.get(delivery.queue)
        if subscriber is not None:
            spec = subscriber.spec
            return spec.function_id, spec.namespace, subscriber.condition
        return delivery.function_id, delivery.namespace, None

    def _start(self, delivery: Delivery) -> None:
        self.in_flight += 1
        function_id, namespace, condition = self._target(delivery)
        if function_id is None:
            self._settle((delivery, "no function to deliver to"))
        elif condition is None:
            self._call(delivery, function_id, namespace)
        else:

            def verdict(result: Any, error: FunctionError | None) -> None:
                if error is not None:
                    self._settle((delivery, self._failed(delivery, error)))
                elif result is False:
                    self._settle((delivery, None))  # JSON false: acknowledged and skipped
                else:
                    self._call(delivery, function_id, namespace)

            self.client.call(
                condition,
                delivery.data,
                verdict,
                namespace=namespace,
                timeout=CONDITION_TIMEOUT,
            )

    def _call(self, delivery: Delivery, function_id: str, namespace: str | None) -> None:
        def done(result: Any, error: FunctionError | None) -> None:
            self._settle((delivery, None if error is None else self._failed(delivery, error)))

        self.client.call(
            function_id, delivery.data, done, namespace=namespace, timeout=HANDLER_TIMEOUT
        )

    def _failed(self, delivery: Delivery, exc: FunctionError) -> str:
        log.info(
            "delivery failed",
            queue=delivery.queue,
            message_id=delivery.id,
            attempt=delivery.attempt,
            code=exc.code,
            error=exc.message,
        )
        return f"{exc.code}: {exc.message}"

    async def _settler(
        self, settlements: trio.MemoryReceiveChannel[tuple[Delivery, str | None]]
    ) -> None:
        async for delivery, error in settlements:
            if error is None:
                await self._settle_one(delivery, None)
            else:
                self._nursery.start_soon(self._settle_one, delivery, error)

    async def _settle_one(self, delivery: Delivery, error: str | None) -> None:
        try:
            if error is None:
                await self.broker.ack(delivery)
            else:
                await self.broker.fail(delivery, error)
        except StorageError as exc:
            # The broker keeps the message unsettled; it comes back (at-least-once).
            log.warning("settling a delivery failed", queue=delivery.queue, error=str(exc))
        finally:
            self.in_flight -= 1
