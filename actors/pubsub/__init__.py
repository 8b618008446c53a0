"""The ``iii-pubsub`` actor: ``publish`` and the ``subscribe`` trigger type (WORKERS.md §9,
PROTOCOL.md §18.2), over the ``local`` or ``redis`` adapter of ``storage.pubsub``.

Every live ``subscribe`` binding holds its own subscription on the adapter and calls its function
once per message, with the published ``data`` as is (no envelope, no trigger metadata), fire and
forget. With ``redis`` the topic is a Redis channel, so a publish on any engine reaches the
bindings of every engine whose pubsub actor subscribed (one Redis subscription per topic per
process, fanned out locally by the adapter).

The adapter can change at runtime through the configuration worker (entry ``iii-pubsub``): the
new backend is opened (a failure keeps the old one), every live binding subscribes on it, and
only then is the old backend closed, so a publish during the swap may be delivered twice (§9.1).

Deliberate differences from upstream (§16 items 9, 10): unregistering one binding never affects
the other bindings of its topic, and several bindings of one topic all receive with ``redis``.
"""

from __future__ import annotations

from typing import Any, Final

import structlog
import trio

from actors.pubsub.config import BLOCK, parse_config
from actors.runtime import ActorContext, Payload, pubsub_backend
from actors.runtime.adoption import swap_adapter
from manifests.blocks import pubsub
from manifests.blocks.pubsub import PubSubAdapter, PubSubBlock
from storage import PubSub, StorageError, open_pubsub
from transport.client import BusClient, FunctionError, InvocationContext, TriggerBinding
from transport.jsonshape import json_type

__all__ = ["BLOCK", "PubSubService", "parse_config", "serve"]

log = structlog.get_logger("iii-pubsub")

TRIGGER_TYPE: Final = "subscribe"


class PubSubService:
    """``publish`` and the ``subscribe`` bindings over the current adapter."""

    def __init__(self, client: BusClient, nursery: trio.Nursery) -> None:
        self.client = client
        self._nursery = nursery
        self.backend: PubSub | None = None
        self.adapter: PubSubAdapter | None = None
        self._backend_scope: trio.CancelScope | None = None
        self._topics: dict[str, tuple[TriggerBinding, str]] = {}
        self._subscriptions: dict[str, trio.CancelScope] = {}
        self._swap_lock = trio.Lock()

    def register(self) -> None:
        self.client.register_trigger_type(
            TRIGGER_TYPE,
            "Calls the function with the data of every message published on a topic",
            on_register=self._on_register,
            on_unregister=self._on_unregister,
            trigger_request_format=TRIGGER_CONFIG_SCHEMA,
        )
        self.client.register_function(
            "publish", self.publish, description="Publish data to every subscriber of a topic"
        )

    # -- the adapter ------------------------------------------------------------------------

    async def use_adapter(self, adapter: PubSubAdapter) -> None:
        """Open ``adapter`` and move every binding onto it; raises (old one kept) on failure."""
        async with self._swap_lock:
            scope = trio.CancelScope()
            backend: PubSub = await self._nursery.start(self._hold, adapter, scope)
            old_scope = self._backend_scope
            self.backend, self.adapter, self._backend_scope = backend, adapter, scope
            for binding, topic in list(self._topics.values()):
                try:
                    await self._subscribe(binding, topic)
                except StorageError as exc:
                    log.error(
                        "resubscribe failed", topic=topic, trigger_id=binding.id, error=str(exc)
                    )
            if old_scope is not None:
                old_scope.cancel()

    async def _hold(
        self,
        adapter: PubSubAdapter,
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[PubSub] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            async with open_pubsub(pubsub_backend(adapter)) as backend:
                task_status.started(backend)
                await trio.sleep_forever()

    async def apply_settings(self, value: Any) -> None:
        """Adopt the configuration worker's value (the adapter is hot-swappable, §9.1)."""
        await swap_adapter(
            "iii-pubsub",
            lambda: parse_config(value).backend_adapter(),
            self.adapter,
            self.use_adapter,
        )

    # -- publish ----------------------------------------------------------------------------

    async def publish(self, data: Any, ctx: InvocationContext) -> None:
        p = Payload("publish", data)
        topic = p.any("topic")
        if not isinstance(topic, str):
            raise p.error(f"`topic`: invalid type: {json_type(topic)}, expected a string")
        if not topic:
            raise FunctionError("topic_not_set", "Topic is not set")
        assert self.backend is not None
        try:
            await self.backend.publish(topic, p.data.get("data"))
        except StorageError as exc:
            raise FunctionError("publish_failed", f"Failed to publish to {topic!r}: {exc}") from exc

    # -- the subscribe trigger type -----------------------------------------------------------

    async def _on_register(self, binding: TriggerBinding) -> None:
        config = binding.config if isinstance(binding.config, dict) else {}
        topic = config.get("topic")
        if not isinstance(topic, str) or not topic:
            log.warning(
                "subscribe trigger without a topic; nothing subscribed",
                trigger_id=binding.id,
                function_id=binding.function_id,
            )
            return
        try:
            await self._subscribe(binding, topic)
        except StorageError as exc:
            raise FunctionError(
                "trigger_registration_failed", f"Failed to subscribe to {topic!r}: {exc}"
            ) from exc
        self._topics[binding.id] = (binding, topic)

    async def _on_unregister(self, binding: TriggerBinding) -> None:
        self._topics.pop(binding.id, None)
        scope = self._subscriptions.pop(binding.id, None)
        if scope is not None:
            scope.cancel()

    async def _subscribe(self, binding: TriggerBinding, topic: str) -> None:
        """(Re)start the binding's delivery on the current backend; the previous one, if any,
        stops once the new subscription is live."""
        assert self.backend is not None
        previous = self._subscriptions.get(binding.id)
        await self._nursery.start(self._deliver, self.backend, binding, topic)
        if previous is not None:
            previous.cancel()

    async def _deliver(
        self,
        backend: PubSub,
        binding: TriggerBinding,
        topic: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            async with backend.subscribe(topic) as messages:
                self._subscriptions[binding.id] = scope
                task_status.started()
                log.debug("subscribed", topic=topic, trigger_id=binding.id)
                try:
                    async for data in messages:
                        # No metadata for subscribe (WORKERS.md §1.10), fire and forget.
                        self.client.invoke_void(
                            binding.function_id, data, namespace=binding.namespace
                        )
                finally:
                    if self._subscriptions.get(binding.id) is scope:
                        del self._subscriptions[binding.id]


TRIGGER_CONFIG_SCHEMA: Final = {
    "type": "object",
    "properties": {"topic": {"type": "string", "description": "The topic to subscribe to"}},
    "required": ["topic"],
}


async def serve(ctx: ActorContext[PubSubBlock]) -> None:
    """Open the block's adapter, serve ``publish`` and ``subscribe`` until asked to stop."""
    async with trio.open_nursery() as nursery:
        service = PubSubService(ctx.client, nursery)
        adapter = ctx.block.backend_adapter()
        await service.use_adapter(adapter)
        service.register()
        log.info("pub/sub ready", adapter=adapter.name)
        ctx.adopt(
            nursery,
            entry_id="iii-pubsub",
            name="PubSub",
            description="Topic publish/subscribe: the pub/sub adapter",
            defaults=pubsub.DEFAULTS,
            apply=service.apply_settings,
        )
        await ctx.stopped()
        nursery.cancel_scope.cancel()
