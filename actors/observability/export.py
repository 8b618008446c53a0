"""OTLP export through opentelemetry-sdk's exporters, never in the way of anything else.

Stored records are turned back into the SDK's own objects (``ReadableSpan``, ``MetricsData``,
``ReadableLogRecord``) and handed to the OTLP exporters: traces and metrics over gRPC or HTTP
(``OTEL_EXPORTER_OTLP_PROTOCOL``: ``grpc``, the default, or ``http/protobuf``), logs over HTTP;
the HTTP URLs are the endpoint with port 4317 turned into 4318 and ``/v1/<signal>`` appended
(``settings.http_endpoint``).

``offer`` only appends to a bounded buffer per signal (the oldest records are dropped and
counted when a collector is slow or gone); a flush task sends the buffers every
``FLUSH_EVERY`` seconds from a worker thread with a short exporter timeout, abandoned on
shutdown, so an unreachable collector delays nothing and never holds the process open. Logs
follow ``logs_batch_size`` and ``logs_flush_interval_ms`` (WORKERS.md §10.1): they are sent in
batches of that size, when a batch is full or the interval has passed since the last send
(checked every ``FLUSH_EVERY`` seconds at most, or every interval if it is shorter).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

import orjson
import structlog
import trio

from actors.observability.settings import Settings, http_endpoint

__all__ = ["OtlpExport", "export_signals", "logs_due"]

log = structlog.get_logger("iii-observability.export")

FLUSH_EVERY: Final = 0.5
BUFFER_LIMIT: Final = 10_000  # records per signal waiting for the collector
BATCH_LIMIT: Final = 512
EXPORT_TIMEOUT: Final = 5.0  # seconds, per export call (the exporters' own retries included)
SIGNALS: Final = ("traces", "metrics", "logs")


def export_signals(s: Settings) -> tuple[str, ...]:
    """The signals ``s`` sends to the OTLP collector."""
    wanted = (
        ("traces", s.otlp),
        ("metrics", s.metrics_enabled and s.metrics_exporter == "otlp"),
        ("logs", s.logs_enabled and s.logs_exporter in ("otlp", "both")),
    )
    return tuple(signal for signal, on in wanted if on)


def logs_due(buffered: int, since_s: float, settings: Settings) -> bool:
    """Whether the buffered logs go now: a full batch, or the flush interval has passed."""
    if buffered >= settings.logs_batch_size:
        return True
    return buffered > 0 and since_s * 1000 >= settings.logs_flush_interval_ms


class OtlpExport:
    def __init__(self, settings: Settings, *, signals: tuple[str, ...]) -> None:
        self.settings = settings
        self.signals: tuple[str, ...] = ()
        self.exported: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self._buffers: dict[str, deque[dict[str, Any]]] = {}
        self._exporters: dict[str, Any] = {}
        self.set_signals(signals)

    def set_signals(self, signals: tuple[str, ...]) -> None:
        """Export these signals from now on (a rebuild of one pipeline: a signal turned off
        loses its buffer, one turned on starts empty); counters are kept."""
        for signal in signals:
            self._buffers.setdefault(signal, deque())
            for table in (self.exported, self.failed, self.dropped):
                table.setdefault(signal, 0)
        for signal in set(self._buffers) - set(signals):
            del self._buffers[signal]
            self._exporters.pop(signal, None)
        self.signals = tuple(signals)

    def offer(self, signal: str, records: list[dict[str, Any]]) -> None:
        buffer = self._buffers.get(signal)
        if buffer is None or not records:
            return
        buffer.extend(records)
        over = len(buffer) - BUFFER_LIMIT
        for _ in range(max(0, over)):
            buffer.popleft()
        if over > 0:
            self.dropped[signal] += over

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.settings.endpoint,
            "protocol": self.settings.protocol,
            "signals": list(self.signals),
            "exported": self.exported,
            "failed": self.failed,
            "dropped": self.dropped,
        }

    async def run(self) -> None:
        """Flush every ``FLUSH_EVERY`` seconds until cancelled (the thread in flight, if any,
        is abandoned: its exporter call ends by its own timeout)."""
        logs_sent = trio.current_time()
        while True:
            await trio.sleep(min(FLUSH_EVERY, self.settings.logs_flush_interval_ms / 1000))
            for signal in self.signals:
                buffer = self._buffers.get(signal)
                limit = BATCH_LIMIT
                if signal == "logs" and buffer is not None:
                    now = trio.current_time()
                    if not logs_due(len(buffer), now - logs_sent, self.settings):
                        continue
                    logs_sent, limit = now, self.settings.logs_batch_size
                while buffer:
                    batch = [buffer.popleft() for _ in range(min(limit, len(buffer)))]
                    ok = await trio.to_thread.run_sync(
                        self._export_sync, signal, batch, abandon_on_cancel=True
                    )
                    if ok:
                        self.exported[signal] += len(batch)
                    else:
                        self.failed[signal] += len(batch)
                        break  # the collector is down: try again next round, newest kept

    # -- in the worker thread ----------------------------------------------------------------

    def _export_sync(self, signal: str, batch: list[dict[str, Any]]) -> bool:
        try:
            exporter = self._exporters.get(signal)
            if exporter is None:
                exporter = self._exporters[signal] = _EXPORTERS[signal](self.settings)
            converted = _CONVERT[signal](batch)
            result = exporter.export(converted)
            return getattr(result, "name", "") == "SUCCESS"
        except Exception as exc:
            log.warning("OTLP export failed", signal=signal, error=str(exc))
            return False


def _grpc(settings: Settings) -> bool:
    return settings.protocol == "grpc"


def _span_exporter(settings: Settings) -> Any:
    if _grpc(settings):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.endpoint, insecure=True, timeout=EXPORT_TIMEOUT)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(
        endpoint=http_endpoint(settings.endpoint, "traces"), timeout=EXPORT_TIMEOUT
    )


def _metric_exporter(settings: Settings) -> Any:
    if _grpc(settings):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=settings.endpoint, insecure=True, timeout=EXPORT_TIMEOUT)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(
        endpoint=http_endpoint(settings.endpoint, "metrics"), timeout=EXPORT_TIMEOUT
    )


def _log_exporter(settings: Settings) -> Any:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(
        endpoint=http_endpoint(settings.endpoint, "logs"), timeout=EXPORT_TIMEOUT
    )


_EXPORTERS: Final[dict[str, Callable[[Settings], Any]]] = {
    "traces": _span_exporter,
    "metrics": _metric_exporter,
    "logs": _log_exporter,
}


# -- records → the SDK's objects ------------------------------------------------------------------


def _attr(value: Any) -> Any:
    """A JSON value as an OTel attribute value (nested objects become JSON text)."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return orjson.dumps(value).decode()


