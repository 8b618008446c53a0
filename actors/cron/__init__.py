"""The ``iii-cron`` actor: the ``cron`` trigger type (WORKERS.md §8), which calls a function on a
schedule with ``{trigger, job_id, scheduled_time, actual_time}``.

Where each part lives: ``expression`` reads upstream's expression format (seconds first,
optional year, 1 = Sunday, UTC) and translates it for croniter; ``schedule`` is the sans-io
scheduler and states its rules (including ticks missed while the actor was down: one catch-up
at most, within 30 s); ``runner`` is its trio edge (claim the tick, take the run lock, record
the tick, run); ``jobs`` turns a binding into a job; ``service`` is the trigger type and the
adapter; ``storage.locks`` has the kv and Redis lock stores.

Deliberate differences from upstream, all per §16 item 18: the locks are keyed by what a job
does (function, namespace, config) instead of the random trigger id, and each tick is claimed
for the lock TTL instead of only during its run, so with the ``redis`` adapter a cron
registered on any number of engines fires once per tick, not once per engine; and a job's last
fired tick is kept in the adapter's store, so a restart repeats no tick and fires the latest
missed one if it is at most 30 s old (upstream replays none).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import structlog
import trio

from actors.cron.config import BLOCK, parse_config
from actors.cron.service import STORE_NAME, CronService
from actors.runtime import ActorContext
from manifests.blocks import cron
from manifests.blocks.adapters import KvAdapter, RedisAdapter
from manifests.blocks.cron import CronBlock
from storage import KeyValueStore

__all__ = ["BLOCK", "CronService", "parse_config", "serve"]

log = structlog.get_logger("iii-cron")


async def serve(ctx: ActorContext[CronBlock]) -> None:
    """Open the block's lock adapter and serve the ``cron`` trigger type until asked to stop."""

    def open_kv(adapter: KvAdapter | RedisAdapter) -> AbstractAsyncContextManager[KeyValueStore]:
        return ctx.open_kv(adapter, name=STORE_NAME)

    async with trio.open_nursery() as nursery:
        service = CronService(ctx.client, nursery, open_kv)
        adapter = ctx.block.lock_adapter()
        await service.use_adapter(adapter)
        service.register()
        log.info("cron ready", adapter=adapter.name)
        ctx.adopt(
            nursery,
            entry_id="iii-cron",
            name="Cron",
            description="Cron triggers: the lock adapter",
            defaults=cron.DEFAULTS,
            apply=service.apply_settings,
        )
        await ctx.stopped()
        nursery.cancel_scope.cancel()
