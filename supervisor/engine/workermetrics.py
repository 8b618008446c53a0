"""``engine::workers::info.latest_metrics``: the last worker resource sample, derived from the
``MTRC`` frames the SDKs send (PROTOCOL.md §12.2.5, §15; pure).

The SDKs report their process as observable gauges named ``iii.worker.*`` (the Node SDK by
itself once connected, the Python SDKs through ``register_worker_gauges``: CPU percent and
times, RSS / VMS / heap memory, event-loop lag, uptime), each data point carrying the
``worker.id`` attribute. A frame on the worker's own connection needs no
attribute (the connection says whose it is); one on a ``/otel`` socket, which belongs to no
worker, is matched by ``worker.id``. Each gauge updates one field of the worker's snapshot,
with the time of its data point; the snapshot lives on the connection and goes with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["GAUGES", "worker_samples"]

# Gauge name → latest_metrics field. Both the Python SDK's names and upstream engine's own.
GAUGES: Final = {
    "iii.worker.cpu.percent": "cpu_percent",
    "iii.worker.cpu.user_micros": "cpu_user_micros",
    "iii.worker.cpu.system_micros": "cpu_system_micros",
    "iii.worker.memory.rss": "memory_rss",
    "iii.worker.memory.rss.bytes": "memory_rss",
    "iii.worker.memory.vms": "memory_vms",
    "iii.worker.memory.heap_used": "memory_heap_used",
    "iii.worker.memory.heap.bytes": "memory_heap_used",
    "iii.worker.memory.heap_total": "memory_heap_total",
    "iii.worker.memory.external": "memory_external",
    "iii.worker.uptime_seconds": "uptime_seconds",
    "iii.worker.uptime.seconds": "uptime_seconds",
    "iii.worker.event_loop.lag_ms": "event_loop_lag_ms",
    "iii.worker.event_loop.lag.ms": "event_loop_lag_ms",
}
_PREFIX: Final = "iii.worker."


def _attr(attributes: Any, key: str) -> str | None:
    for kv in attributes if isinstance(attributes, list) else ():
        if isinstance(kv, dict) and kv.get("key") == key:
            value = kv.get("value")
            if isinstance(value, dict) and isinstance(value.get("stringValue"), str):
                return str(value["stringValue"])
    return None


def _number(point: dict[str, Any]) -> float | int | None:
    for key in ("asDouble", "asInt"):
        raw = point.get(key)
        if raw is None:
            continue
        try:
            return float(raw) if key == "asDouble" else int(raw)
        except (TypeError, ValueError):
            return None
    return None


def worker_samples(body: dict[str, Any], frame_worker_id: str | None) -> dict[str, dict[str, Any]]:
    """worker id → the ``latest_metrics`` fields this ExportMetricsServiceRequest carries
    (plus ``timestamp_ms``, the newest data point's time); workers without any are absent."""
    out: dict[str, dict[str, Any]] = {}
    for rm in body.get("resourceMetrics") or ():
        if not isinstance(rm, dict):
            continue
        resource = rm.get("resource")
        resource_id = _attr(
            resource.get("attributes") if isinstance(resource, dict) else None, "worker.id"
        )
        for sm in rm.get("scopeMetrics") or ():
            for metric in (sm.get("metrics") or ()) if isinstance(sm, dict) else ():
                if not isinstance(metric, dict):
                    continue
                name = metric.get("name")
                if not isinstance(name, str) or not name.startswith(_PREFIX):
                    continue
                field = GAUGES.get(name)
                gauge = metric.get("gauge")
                if field is None or not isinstance(gauge, dict):
                    continue
                for point in gauge.get("dataPoints") or ():
                    if not isinstance(point, dict):
                        continue
                    wid = _attr(point.get("attributes"), "worker.id") or resource_id
                    wid = wid or frame_worker_id
                    value = _number(point)
                    if wid is None or value is None:
                        continue
                    sample = out.setdefault(wid, {})
                    sample[field] = value
                    try:
                        ms = int(point.get("timeUnixNano") or 0) // 1_000_000
                    except (TypeError, ValueError):
                        ms = 0
                    sample["timestamp_ms"] = max(sample.get("timestamp_ms", 0), ms)
    return out


def merge_into(
    samples: dict[str, dict[str, Any]],
    lookup: Callable[[str], Any],
) -> int:
    """Merge each worker's sample into its connection's ``latest_metrics`` (``lookup`` finds
    the connection by worker id; unknown ids are skipped); how many workers were updated."""
    updated = 0
    for wid, sample in samples.items():
        conn = lookup(wid)
        if conn is None:
            continue
        conn.latest_metrics = {**(conn.latest_metrics or {}), **sample}
        updated += 1
    return updated