_KINDS: Final = {2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _spans(batch: list[dict[str, Any]]) -> list[Any]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    statuses = {"ok": StatusCode.OK, "error": StatusCode.ERROR}
    resources: dict[str, Resource] = {}
    out = []
    for span in batch:
        trace_id = int(span["trace_id"], 16)
        ctx = SpanContext(trace_id, int(span["span_id"], 16), False, TraceFlags(1))
        parent = span.get("parent_span_id")
        service = span.get("service_name") or "unknown"
        resource = resources.get(service)
        if resource is None:
            resource = resources[service] = Resource({"service.name": service})
        out.append(
            ReadableSpan(
                name=span.get("name") or "",
                context=ctx,
                parent=SpanContext(trace_id, int(parent, 16), True) if parent else None,
                resource=resource,
                attributes=dict(span.get("attributes") or ()),
                events=[
                    Event(e["name"], dict(e.get("attributes") or ()), e["timestamp_unix_nano"])
                    for e in span.get("events") or ()
                ],
                links=[
                    Link(SpanContext(int(lk["trace_id"], 16), int(lk["span_id"], 16), True))
                    for lk in span.get("links") or ()
                    if lk.get("trace_id") and lk.get("span_id")
                ],
                kind=getattr(SpanKind, _KINDS.get(span.get("_kind") or 0, "INTERNAL")),
                status=Status(
                    statuses.get(span.get("status") or "", StatusCode.UNSET),
                    span.get("status_description") if span.get("status") == "error" else None,
                ),
                start_time=span.get("start_time_unix_nano") or 0,
                end_time=span.get("end_time_unix_nano") or None,
                instrumentation_scope=InstrumentationScope(
                    span.get("instrumentation_scope_name") or "iii",
                    span.get("instrumentation_scope_version"),
                ),
            )
        )
    return out


def _metrics(batch: list[dict[str, Any]]) -> Any:
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    by_service: dict[str, list[Any]] = {}
    for record in batch:
        points = record.get("data_points") or ()
        attrs = [{k: _attr(v) for k, v in (p.get("attributes") or {}).items()} for p in points]
        temporality = AggregationTemporality(record.get("aggregation_temporality") or 2)
        data: Any
        if record["type"] == "histogram":
            data = Histogram(
                [
                    HistogramDataPoint(
                        a,
                        p["start_time_unix_nano"],
                        p["time_unix_nano"],
                        int(p.get("count") or 0),
                        p.get("sum") or 0,
                        [int(c) for c in p.get("bucket_counts") or ()],
                        [float(b) for b in p.get("explicit_bounds") or ()],
                        p.get("min") or 0,
                        p.get("max") or 0,
                    )
                    for p, a in zip(points, attrs, strict=True)
                ],
                temporality,
            )
        else:
            numbers = [
                NumberDataPoint(a, p["start_time_unix_nano"], p["time_unix_nano"], p["value"])
                for p, a in zip(points, attrs, strict=True)
                if isinstance(p.get("value"), int | float)
            ]
            if record["type"] == "sum":
                data = Sum(numbers, temporality, bool(record.get("is_monotonic")))
            else:
                data = Gauge(numbers)
        metric = Metric(record["name"], record.get("description"), record.get("unit"), data)
        by_service.setdefault(record.get("service_name") or "unknown", []).append(metric)
    return MetricsData(
        [
            ResourceMetrics(
                Resource({"service.name": service}),
                [ScopeMetrics(InstrumentationScope("iii"), metrics, "")],
                "",
            )
            for service, metrics in by_service.items()
        ]
    )


def _logs(batch: list[dict[str, Any]]) -> list[Any]:
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        TraceFlags,
        set_span_in_context,
    )

    out = []
    for record in batch:
        context = None
        if record.get("trace_id") and record.get("span_id"):
            try:
                ctx = SpanContext(
                    int(record["trace_id"], 16), int(record["span_id"], 16), True, TraceFlags(1)
                )
                context = set_span_in_context(NonRecordingSpan(ctx))
            except ValueError:
                context = None
        try:
            severity = SeverityNumber(record.get("severity_number") or 0)
        except ValueError:
            severity = SeverityNumber.UNSPECIFIED
        body = record.get("body")
        out.append(
            ReadableLogRecord(
                log_record=LogRecord(
                    timestamp=record.get("timestamp_unix_nano"),
                    observed_timestamp=record.get("observed_timestamp_unix_nano"),
                    context=context,
                    severity_text=record.get("severity_text") or None,
                    severity_number=severity,
                    body=body if isinstance(body, str | int | float | bool) else _attr(body),
                    attributes={k: _attr(v) for k, v in (record.get("attributes") or {}).items()},
                ),
                resource=Resource({"service.name": record.get("service_name") or "unknown"}),
                instrumentation_scope=InstrumentationScope("iii"),
            )
        )
    return out


_CONVERT: Final[dict[str, Callable[[list[dict[str, Any]]], Any]]] = {
    "traces": _spans,
    "metrics": _metrics,
    "logs": _logs,
}
