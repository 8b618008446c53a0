"""Settings changes made in the configuration worker, applied per field by its change class
(WORKERS.md §10.1 "Tier"; §1.6 apply rules).

* ``live``: ``logs_sampling_ratio``, ``logs_console_output`` take effect on the next record;
  ``logs_enabled`` is a gate (off: records are dropped and the store goes; back on: a new, empty
  store); ``enabled`` gates ingestion (off: ingested telemetry is dropped; on: the ingest
  function is registered if it was not), while the pipeline it built stays as at the start.
* ``swap``: ``alerts`` (rules replaced, states kept by name), ``level`` (console filter),
  ``collapse_spans`` (trace trees), ``sampling_ratio`` and ``sampling`` (what
  ``engine::sampling::rules`` answers, and the engine's own span sampler, sent to it through
  ``engine::sampling::apply``).
* ``limits``: ``memory_max_spans``, ``metrics_max_count``, ``metrics_retention_seconds``,
  ``logs_max_count`` re-bound the stores in place (a lower bound evicts at the next write).
* ``rebuild``: the log pipeline: ``logs_retention_seconds`` (the store's), ``logs_exporter``
  (the OTLP log signal added or dropped), ``logs_batch_size`` and ``logs_flush_interval_ms``
  (the exporter's batching).
* ``restart``: everything else (the service identity, exporters and endpoint, metrics
  pipeline, the trace archive): stored, logged as pending, applied at the next start.
  ``format`` is stored and never applied (``console``).

An invalid value changes nothing (the previous settings stay, an error is logged).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs
import structlog

from actors.observability.console import apply_level
from actors.observability.export import export_signals
from actors.observability.logs import LogStore
from actors.observability.settings import Settings, parse_config, resolve
from actors.observability.spans import collapse_rules
from manifests.blocks.strict import BlockError

if TYPE_CHECKING:
    from actors.observability.service import ObservabilityService

__all__ = ["TIERS", "apply_value", "changed_by_tier"]

log = structlog.get_logger("iii-observability")

TIERS: Final[Mapping[str, str]] = {
    "enabled": "live",
    "logs_enabled": "live",
    "logs_sampling_ratio": "live",
    "logs_console_output": "live",
    "alerts": "swap",
    "level": "swap",
    "sampling_ratio": "swap",
    "sampling_rules": "swap",
    "parent_based": "swap",
    "rate_limit": "swap",
    "collapse_spans": "swap",
    "memory_max_spans": "limits",
    "metrics_max_count": "limits",
    "metrics_retention_seconds": "limits",
    "logs_max_count": "limits",
    "logs_exporter": "rebuild",
    "logs_retention_seconds": "rebuild",
    "logs_batch_size": "rebuild",
    "logs_flush_interval_ms": "rebuild",
    "format": "unapplied",  # the supervisor renders the actors' JSON lines (console.py)
}


SAMPLING_FIELDS: Final = frozenset(
    {"sampling_ratio", "sampling_rules", "parent_based", "rate_limit"}
)
SAMPLING_APPLY: Final = "engine::sampling::apply"


def changed_by_tier(old: Settings, new: Settings) -> dict[str, list[str]]:
    """The fields that differ, by tier (a field not in ``TIERS`` is ``restart``)."""
    out: dict[str, list[str]] = {}
    for field in attrs.fields(Settings):
        name = field.name
        if getattr(old, name) != getattr(new, name):
            out.setdefault(TIERS.get(name, "restart"), []).append(name)
    return out


def apply_value(
    service: ObservabilityService, value: Any, env: Mapping[str, str] | None = None
) -> None:
    """Adopt the configuration worker's value (the ``apply`` of ``ActorContext.adopt``)."""
    try:
        new = resolve(parse_config(value), os.environ if env is None else env)
    except BlockError as exc:
        log.error("iii-observability configuration rejected; settings unchanged", error=str(exc))
        return
    old = service.settings
    diff = changed_by_tier(old, new)
    pending = diff.pop("restart", [])
    unapplied = diff.pop("unapplied", [])
    applied = {name: getattr(new, name) for names in diff.values() for name in names}
    s = service.settings = attrs.evolve(old, **applied)
    if service.export is not None:
        service.export.settings = s
    if "limits" in diff:
        if service.spans is not None:
            service.spans.max_spans = s.memory_max_spans
        if service.metrics is not None:
            service.metrics.max_count = s.metrics_max_count
            service.metrics.retention_ns = s.metrics_retention_seconds * 1_000_000_000
    if not s.logs_enabled:
        service.logs = None
    elif service.logs is None:
        service.logs = LogStore(
            max_count=s.logs_max_count, retention_seconds=s.logs_retention_seconds
        )
    else:
        service.logs.max_count = s.logs_max_count
        service.logs.retention_ns = s.logs_retention_seconds * 1_000_000_000
    if {"logs_exporter", "logs_enabled"} & set(applied):
        service.rebuild_export(export_signals(s))
    if "alerts" in applied:
        service.watch.set_rules(s.alerts)
    if "collapse_spans" in applied:
        service.collapse = collapse_rules(s.collapse_spans)
    if "level" in applied:
        apply_level(s.level)
    if SAMPLING_FIELDS & set(applied):
        # The engine samples its own spans at dispatch: it gets the new block too.
        service.client.invoke_void(SAMPLING_APPLY, value)
    if "enabled" in applied and s.enabled:
        service.register_ingest()
    if applied:
        log.info("iii-observability settings applied", **{k: _show(v) for k, v in applied.items()})
    if unapplied:
        log.info(
            "iii-observability settings stored but not applied by this engine", fields=unapplied
        )
    if pending:
        log.warning(
            "iii-observability settings that apply at the next start",
            fields=pending,
        )


def _show(value: Any) -> Any:
    if isinstance(value, tuple):
        return [attrs.asdict(v) if attrs.has(type(v)) else v for v in value]
    return value
