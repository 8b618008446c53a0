"""SDK metrics kept in memory and the ``engine::metrics::list`` result (pure; time is an input).

The engine's invocation figures come from the bus's RED metrics (``engine::calls::stats``:
per function and per worker counts, errors and latency percentiles); worker spawns and deaths
are counted from ``engine::workers-available`` events; SDK metrics are the ``MTRC`` records
ingested, bounded by ``metrics_max_count`` and ``metrics_retention_seconds``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from actors.runtime import Payload
from transport.client import FunctionError
from transport.jsonshape import json_type

__all__ = ["MetricStore", "WorkerCounts", "engine_metrics", "list_metrics", "red_records"]

Record = dict[str, Any]

# Telemetry plumbing is not an invocation anyone made: left out of the engine's figures.
PLUMBING: Final = ("iii-observability::",)
_MAX_MS: Final = 9_223_372_036_854  # ms whose nanoseconds still fit an i64 (time_value_overflow)


class MetricStore:
    def __init__(self, *, max_count: int, retention_seconds: int) -> None:
        self.max_count = max_count
        self.retention_ns = retention_seconds * 1_000_000_000
        self._records: deque[Record] = deque()

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: Record, now_ns: int) -> None:
        record["_stored_ns"] = now_ns
        self._records.append(record)
        while len(self._records) > self.max_count:
            self._records.popleft()
        self.expire(now_ns)

    def expire(self, now_ns: int) -> None:
        cutoff = now_ns - self.retention_ns
        while self._records and self._records[0]["_stored_ns"] < cutoff:
            self._records.popleft()

    def clear(self) -> None:
        self._records.clear()

    def records(self, now_ns: int) -> list[Record]:
        self.expire(now_ns)
        return list(self._records)


class WorkerCounts:
    """Connections and disconnections seen since the actor started (engine::workers-available)."""

    def __init__(self) -> None:
        self.spawns = 0
        self.deaths = 0

    def event(self, data: Any) -> None:
        kind = data.get("event") if isinstance(data, dict) else None
        if kind == "worker_connected":
            self.spawns += 1
        elif kind == "worker_disconnected":
            self.deaths += 1


def engine_metrics(stats: Any, *, active_workers: int, counts: WorkerCounts) -> dict[str, Any]:
    """``engine_metrics`` from ``engine::calls::stats``; percentiles over several functions are
    the count-weighted mean of theirs (the bus keeps a histogram per function, not a merged one);
    ``min``/``max`` are the extremes of the functions' p50 and p99 where no better is known."""
    functions = [
        f
        for f in (stats.get("functions") if isinstance(stats, dict) else None) or ()
        if isinstance(f, dict) and not str(f.get("function_id", "")).startswith(PLUMBING)
    ]
    total = sum(int(f.get("count") or 0) for f in functions)
    errors = sum(int(f.get("errors") or 0) for f in functions)
    by_function: dict[str, int] = {}
    for f in functions:
        fid = str(f.get("function_id"))
        by_function[fid] = by_function.get(fid, 0) + int(f.get("count") or 0)

    def weighted(key: str) -> float | None:
        pairs: list[tuple[int, float]] = []
        for f in functions:
            n, v = int(f.get("count") or 0), f.get(key)
            if n and isinstance(v, int | float):
                pairs.append((n, float(v)))
        weight = sum(n for n, _ in pairs)
        return sum(n * v for n, v in pairs) / weight if weight else None

    p50, p99 = weighted("p50_ms"), weighted("p99_ms")
    lows = [f["p50_ms"] for f in functions if isinstance(f.get("p50_ms"), int | float)]
    highs = [f["p99_ms"] for f in functions if isinstance(f.get("p99_ms"), int | float)]
    return {
        "invocations": {
            "total": total,
            "success": total - errors,
            "error": errors,
            "deferred": 0,
            "by_function": by_function,
        },
        "workers": {"spawns": counts.spawns, "deaths": counts.deaths, "active": active_workers},
        "performance": {
            "avg_duration_ms": p50,
            "p50_duration_ms": p50,
            "p95_duration_ms": weighted("p95_ms"),
            "p99_duration_ms": p99,
            "min_duration_ms": min(lows) if lows else None,
            "max_duration_ms": max(highs) if highs else None,
        },
        # The bus's RED figures as they are, per function and per worker (engine::calls::stats).
        "functions": functions,
        "by_worker": [w for w in (stats.get("workers") or ()) if isinstance(w, dict)]
        if isinstance(stats, dict)
        else [],
    }


