"""The ``iii-queue`` actor (WORKERS.md §7): named job queues and durable topics with retries,
exponential backoff, a dead-letter queue and FIFO groups, over the builtin broker (in memory or
journaled to disk), RabbitMQ, or upstream's publish-only Redis transport.

It also registers ``engine::queue::enqueue`` (§7.8), which upstream leaves to a separate
worker, so the SDK's ``TriggerAction.Enqueue({queue})`` works whenever this actor runs: the
bus turns such a call into an enqueue on the named queue, and the queue later calls the target.

Start order (§7.7): open the broker, declare the named queues, register the trigger type and
the functions, then adopt the stored configuration. A ``queue_configs`` change applies live;
an ``adapter`` change is logged and needs a restart of the actor (upstream hot-swaps it and
says messages in the old transport are not migrated; a restart makes that explicit).
"""

from __future__ import annotations

from typing import Any

import structlog
import trio

from actors.queue.config import BLOCK, broker_backend, parse_config
from actors.queue.functions import QueueFunctions
from actors.queue.service import TRIGGER_TYPE, QueueConsumers
from actors.runtime import ActorContext
from manifests.blocks import queue as queue_block
from manifests.blocks.queue import QueueBlock, RabbitMqAdapter
from manifests.blocks.strict import BlockError
from storage.queue_factory import open_queue_broker

__all__ = ["BLOCK", "TRIGGER_TYPE", "QueueConsumers", "QueueFunctions", "parse_config", "serve"]

log = structlog.get_logger("iii-queue")


async def serve(ctx: ActorContext[QueueBlock]) -> None:
    """Open the block's broker, serve the queues until asked to stop."""
    block = ctx.block
    adapter = block.broker_adapter()
    default_attempts = adapter.settings.max_attempts if isinstance(adapter, RabbitMqAdapter) else 3
    async with open_queue_broker(broker_backend(adapter, ctx.data_dir)) as broker:
        async with trio.open_nursery() as nursery:
            consumers = QueueConsumers(
                ctx.client, broker, block, nursery, default_attempts=default_attempts
            )
            await consumers.declare_named()
            consumers.register()
            QueueFunctions(ctx.client, consumers).register()
            nursery.start_soon(consumers.dispatch)
            log.info(
                "queue ready",
                adapter=adapter.name,
                broker=broker.broker_type,
                queues=sorted(block.queues()),
            )

            async def apply(value: Any) -> None:
                try:
                    new = parse_config(value)
                except BlockError as exc:
                    log.error(
                        "iii-queue configuration rejected; settings unchanged", error=str(exc)
                    )
                    return
                if new.broker_adapter() != adapter:
                    log.warning(
                        "iii-queue adapter change needs a restart of iii-queue; "
                        "keeping the current adapter",
                        current=adapter.name,
                        requested=new.broker_adapter().name,
                    )
                await consumers.adopt(new)

            ctx.adopt(
                nursery,
                entry_id="iii-queue",
                name="Queue",
                description="Job queues and durable topics: the broker adapter and named queues",
                defaults=queue_block.DEFAULTS,
                apply=apply,
            )
            await ctx.stopped()
            nursery.cancel_scope.cancel()
