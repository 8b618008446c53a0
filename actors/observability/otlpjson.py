"""OTLP/JSON export requests → the records WORKERS.md §10.2 returns (pure).

``spans_of`` reads an ExportTraceServiceRequest into Span objects, ``logs_of`` an
ExportLogsServiceRequest into Log objects, ``metrics_of`` an ExportMetricsServiceRequest into
metric records. Ids are lowercase hex as the SDKs send them (base64 ids, as protobuf's own JSON
mapping writes them, are converted). Malformed parts are skipped, never raised: telemetry is
best effort and one bad span must not lose its batch.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any, Final

import orjson

__all__ = [
    "STATUS_NAMES",
    "any_value",
    "attribute_map",
    "attribute_pairs",
    "hex_id",
    "logs_of",
    "metrics_of",
    "spans_of",
]

STATUS_NAMES: Final = {0: "unset", 1: "ok", 2: "error"}
_STATUS_ALIASES: Final = {
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
    "UNSET": 0,
    "OK": 1,
    "ERROR": 2,
}
_HEX = frozenset("0123456789abcdefABCDEF")


def hex_id(value: Any, length: int) -> str:
    """A trace (32) or span (16) id as lowercase hex; "" when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return ""
    if len(value) == length and all(c in _HEX for c in value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return raw.hex() if len(raw) * 2 == length else ""


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a plain JSON value."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    if "doubleValue" in value:
        return value["doubleValue"]
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values") or ()]
    if "kvlistValue" in value:
        return attribute_map((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _key_values(attrs: Any) -> Iterator[tuple[str, Any]]:
    if not isinstance(attrs, list):
        return
    for kv in attrs:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            yield kv["key"], any_value(kv.get("value"))


def attribute_pairs(attrs: Any) -> list[list[str]]:
    """OTLP attributes as the ``[[key, value], ...]`` string pairs of a Span object."""
    return [[k, _text(v)] for k, v in _key_values(attrs)]


def attribute_map(attrs: Any) -> dict[str, Any]:
    """OTLP attributes as an object (Log objects, resources)."""
    return dict(_key_values(attrs))


def _nanos(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _status(raw: Any) -> tuple[str, str | None]:
    if not isinstance(raw, dict):
        return "unset", None
    code = raw.get("code", 0)
    if isinstance(code, str):
        code = _STATUS_ALIASES.get(code.upper(), 0)
    message = raw.get("message")
    return STATUS_NAMES.get(code if isinstance(code, int) else 0, "unset"), message or None


def _list(value: Any, key: str) -> list[Any]:
    out = value.get(key) if isinstance(value, dict) else None
    return out if isinstance(out, list) else []


def _resource(block: dict[str, Any]) -> tuple[dict[str, Any], str]:
    resource = attribute_map(_list(block.get("resource"), "attributes"))
    service = resource.get("service.name")
    return resource, service if isinstance(service, str) and service else "unknown"


def _scope(block: dict[str, Any]) -> tuple[str | None, str | None]:
    scope = block.get("scope") or block.get("instrumentationLibrary") or {}
    if not isinstance(scope, dict):
        return None, None
    return scope.get("name") or None, scope.get("version") or None


def spans_of(body: Any) -> list[dict[str, Any]]:
    """Every readable span of an ExportTraceServiceRequest, as a Span object."""
    out: list[dict[str, Any]] = []
    for rs in _list(body, "resourceSpans"):
        if not isinstance(rs, dict):
            continue
        _, service = _resource(rs)
        for ss in _list(rs, "scopeSpans") or _list(rs, "instrumentationLibrarySpans"):
            if not isinstance(ss, dict):
                continue
            scope_name, scope_version = _scope(ss)
            for raw in _list(ss, "spans"):
                span = _span(raw, service, scope_name, scope_version)
                if span is not None:
                    out.append(span)
    return out


def _span(
    raw: Any, service: str, scope_name: str | None, scope_version: str | None
) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    trace_id, span_id = hex_id(raw.get("traceId"), 32), hex_id(raw.get("spanId"), 16)
    if not trace_id or not span_id:
        return None
    status, description = _status(raw.get("status"))
    span: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": hex_id(raw.get("parentSpanId"), 16) or None,
        "name": str(raw.get("name") or ""),
        "_kind": raw.get("kind") if isinstance(raw.get("kind"), int) else 0,  # for export only
        "start_time_unix_nano": _nanos(raw.get("startTimeUnixNano")),
        "end_time_unix_nano": _nanos(raw.get("endTimeUnixNano")),
        "status": status,
        "attributes": attribute_pairs(raw.get("attributes")),
        "service_name": service,
        "events": [
            {
                "name": str(e.get("name") or ""),
                "timestamp_unix_nano": _nanos(e.get("timeUnixNano")),
                "attributes": attribute_pairs(e.get("attributes")),
            }
            for e in _list(raw, "events")
            if isinstance(e, dict)
        ],
        "links": [
            {
                "trace_id": hex_id(link.get("traceId"), 32),
                "span_id": hex_id(link.get("spanId"), 16),
                "trace_state": link.get("traceState") or "",
                "attributes": attribute_pairs(link.get("attributes")),
            }
            for link in _list(raw, "links")
            if isinstance(link, dict)
        ],
    }
    if description:
        span["status_description"] = description
    if scope_name:
        span["instrumentation_scope_name"] = scope_name
    if scope_version:
        span["instrumentation_scope_version"] = scope_version
    if isinstance(raw.get("flags"), int):
        span["flags"] = raw["flags"]
    if raw.get("traceState"):
        span["trace_state"] = raw["traceState"]
    return span


def logs_of(body: Any, *, now_ns: int) -> list[dict[str, Any]]:
    """Every log record of an ExportLogsServiceRequest, as a Log object."""
    out: list[dict[str, Any]] = []
    for rl in _list(body, "resourceLogs"):
        if not isinstance(rl, dict):
            continue
        resource, service = _resource(rl)
        for sl in _list(rl, "scopeLogs"):
            if not isinstance(sl, dict):
                continue
            scope_name, scope_version = _scope(sl)
            for raw in _list(sl, "logRecords"):
                if not isinstance(raw, dict):
                    continue
                observed = _nanos(raw.get("observedTimeUnixNano")) or now_ns
                severity = raw.get("severityNumber")
                record: dict[str, Any] = {
                    "timestamp_unix_nano": _nanos(raw.get("timeUnixNano")) or observed,
                    "observed_timestamp_unix_nano": observed,
                    "severity_number": severity if isinstance(severity, int) else 0,
                    "severity_text": str(raw.get("severityText") or ""),
                    "body": any_value(raw.get("body")),
                    "attributes": attribute_map(raw.get("attributes")),
                    "trace_id": hex_id(raw.get("traceId"), 32),
                    "span_id": hex_id(raw.get("spanId"), 16),
                    "resource": resource,
                    "service_name": service,
                }
                if scope_name:
                    record["instrumentation_scope_name"] = scope_name
                if scope_version:
                    record["instrumentation_scope_version"] = scope_version
                out.append(record)
    return out


_METRIC_TYPES: Final = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")


def metrics_of(body: Any, *, now_ns: int) -> list[dict[str, Any]]:
    """Every metric of an ExportMetricsServiceRequest, as one record each (its data points
    with plain attributes and numbers)."""
    out: list[dict[str, Any]] = []
    for rm in _list(body, "resourceMetrics"):
        if not isinstance(rm, dict):
            continue
        resource, service = _resource(rm)
        for sm in _list(rm, "scopeMetrics"):
            if not isinstance(sm, dict):
                continue
            scope_name, _ = _scope(sm)
            for raw in _list(sm, "metrics"):
                if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                    continue
                kind = next((t for t in _METRIC_TYPES if isinstance(raw.get(t), dict)), None)
                if kind is None:
                    continue
                data = raw[kind]
                points = [_point(p) for p in _list(data, "dataPoints") if isinstance(p, dict)]
                record: dict[str, Any] = {
                    "name": raw["name"],
                    "description": str(raw.get("description") or ""),
                    "unit": str(raw.get("unit") or ""),
                    "type": kind,
                    "data_points": points,
                    "service_name": service,
                    "resource": resource,
                    "instrumentation_scope_name": scope_name,
                    "timestamp_unix_nano": max((p["time_unix_nano"] for p in points), default=0)
                    or now_ns,
                }
                if kind == "sum":
                    record["is_monotonic"] = bool(data.get("isMonotonic"))
                if kind in ("sum", "histogram"):
                    record["aggregation_temporality"] = data.get("aggregationTemporality", 0)
                out.append(record)
    return out


def _number(value: Any) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return float(value)
        except (TypeError, ValueError):
            return 0


def _point(raw: dict[str, Any]) -> dict[str, Any]:
    point: dict[str, Any] = {
        "attributes": attribute_map(raw.get("attributes")),
        "start_time_unix_nano": _nanos(raw.get("startTimeUnixNano")),
        "time_unix_nano": _nanos(raw.get("timeUnixNano")),
    }
    if "asInt" in raw:
        point["value"] = _number(raw["asInt"])
    elif "asDouble" in raw:
        point["value"] = _number(raw["asDouble"])
    if "bucketCounts" in raw or "count" in raw:
        point["count"] = _number(raw.get("count", 0))
        point["sum"] = _number(raw.get("sum", 0))
        point["bucket_counts"] = [_number(c) for c in raw.get("bucketCounts") or ()]
        point["explicit_bounds"] = [_number(b) for b in raw.get("explicitBounds") or ()]
        if "min" in raw:
            point["min"] = _number(raw["min"])
        if "max" in raw:
            point["max"] = _number(raw["max"])
    return point
