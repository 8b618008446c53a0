"""The ``iii-observability`` block resolved into the settings the actor runs with (pure).

A field the block omits falls back to its environment variable, then to its hard default
(WORKERS.md §10.1; the built-in seed, used when config.yaml has no block, is
``manifests.blocks.observability.DEFAULTS``). Out-of-range archive limits are clamped as upstream
does (``max_disk_bytes`` ≥ 64 MiB, ``memory_max_bytes`` ≥ 16 MiB, zero = unset).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import attrs

from manifests.blocks.observability import AlertRule, ObservabilityBlock, TraceStorageConfig
from manifests.blocks.strict import parse

__all__ = ["BLOCK", "ArchiveSettings", "Settings", "http_endpoint", "parse_config", "resolve"]

BLOCK: Final = ObservabilityBlock

MIN_DISK_BYTES: Final = 64 * 1024 * 1024
MIN_MEMORY_BYTES: Final = 16 * 1024 * 1024
_DEFAULT_STORAGE: Final = TraceStorageConfig()


def parse_config(raw: Any) -> ObservabilityBlock:
    """The block, strictly (``None`` → all fields unset); raises ``BlockError``."""
    return parse(BLOCK, raw)


@attrs.frozen
class ArchiveSettings:
    directory: str
    max_disk_bytes: int
    retention_seconds: int


@attrs.frozen
class Settings:
    enabled: bool
    service_name: str
    service_version: str
    exporter: Literal["otlp", "memory", "both"]
    endpoint: str
    protocol: Literal["grpc", "http"]  # traces and metrics; logs always go over HTTP
    sampling_ratio: float
    memory_max_spans: int
    memory_max_bytes: int
    archive: ArchiveSettings | None
    metrics_enabled: bool
    metrics_exporter: Literal["memory", "otlp"]
    metrics_retention_seconds: int
    metrics_max_count: int
    logs_enabled: bool
    logs_exporter: Literal["memory", "otlp", "both"]
    logs_max_count: int
    logs_retention_seconds: int
    logs_sampling_ratio: float
    logs_console_output: bool
    sampling_rules: tuple[dict[str, Any], ...] = ()
    parent_based: bool = False
    rate_limit: int | None = None  # sampling.rate_limit.max_traces_per_second
    collapse_spans: tuple[tuple[str, str | None], ...] = ()
    logs_batch_size: int = 100
    logs_flush_interval_ms: int = 5000
    alerts: tuple[AlertRule, ...] = ()
    level: str | None = None  # None: the process's III_LOG_LEVEL
    format: Literal["default", "json"] = "default"

    @property
    def memory(self) -> bool:
        return self.exporter in ("memory", "both")

    @property
    def otlp(self) -> bool:
        return self.exporter in ("otlp", "both")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("true", "1")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(env.get(name, ""))
    except ValueError:
        return default
    return value if value >= 1 else default


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        value = float(env.get(name, ""))
    except ValueError:
        return default
    return min(1.0, max(0.0, value))


def _exporter(value: str | None) -> Literal["otlp", "memory", "both"]:
    if value == "memory":
        return "memory"
    if value == "both":
        return "both"
    return "otlp"


def _pick(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def resolve(block: ObservabilityBlock, env: Mapping[str, str]) -> Settings:
    storage = block.trace_storage
    archive = None
    if storage is not None and storage.enabled:
        disk = storage.max_disk_bytes or _DEFAULT_STORAGE.max_disk_bytes
        archive = ArchiveSettings(
            directory=storage.directory,
            max_disk_bytes=max(MIN_DISK_BYTES, disk),
            retention_seconds=storage.retention_seconds or _DEFAULT_STORAGE.retention_seconds,
        )
    # The hot store is always bounded by bytes too (upstream only with the archive on): the
    # seed's 1,000,000 spans could otherwise hold gigabytes.
    memory_bytes = _DEFAULT_STORAGE.memory_max_bytes
    if storage is not None and storage.memory_max_bytes:
        memory_bytes = max(MIN_MEMORY_BYTES, storage.memory_max_bytes)
    exporter = block.exporter or _exporter(env.get("OTEL_EXPORTER_TYPE"))
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip().lower()
    sampling = block.sampling
    return Settings(
        enabled=_pick(block.enabled, _bool(env, "OTEL_ENABLED", False)),
        service_name=block.service_name or env.get("OTEL_SERVICE_NAME") or "iii",
        service_version=block.service_version or env.get("SERVICE_VERSION") or "unknown",
        exporter=exporter,
        endpoint=block.endpoint
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4317",
        protocol="http" if protocol.startswith("http") else "grpc",
        # sampling.default, when given, is the ratio of the spans no rule matches (the engine
        # resolves it the same way: supervisor/engine/sampling.py).
        sampling_ratio=_pick(
            sampling.default if sampling else None,
            _pick(block.sampling_ratio, _float(env, "OTEL_TRACES_SAMPLER_ARG", 1.0)),
        ),
        memory_max_spans=block.memory_max_spans or _int(env, "OTEL_MEMORY_MAX_SPANS", 1000),
        memory_max_bytes=memory_bytes,
        archive=archive,
        metrics_enabled=_pick(block.metrics_enabled, _bool(env, "OTEL_METRICS_ENABLED", False)),
        metrics_exporter=block.metrics_exporter
        or ("otlp" if env.get("OTEL_METRICS_EXPORTER") == "otlp" else "memory"),
        metrics_retention_seconds=block.metrics_retention_seconds
        or _int(env, "OTEL_METRICS_RETENTION_SECONDS", 3600),
        metrics_max_count=block.metrics_max_count or _int(env, "OTEL_METRICS_MAX_COUNT", 10000),
        logs_enabled=_pick(block.logs_enabled, True),
        logs_exporter=block.logs_exporter or _logs_exporter(env.get("OTEL_LOGS_EXPORTER")),
        logs_max_count=block.logs_max_count or 1000,
        logs_retention_seconds=block.logs_retention_seconds or 3600,
        logs_sampling_ratio=_pick(block.logs_sampling_ratio, 1.0),
        logs_console_output=_pick(block.logs_console_output, True),
        sampling_rules=tuple(
            {"operation": r.operation, "service": r.service, "rate": r.rate}
            for r in (sampling.rules if sampling else ())
        ),
        parent_based=bool(sampling and sampling.parent_based),
        rate_limit=sampling.rate_limit.max_traces_per_second
        if sampling and sampling.rate_limit
        else None,
        collapse_spans=tuple((c.name, c.service) for c in block.collapse_spans),
        logs_batch_size=block.logs_batch_size
        or min(10_000, _int(env, "OTEL_LOGS_BATCH_SIZE", 100)),
        logs_flush_interval_ms=block.logs_flush_interval_ms
        or min(3_600_000, max(100, _int(env, "OTEL_LOGS_FLUSH_INTERVAL_MS", 5000))),
        alerts=block.alerts,
        level=block.level,
        format=block.format or "default",
    )


def _logs_exporter(value: str | None) -> Literal["memory", "otlp", "both"]:
    if value == "otlp":
        return "otlp"
    if value == "both":
        return "both"
    return "memory"


def http_endpoint(endpoint: str, signal: str) -> str:
    """The OTLP/HTTP URL of one signal (``traces``, ``metrics``, ``logs``): the endpoint's
    scheme and host, port 4317 (gRPC's) replaced by 4318 (HTTP's), path ``/v1/<signal>``."""
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    netloc = parts.netloc
    if parts.port == 4317:
        netloc = netloc[: netloc.rfind(":")] + ":4318"
    path = parts.path.rstrip("/")
    if not path.endswith(f"/v1/{signal}"):
        path = f"{path}/v1/{signal}"
    return urlunsplit((parts.scheme or "http", netloc, path, "", ""))
