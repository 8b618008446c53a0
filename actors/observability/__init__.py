"""The ``iii-observability`` actor (WORKERS.md §10): traces, logs and metrics in bounded memory
stores, an optional on-disk trace archive, OTLP export, the ``engine::log::*`` /
``engine::logs::*`` / ``engine::traces::*`` / ``engine::metrics::list`` / ``engine::health::check``
functions and the ``log`` and ``trace`` trigger types.

Telemetry reaches it through ``iii-observability::ingest``: the listeners forward the SDKs'
binary ``OTLP``/``MTRC``/``LOGS`` frames (PROTOCOL.md §15) and the bus's tracing hook its own
spans. Alert rules are judged every 10 s and on ``engine::alerts::evaluate``, and metrics are
rolled up at 1 min / 5 min / 1 h (``watch``), over the bus's RED figures and the SDK metrics.
A ``configuration::set`` of the entry is applied per field by its tier (``live``); restart-tier
fields apply at the next start.

Deliberate simplifications (§10 allows them): ``sampling`` applies to nothing the actor stores
(the engine samples its own spans before sending them; SDK spans come sampled by the SDKs, which
follow the engine's decision through the traceparent flags), and ``format`` is not applied (the
supervisor renders the actors' JSON lines in its own ``--log-format``). ``collapse_spans``
applies to trace trees.
"""

from __future__ import annotations

import gc
import os
import random

import structlog
import trio

from actors.observability.live import apply_value
from actors.observability.service import ObservabilityService
from actors.observability.settings import BLOCK, Settings, parse_config, resolve
from actors.runtime import ActorContext
from manifests.blocks import observability
from manifests.blocks.observability import ObservabilityBlock
from manifests.blocks.strict import BlockError
from transport.client import FunctionError

__all__ = ["BLOCK", "ObservabilityService", "Settings", "parse_config", "serve"]

log = structlog.get_logger("iii-observability")

# Young collections every this many allocations (CPython's default is 700). A batch of spans
# allocates thousands of short-lived objects (the decoded rows) besides the rows it stores: at
# 700 young collections came several times a batch and walked its live temporaries, which moved
# to the middle generation to be walked again; at 10,000 most are freed first (the actor's
# ingest path in process: 11.28k -> 10.90k instructions per span, callgrind).
YOUNG_COLLECTION_EVERY = 10_000
# Full collections at most every this many younger ones (CPython's default is 10). The span store
# holds up to a million rows the collector does not track, but every full collection still walks
# the dict and deque holding them (a cache miss per row), and CPython schedules full collections
# by the number of *tracked* long-lived objects, which stays small: at the default a full
# collection came every ~30 batches and cost ~2 us per span stored (3.4 -> 1.2 us per span
# ingested at 650k rows, in process). Cycles still die in the younger generations as before.
# 70 at 10,000 allocations per young collection: a full one at most every 7 M allocations, as
# 1000 gave at CPython's 700.
FULL_COLLECTION_EVERY = 70


def tune_gc() -> None:
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, FULL_COLLECTION_EVERY)


ENTRY_ID = "iii-observability"
BOOT_READ_TIMEOUT = 2.0  # how long the start waits for the configuration worker's value


async def _stored_block(ctx: ActorContext[ObservabilityBlock]) -> ObservabilityBlock | None:
    """The configuration worker's value, read before anything is built (§10.1: restart-tier
    edits made at runtime apply at the next start); None when it has none or is not there
    within ``BOOT_READ_TIMEOUT`` (the adoption catches up later, live fields only). The client
    announces before anything is registered, or no reply would be read before the announce."""
    ctx.client.announce_early()
    with trio.move_on_after(BOOT_READ_TIMEOUT):
        while True:
            try:
                result = await ctx.client.invoke(
                    "configuration::get", {"id": ENTRY_ID}, timeout=BOOT_READ_TIMEOUT
                )
            except FunctionError as exc:
                if exc.code == "function_not_found":  # the configuration worker is starting
                    await trio.sleep(0.1)
                    continue
                if exc.code == "NOT_FOUND":  # nothing stored yet: the first boot
                    return None
                log.warning("stored settings unreadable at start", code=exc.code, error=exc.message)
                return None
            value = result.get("value") if isinstance(result, dict) else None
            if value is None:
                return None
            try:
                return parse_config(value)
            except BlockError as exc:
                log.error(
                    "stored iii-observability value rejected; using config.yaml", error=str(exc)
                )
                return None
    log.warning("stored settings not read at start: the configuration worker did not answer")
    return None


async def serve(ctx: ActorContext[ObservabilityBlock]) -> None:
    # No block in config.yaml: the built-in seed (§10.1 layer 1), not the per-field fallbacks.
    block = ctx.block if ctx.raw else parse_config(observability.DEFAULTS)
    block = await _stored_block(ctx) or block
    settings = resolve(block, os.environ)
    tune_gc()
    async with trio.open_nursery() as nursery:
        service = ObservabilityService(ctx.client, settings, rng=random.Random())
        await service.start(nursery)

        async def apply(value: object) -> None:
            apply_value(service, value)

        log.info(
            "observability ready",
            enabled=settings.enabled,
            exporter=settings.exporter,
            archive=settings.archive is not None,
        )
        ctx.adopt(
            nursery,
            entry_id=ENTRY_ID,
            name="Observability",
            description="OpenTelemetry traces, metrics and logs",
            defaults=observability.DEFAULTS,
            apply=apply,
        )
        try:
            await ctx.stopped()
        finally:
            await service.stop()
            nursery.cancel_scope.cancel()
