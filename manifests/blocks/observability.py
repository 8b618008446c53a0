"""The ``iii-observability`` config block (WORKERS.md §10.1): traces, metrics, logs and alerts.

Every field is optional: an omitted one falls back to its environment variable, then its default.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from manifests.blocks.strict import (
    BatchSize,
    IntervalMs,
    NonNegativeInt,
    PositiveInt,
    Ratio,
)

__all__ = [
    "DEFAULTS",
    "ENGINE_SPANS_KIND",
    "INGEST_FUNCTION_ID",
    "AlertAction",
    "AlertRule",
    "CollapseSpan",
    "ObservabilityBlock",
    "SamplingConfig",
    "SamplingRateLimit",
    "SamplingRule",
    "TraceStorageConfig",
]


@attrs.frozen
class SamplingRule:
    rate: Ratio
    operation: str | None = None
    service: str | None = None


@attrs.frozen
class SamplingRateLimit:
    max_traces_per_second: PositiveInt


@attrs.frozen
class SamplingConfig:
    default: Ratio | None = None
    rules: tuple[SamplingRule, ...] = ()
    parent_based: bool | None = None
    rate_limit: SamplingRateLimit | None = None


@attrs.frozen
class TraceStorageConfig:
    enabled: bool = True
    directory: str = "./data/observability/traces"
    max_disk_bytes: NonNegativeInt = 1_073_741_824
    retention_seconds: NonNegativeInt = 2_592_000
    memory_max_bytes: NonNegativeInt = 268_435_456
    memory_low_watermark_ratio: Ratio = 0.75
    pending_max_age_seconds: NonNegativeInt = 3600


@attrs.frozen
class AlertAction:
    type: Literal["log", "webhook", "function"] = "log"
    url: str | None = None
    path: str | None = None


AlertOperator = Literal[
    "greaterthan",
    "greaterthanorequal",
    "lessthan",
    "lessthanorequal",
    "equal",
    "notequal",
    ">",
    ">=",
    "<",
    "<=",
    "==",
    "!=",
]


@attrs.frozen
class AlertRule:
    name: str
    metric: str
    threshold: float
    operator: AlertOperator = "greaterthan"
    window_seconds: PositiveInt = 60
    cooldown_seconds: PositiveInt = 60
    enabled: bool = True
    action: AlertAction | None = None


@attrs.frozen
class CollapseSpan:
    name: str
    service: str | None = None


@attrs.frozen
class ObservabilityBlock:
    enabled: bool | None = None
    service_name: str | None = None
    service_version: str | None = None
    service_namespace: str | None = None
    exporter: Literal["otlp", "memory", "both"] | None = None
    endpoint: str | None = None
    sampling_ratio: Ratio | None = None
    sampling: SamplingConfig | None = None
    memory_max_spans: PositiveInt | None = None
    trace_storage: TraceStorageConfig | None = None
    live_spans: bool | None = None
    metrics_enabled: bool | None = None
    metrics_exporter: Literal["memory", "otlp"] | None = None
    metrics_retention_seconds: PositiveInt | None = None
    metrics_max_count: PositiveInt | None = None
    logs_enabled: bool | None = None
    logs_exporter: Literal["memory", "otlp", "both"] | None = None
    logs_max_count: PositiveInt | None = None
    logs_retention_seconds: PositiveInt | None = None
    logs_batch_size: BatchSize | None = None
    logs_flush_interval_ms: IntervalMs | None = None
    logs_sampling_ratio: Ratio | None = None
    logs_console_output: bool | None = None
    alerts: tuple[AlertRule, ...] = ()
    level: Literal["trace", "debug", "info", "warn", "error"] | None = None
    format: Literal["default", "json"] | None = None
    collapse_spans: tuple[CollapseSpan, ...] = ()


# The built-in seed (WORKERS.md §10.1 layer 1): what runs when config.yaml has no block.
DEFAULTS: Final[dict[str, Any]] = {
    "enabled": True,
    "service_name": "iii",
    "exporter": "memory",
    "sampling_ratio": 1.0,
    "memory_max_spans": 1_000_000,
    "metrics_enabled": True,
    "metrics_exporter": "memory",
    "metrics_retention_seconds": 3600,
    "metrics_max_count": 10000,
    "logs_enabled": True,
    "logs_exporter": "memory",
    "logs_max_count": 1000,
    "logs_retention_seconds": 3600,
    "logs_sampling_ratio": 1.0,
    "logs_console_output": True,
}

INGEST_FUNCTION_ID: Final = "iii-observability::ingest"
"""The function the observability actor registers to receive telemetry, called fire-and-forget.

Data: ``{"kind": "OTLP"|"MTRC"|"LOGS"|"SPANS", "body": <OTLP/JSON export request object, or
the compact batch of ENGINE_SPANS_KIND>, "source": "engine"|"worker", "worker_id": <str or
null>}``. The engine sends the SDKs' telemetry frames (source ``worker``) and its own spans
(source ``engine``, kind ``SPANS``) this way, only while registered.
"""

ENGINE_SPANS_KIND: Final = "SPANS"
"""The ``kind`` of the engine's own span batches sent to ``iii-observability::ingest``: a
compact form, so a span costs the engine and the actor a few list items instead of an OTLP/JSON
object. ``body``::

    {"service_name": str, "scope": str,
     "shapes": [[name, [[key, value], ...]], ...],   # shared by the batch's spans
     "spans": [[traceparent, parent_span_id | null, shape index, start ns, end ns,
                (error code, error message)?], ...]}

``traceparent`` is the engine span's own (``00-<trace id>-<span id>-<flags>``); times are Unix
nanoseconds; a failed call's row has two more items. Every span is a finished SERVER span.
"""