# The bus's RED figures exported as OpenTelemetry gauges: (name, stats key, unit, description).
RED_SERVICE: Final = "iii-engine"
RED_GAUGES: Final = (
    ("iii.invocations", "count", "{invocation}", "invocations in the sliding window"),
    ("iii.invocation.errors", "errors", "{invocation}", "failed invocations in the window"),
    ("iii.invocation.duration.p50", "p50_ms", "ms", "median latency over the window"),
    ("iii.invocation.duration.p95", "p95_ms", "ms", "95th percentile latency over the window"),
    ("iii.invocation.duration.p99", "p99_ms", "ms", "99th percentile latency over the window"),
)


def red_records(stats: Any, *, start_ns: int, now_ns: int) -> list[Record]:
    """``engine::calls::stats`` as OTLP gauge records (the shape ``export`` converts): one
    gauge per figure, a data point per function (``function_id``, ``namespace``) and per
    worker (``worker_id``, ``worker_name``). The figures cover the bus's sliding window, so they
    are gauges, not cumulative sums. Telemetry plumbing is left out, as in ``engine_metrics``."""
    if not isinstance(stats, dict):
        return []
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for f in stats.get("functions") or ():
        if isinstance(f, dict) and not str(f.get("function_id", "")).startswith(PLUMBING):
            attrs = {"function_id": str(f.get("function_id")), "namespace": str(f.get("namespace"))}
            rows.append((attrs, f))
    for w in stats.get("workers") or ():
        if isinstance(w, dict):
            attrs = {"worker_id": str(w.get("worker_id")), "worker_name": str(w.get("name") or "")}
            rows.append((attrs, w))
    records: list[Record] = []
    for name, key, unit, description in RED_GAUGES:
        points = [
            {
                "attributes": attrs,
                "start_time_unix_nano": start_ns,
                "time_unix_nano": now_ns,
                "value": row[key],
            }
            for attrs, row in rows
            if isinstance(row.get(key), int | float) and not isinstance(row.get(key), bool)
        ]
        if points:
            records.append(
                {
                    "name": name,
                    "description": description,
                    "unit": unit,
                    "type": "gauge",
                    "data_points": points,
                    "service_name": RED_SERVICE,
                }
            )
    return records


def _opt_ms(p: Payload, key: str) -> int | None:
    value = p.data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise p.error(f"`{key}`: invalid type: {json_type(value)}, expected an integer")
    if abs(value) > _MAX_MS:
        raise FunctionError("time_value_overflow", f"`{key}` ({value} ms) is out of range")
    return value


def list_metrics(
    store: MetricStore | None, data: Any, engine: dict[str, Any], *, now_ns: int
) -> dict[str, Any]:
    """``engine::metrics::list``: the engine's figures, the SDK metrics in the window (by
    ``metric_name``), ``aggregated_metrics`` per ``aggregate_interval`` seconds when asked."""
    p = Payload("engine::metrics::list", data)
    start, end = _opt_ms(p, "start_time"), _opt_ms(p, "end_time")
    name = p.opt_str("metric_name")
    interval = p.data.get("aggregate_interval")
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int) or interval < 1
    ):
        raise p.error("`aggregate_interval`: expected a positive integer (seconds)")
    sdk: list[Record] = []
    for record in store.records(now_ns) if store is not None else ():
        ms = record["timestamp_unix_nano"] // 1_000_000
        if (start is not None and ms < start) or (end is not None and ms > end):
            continue
        if name is not None and record["name"] != name:
            continue
        sdk.append({k: v for k, v in record.items() if not k.startswith("_")})
    out: dict[str, Any] = {
        "engine_metrics": engine,
        "sdk_metrics": sdk,
        "timestamp": now_ns // 1_000_000,
    }
    if interval is not None:
        out["aggregated_metrics"] = _aggregate(sdk, interval)
    query = {
        k: p.data[k]
        for k in ("start_time", "end_time", "metric_name", "aggregate_interval")
        if p.data.get(k) is not None
    }
    if query:
        out["query"] = query
    return out


def _aggregate(records: list[Record], interval: int) -> list[dict[str, Any]]:
    """Number data points per (metric, bucket of ``interval`` seconds): count, sum, min, max."""
    buckets: dict[tuple[str, int], dict[str, Any]] = {}
    width = interval * 1000
    for record in records:
        for point in record["data_points"]:
            value = point.get("value")
            if not isinstance(value, int | float):
                continue
            ms = (point.get("time_unix_nano") or record["timestamp_unix_nano"]) // 1_000_000
            start = ms - ms % width
            b = buckets.setdefault(
                (record["name"], start),
                {
                    "metric_name": record["name"],
                    "interval_start": start,
                    "interval_seconds": interval,
                    "count": 0,
                    "sum": 0.0,
                    "min": value,
                    "max": value,
                },
            )
            b["count"] += 1
            b["sum"] += value
            b["min"] = min(b["min"], value)
            b["max"] = max(b["max"], value)
    for b in buckets.values():
        b["avg"] = b["sum"] / b["count"]
    return sorted(buckets.values(), key=lambda b: (b["metric_name"], b["interval_start"]))
