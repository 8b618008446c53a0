"""The ``iii-observability`` actor (WORKERS.md §10): traces, logs and metrics in bounded memory
stores, an optional on-disk trace archive, OTLP export, the ``engine::log::*`` /
``engine::logs::*`` / ``engine::traces::*`` / ``engine::metrics::list`` / ``engine::health::check``
functions and the ``log`` and ``trace`` trigger types.

Telemetry reaches it through ``iii-observability::ingest``: the listeners forward the SDKs'
binary ``OTLP``/``MTRC``/``LOGS`` frames (PROTOCOL.md §15) and the bus's tracing hook its own
spans. Settings are fixed for the life of the process (the block's restart tier); the entry is
still kept in the configuration worker, so a change made there applies at the next start.

Deliberate simplifications (§10 allows them): alert rules are parsed but not evaluated, no
metric rollups are kept, and ``sampling`` applies to nothing the actor stores (the engine
samples its own spans before sending them; SDK spans come sampled by the SDKs, which follow the
engine's decision through the traceparent flags). ``collapse_spans`` applies to trace trees.
"""

from __future__ import annotations

import os
import random

import structlog
import trio

from actors.observability.service import ObservabilityService
from actors.observability.settings import BLOCK, Settings, parse_config, resolve
from actors.runtime import ActorContext
from manifests.blocks import observability
from manifests.blocks.observability import ObservabilityBlock

__all__ = ["BLOCK", "ObservabilityService", "Settings", "parse_config", "serve"]

log = structlog.get_logger("iii-observability")


async def _keep(value: object) -> None:
    """Settings changes made in the configuration worker apply at the next start (§10.1)."""


async def serve(ctx: ActorContext[ObservabilityBlock]) -> None:
    # No block in config.yaml: the built-in seed (§10.1 layer 1), not the per-field fallbacks.
    block = ctx.block if ctx.raw else parse_config(observability.DEFAULTS)
    settings = resolve(block, os.environ)
    async with trio.open_nursery() as nursery:
        service = ObservabilityService(ctx.client, settings, rng=random.Random())
        await service.start(nursery)
        log.info(
            "observability ready",
            enabled=settings.enabled,
            exporter=settings.exporter,
            archive=settings.archive is not None,
        )
        ctx.adopt(
            nursery,
            entry_id="iii-observability",
            name="Observability",
            description="OpenTelemetry traces, metrics and logs",
            defaults=observability.DEFAULTS,
            apply=_keep,
        )
        try:
            await ctx.stopped()
        finally:
            await service.stop()
            nursery.cancel_scope.cancel()
