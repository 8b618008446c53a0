"""The engine half of the supervisor: one bus and its listeners, in one nursery.

``run_engine`` binds every configured ``iii-worker-manager`` listener (several listeners
share one bus) and reports the running ``Engine`` through ``task_status`` so the child
manager can hand local actor links to the same bus.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import structlog
import trio

from supervisor.config.model import EngineConfig
from supervisor.engine import builtins
from supervisor.engine.bus import Bus
from supervisor.engine.edge import BusEdge
from supervisor.engine.listener import Listener
from supervisor.engine.observe import hook as observe
from supervisor.engine.observe.filter import compile_filter
from supervisor.engine.sampling import Sampler, sampler_for
from supervisor.engine.tracing import Tracing, live_spans_of

log = structlog.get_logger(__name__)


@attrs.define(eq=False)
class Engine:
    bus: BusEdge
    listeners: list[Listener]
    ports: list[int]

    @property
    def port(self) -> int:
        return self.ports[0]


def namespace_grace_ms(cfg: EngineConfig) -> int:
    env = os.environ.get("III_NAMESPACE_GRACE_MS")
    if env and env.strip().isdigit():
        return int(env)
    return cfg.namespace_grace_ms


def observability_block(cfg: EngineConfig) -> dict[str, Any] | None:
    """The ``iii-observability`` entry's block (the built-in seed when it gives none), or None
    when there is no entry."""
    entry = cfg.worker("iii-observability")
    if entry is None:
        return None
    if isinstance(entry.config, dict) and entry.config:
        return entry.config
    from manifests.blocks.observability import DEFAULTS

    return dict(DEFAULTS)


def observability_switches(cfg: EngineConfig) -> tuple[bool, bool]:
    """(tracing, metrics): the bus hooks the ``iii-observability`` entry asks for. Both are on
    unless the block says ``enabled: false`` (no span hook, no trace context rewriting) or
    ``metrics_enabled: false`` (no RED metrics hook); no entry at all means both off. The
    environment fallbacks of §10.1 (OTEL_ENABLED, ...) are the SDK's and the observability
    actor's, not the bus's."""
    entry = cfg.worker("iii-observability")
    if entry is None:
        return False, False
    block = entry.config if isinstance(entry.config, dict) else {}
    return block.get("enabled") is not False, block.get("metrics_enabled") is not False


async def run_engine(
    cfg: EngineConfig, *, task_status: trio.TaskStatus[Engine] = trio.TASK_STATUS_IGNORED
) -> None:
    tracing, metrics = observability_switches(cfg)
    block = observability_block(cfg)
    bus = build_bus(
        namespace_grace_ms=namespace_grace_ms(cfg),
        clock=trio.current_time,
        tracing=tracing,
        metrics=metrics,
        sampler=sampler_for(block) if tracing and block is not None else None,
        live_spans=tracing and block is not None and live_spans_of(block),
        service_name=str((block or {}).get("service_name") or "iii"),
    )
    # HTTP-invoked registrations wait for an actor that config.yaml says will come (§10.1).
    bus.registrar.external.expected = any(
        w.name.split("#", 1)[0] == "iii-http-functions" for w in cfg.workers
    )
    edge = BusEdge(bus)
    listeners = [Listener(edge, lc) for lc in cfg.listeners]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(edge.run)
            ports = [await nursery.start(lst.run) for lst in listeners]
            task_status.started(Engine(bus=edge, listeners=listeners, ports=ports))
            await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await edge.shutdown()


def build_bus(
    *,
    tracing: bool = True,
    sampler: Sampler | None = None,
    live_spans: bool = False,
    service_name: str = "iii",
    **options: Any,
) -> Bus:
    """A bus with the engine's built-in functions and event trigger types installed, and the
    tracing hook (with ``sampler``, if any) unless ``tracing`` is false."""
    bus = Bus(**options)
    builtins.install(bus)
    observe.install(bus, compile_filter)
    if tracing:
        bus.tracing = Tracing(bus, sampler=sampler, live=live_spans, service_name=service_name)
        bus.hooks.add(bus.tracing)
    return bus
