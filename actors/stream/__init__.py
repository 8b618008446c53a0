"""The ``iii-stream`` actor: items by ``stream_name → group_id → item_id`` (``stream::*``), pushed
to WebSocket clients on the configured port (default 3112) and to ``stream`` triggers on every
change, with ``stream:join`` / ``stream:leave`` triggers around subscriptions (WORKERS.md §6).

The adapter (``kv`` in-memory or file-based, or ``redis``) holds the items and carries the
events: with ``kv`` events stay in this process; with ``redis`` they travel on the Redis channel
``stream::events``, so a change made through any engine on that Redis reaches the WebSocket
clients of all of them (§14). Triggers fire only on the engine that made the change. The adapter,
host and port are fixed for the life of the process; ``auth_function`` is live.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import structlog
import trio

from actors.runtime import EXIT_UNAVAILABLE, ActorContext, ActorExit, EventFanout, pubsub_backend
from actors.stream.config import BLOCK, parse_config
from actors.stream.server import StreamServer
from actors.stream.service import EVENTS_TOPIC, TRIGGER_TYPE, StreamService
from manifests.blocks import stream
from manifests.blocks.adapters import LocalAdapter, RedisAdapter
from manifests.blocks.stream import StreamBlock
from manifests.blocks.strict import BlockError
from storage import PubSub, open_pubsub

__all__ = ["BLOCK", "StreamService", "parse_config", "serve"]

log = structlog.get_logger("iii-stream")

STORE_NAME: Final = "stream"
# The pump hands each frame to the clients' own bounded buffers without waiting, so it only
# needs room for a burst from the Redis listener. ``channel_size`` (§6.1: how far a subscriber
# may fall behind) bounds each WebSocket client's send buffer instead: upstream drops a lagging
# subscriber's oldest events; we drop the lagging client, with a close code (server.py).
PUMP_BUFFER: Final = 4096


class Settings:
    """The live part of the block (``auth_function``), re-read from the configuration worker."""

    def __init__(self, block: StreamBlock, server: StreamServer) -> None:
        self.boot = attrs.evolve(block, auth_function=None)
        self.server = server

    async def apply(self, value: Any) -> None:
        try:
            new = parse_config(value)
        except BlockError as exc:
            log.error("iii-stream configuration rejected; settings unchanged", error=str(exc))
            return
        if new.auth_function != self.server.auth_function:
            log.info("iii-stream auth function changed", auth_function=new.auth_function)
            self.server.auth_function = new.auth_function
        if attrs.evolve(new, auth_function=None) != self.boot:
            log.warning(
                "iii-stream adapter, host and port changed at runtime are not applied; they "
                "come from config.yaml when the worker starts"
            )


async def _pump(
    events: PubSub,
    server: StreamServer,
    buffer: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Every published change frame (from this engine or, with Redis, any other) to the
    WebSocket clients it reaches."""
    async with events.subscribe(EVENTS_TOPIC, buffer=buffer) as frames:
        task_status.started()
        async for frame in frames:
            server.dispatch(frame)


async def serve(ctx: ActorContext[StreamBlock]) -> None:
    block = ctx.block
    adapter = block.store_adapter()
    events_adapter = adapter if isinstance(adapter, RedisAdapter) else LocalAdapter()
    async with (
        ctx.open_kv(adapter, name=STORE_NAME) as store,
        open_pubsub(pubsub_backend(events_adapter)) as events,
        trio.open_nursery() as nursery,
    ):
        fanout = EventFanout(ctx.client, nursery, trigger_type=TRIGGER_TYPE)
        service = StreamService(ctx.client, store, events, fanout)
        server = StreamServer(
            ctx.client,
            service,
            auth_function=block.auth_function,
            send_buffer=block.channel_size,
        )
        await nursery.start(_pump, events, server, PUMP_BUFFER)
        try:
            binds = await nursery.start(server.serve, block.host, block.port)
        except OSError as exc:
            raise ActorExit(
                EXIT_UNAVAILABLE,
                "cannot listen for stream clients",
                address=f"{block.host}:{block.port}",
                error=exc.strerror or str(exc),
            ) from exc
        service.register()
        log.info("stream server listening", binds=binds, adapter=adapter.name)
        settings = Settings(block, server)
        ctx.adopt(
            nursery,
            entry_id="iii-stream",
            name="Stream",
            description="Streams: WebSocket host/port, auth function and storage adapter",
            defaults=stream.DEFAULTS,
            apply=settings.apply,
        )
        await ctx.stopped()
        await server.shutdown()
        nursery.cancel_scope.cancel()
