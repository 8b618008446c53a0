"""Metric rollups at three levels, 1 min, 5 min and 1 h (``engine::rollups::list``, WORKERS.md
§10.2), and the samples the alert rules read, made from what the actor ingests (pure; time is an
input, in Unix nanoseconds).

Two sources feed them: the SDK metrics (``MTRC`` records) and the engine's RED figures, which the
actor reads from ``engine::calls::stats`` every evaluation tick. Cumulative figures (the bus's
call counts, cumulative OTLP sums and histograms) become deltas per series between two
readings, so a bucket holds what happened in its interval. Buckets are by arrival time (the
actor's clock), not by the SDK's timestamps, so one worker's skewed clock cannot scatter them.

Memory is bounded: a fixed number of buckets per level (``KEEP``: 2 h of minutes, 24 h of
5 minutes, 7 days of hours) for at most ``MAX_SERIES`` metric names of each kind, numbers and
histograms (the least recently updated name goes first); series are per metric name, the data
points' attributes merged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Final

from actors.observability.alerts import CALLS, ERRORS, Sample
from actors.runtime import Payload
from transport.client import FunctionError

__all__ = [
    "KEEP",
    "LEVELS",
    "CumulativeDeltas",
    "RollupStore",
    "list_rollups",
    "red_samples",
    "sdk_samples",
]

LEVELS: Final = (60, 300, 3600)  # level 0, 1, 2: bucket width in seconds
KEEP: Final = (120, 288, 168)  # buckets kept per level
MAX_SERIES: Final = 1000
MAX_DELTA_KEYS: Final = 10_000
SUCCESS: Final = "iii.invocations.success"
DURATIONS: Final = (
    ("iii.invocation.duration.p50", "p50_ms"),
    ("iii.invocation.duration.p95", "p95_ms"),
    ("iii.invocation.duration.p99", "p99_ms"),
)
PLUMBING: Final = ("iii-observability::",)
_NS: Final = 1_000_000_000
_MS: Final = 1_000_000
_MAX_MS: Final = 9_223_372_036_854

Histogram = tuple[float, float, float | None, float | None, tuple[float, ...], tuple[float, ...]]


class CumulativeDeltas:
    """The last reading of each cumulative series, to turn the next one into a delta. A key
    seen for the first time counts in full once the tracker is ``primed`` (its series started
    after we began watching); before that, the first reading is only the baseline. A reading
    lower than the last one is a reset: it counts in full."""

    def __init__(self, *, primed: bool) -> None:
        self.primed = primed
        self._last: dict[Any, Any] = {}

    def delta(self, key: Any, value: float) -> float:
        last = self._last.pop(key, None)
        self._last[key] = value
        while len(self._last) > MAX_DELTA_KEYS:
            del self._last[next(iter(self._last))]
        if last is None:
            return value if self.primed else 0.0
        return value - last if value >= last else value

    def delta_many(self, key: Any, values: tuple[float, ...]) -> tuple[float, ...]:
        last = self._last.pop(key, None)
        self._last[key] = values
        while len(self._last) > MAX_DELTA_KEYS:
            del self._last[next(iter(self._last))]
        if last is None or len(last) != len(values):
            return values if self.primed or last is not None else tuple(0.0 for _ in values)
        if any(v < prev for v, prev in zip(values, last, strict=True)):
            return values
        return tuple(v - prev for v, prev in zip(values, last, strict=True))


class _Bucket:
    __slots__ = ("count", "last", "max", "min", "start_ms", "sum")

    def __init__(self, start_ms: int, value: float) -> None:
        self.start_ms = start_ms
        self.count = 0
        self.sum = 0.0
        self.min = value
        self.max = value
        self.last = value

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.last = value


class _HistBucket:
    __slots__ = ("bounds", "counts", "max", "min", "n", "start_ms", "sum")

    def __init__(self, start_ms: int, bounds: tuple[float, ...]) -> None:
        self.start_ms = start_ms
        self.bounds = bounds
        self.counts = [0.0] * (len(bounds) + 1)
        self.n = 0.0
        self.sum = 0.0
        self.min: float | None = None
        self.max: float | None = None

    def add(self, h: Histogram) -> None:
        count, total, lo, hi, bounds, counts = h
        if bounds != self.bounds or len(counts) != len(self.counts):
            self.bounds, self.counts = bounds, [0.0] * len(counts)  # re-bucketed: start over
        self.n += count
        self.sum += total
        for i, c in enumerate(counts):
            self.counts[i] += c
        if lo is not None:
            self.min = lo if self.min is None else min(self.min, lo)
        if hi is not None:
            self.max = hi if self.max is None else max(self.max, hi)


class RollupStore:
    def __init__(self, *, max_series: int = MAX_SERIES) -> None:
        self.max_series = max_series
        # metric name → one ring of buckets per level (the dict is kept in update order).
        self._numbers: dict[str, tuple[deque[_Bucket], ...]] = {}
        self._histograms: dict[str, tuple[deque[_HistBucket], ...]] = {}

    def __len__(self) -> int:
        return len(self._numbers) + len(self._histograms)

    def clear(self) -> None:
        self._numbers.clear()
        self._histograms.clear()

    def _rings(self, table: dict[str, Any], name: str) -> Any:
        rings = table.pop(name, None)
        if rings is None:
            rings = tuple(deque[Any](maxlen=keep) for keep in KEEP)
        table[name] = rings  # most recently updated last
        while len(table) > self.max_series:
            del table[next(iter(table))]
        return rings

    def add(self, name: str, value: float, now_ns: int) -> None:
        ms = now_ns // _MS
        for ring, width in zip(self._rings(self._numbers, name), LEVELS, strict=True):
            start = ms - ms % (width * 1000)
            if not ring or ring[-1].start_ms != start:
                ring.append(_Bucket(start, value))
            ring[-1].add(value)

    def add_histogram(self, name: str, h: Histogram, now_ns: int) -> None:
        ms = now_ns // _MS
        for ring, width in zip(self._rings(self._histograms, name), LEVELS, strict=True):
            start = ms - ms % (width * 1000)
            if not ring or ring[-1].start_ms != start:
                ring.append(_HistBucket(start, h[4]))
            ring[-1].add(h)

    def query(
        self, level: int, start_ms: int, end_ms: int, name: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The buckets of ``level`` overlapping [start_ms, end_ms], by name then time."""
        width = LEVELS[level] * 1000
        numbers = []
        for metric in sorted(self._numbers):
            if name is not None and metric != name:
                continue
            for b in self._numbers[metric][level]:
                if b.start_ms + width > start_ms and b.start_ms <= end_ms:
                    numbers.append(
                        {
                            "metric_name": metric,
                            "level": level,
                            "interval_seconds": LEVELS[level],
                            "start_time": b.start_ms,
                            "end_time": b.start_ms + width,
                            "count": b.count,
                            "sum": b.sum,
                            "min": b.min,
                            "max": b.max,
                            "avg": b.sum / b.count if b.count else None,
                            "last": b.last,
                        }
                    )
        histograms = []
        for metric in sorted(self._histograms):
            if name is not None and metric != name:
                continue
            for h in self._histograms[metric][level]:
                if h.start_ms + width > start_ms and h.start_ms <= end_ms:
                    histograms.append(
                        {
                            "metric_name": metric,
                            "level": level,
                            "interval_seconds": LEVELS[level],
                            "start_time": h.start_ms,
                            "end_time": h.start_ms + width,
                            "count": h.n,
                            "sum": h.sum,
                            "min": h.min,
                            "max": h.max,
                            "avg": h.sum / h.n if h.n else None,
                            "explicit_bounds": list(h.bounds),
                            "bucket_counts": list(h.counts),
                        }
                    )
        return numbers, histograms


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def red_samples(stats: Any, deltas: CumulativeDeltas, now_ns: int) -> list[Sample]:
    """One engine-wide reading of ``engine::calls::stats``: calls, errors and successes since
    the last reading (``delta``) and the call-weighted latency percentiles of the bus's window
    (``gauge``, only while the window holds calls). Telemetry plumbing is left out."""
    functions = [
        f
        for f in (stats.get("functions") if isinstance(stats, dict) else None) or ()
        if isinstance(f, dict) and not str(f.get("function_id", "")).startswith(PLUMBING)
    ]
    calls = errors = 0.0
    for f in functions:
        fkey = (f.get("namespace"), f.get("function_id"))
        calls += deltas.delta(("count", fkey), _float(f.get("count")) or 0.0)
        errors += deltas.delta(("errors", fkey), _float(f.get("errors")) or 0.0)
    deltas.primed = True
    out = [
        Sample(CALLS, calls, now_ns, "delta"),
        Sample(ERRORS, errors, now_ns, "delta"),
        Sample(SUCCESS, calls - errors, now_ns, "delta"),
    ]
    for name, figure in DURATIONS:
        pairs = [
            (n, v)
            for f in functions
            if (n := _float(f.get("window_count")) or 0.0)
            and (v := _float(f.get(figure))) is not None
        ]
        weight = sum(n for n, _ in pairs)
        if weight:
            out.append(Sample(name, sum(n * v for n, v in pairs) / weight, now_ns, "gauge"))
    return out


def _series_key(record: dict[str, Any], point: dict[str, Any]) -> Any:
    attrs = point.get("attributes") or {}
    return (
        record["name"],
        record.get("service_name"),
        tuple(sorted((str(k), str(v)) for k, v in attrs.items())),
    )


def sdk_samples(
    records: Iterable[dict[str, Any]], deltas: CumulativeDeltas, now_ns: int
) -> tuple[list[Sample], list[tuple[str, Histogram]]]:
    """Ingested metric records (``otlpjson.metrics_of``) as samples and histogram deltas: gauges
    and non-monotonic cumulative sums as ``gauge`` samples, delta sums and monotonic cumulative
    sums (as deltas per series) as ``delta`` samples; histograms (deltas per series when
    cumulative) as histogram rollups plus a ``gauge`` sample of their mean."""
    samples: list[Sample] = []
    histograms: list[tuple[str, Histogram]] = []
    for record in records:
        kind, name = record.get("type"), record["name"]
        cumulative = record.get("aggregation_temporality") == 2
        for point in record.get("data_points") or ():
            if kind == "histogram":
                h = _histogram(point)
                if h is None:
                    continue
                if cumulative:
                    moved = deltas.delta_many(_series_key(record, point), (h[0], h[1], *h[5]))
                    h = (moved[0], moved[1], None, None, h[4], tuple(moved[2:]))
                if h[0] > 0:
                    histograms.append((name, h))
                    samples.append(Sample(name, h[1] / h[0], now_ns, "gauge"))
                continue
            value = _float(point.get("value"))
            if value is None:
                continue
            if kind == "sum" and record.get("aggregation_temporality") == 1:
                samples.append(Sample(name, value, now_ns, "delta"))
            elif kind == "sum" and cumulative and record.get("is_monotonic"):
                moved_value = deltas.delta(_series_key(record, point), value)
                samples.append(Sample(name, moved_value, now_ns, "delta"))
            elif kind in ("gauge", "sum"):
                samples.append(Sample(name, value, now_ns, "gauge"))
    return samples, histograms


def _histogram(point: dict[str, Any]) -> Histogram | None:
    count, total = _float(point.get("count")), _float(point.get("sum"))
    if count is None or total is None:
        return None
    bounds = tuple(float(b) for b in point.get("explicit_bounds") or ())
    counts = tuple(float(c) for c in point.get("bucket_counts") or ())
    return (count, total, _float(point.get("min")), _float(point.get("max")), bounds, counts)


def list_rollups(store: RollupStore | None, data: Any, *, now_ns: int) -> dict[str, Any]:
    """``engine::rollups::list``: the buckets of ``level`` (0 = 1 min, default; 1 = 5 min;
    2 = 1 h) overlapping [start_time, end_time] (ms; default the last hour), by metric name and
    time; ``message`` and no rows when metrics are disabled."""
    p = Payload("engine::rollups::list", data)
    now_ms = now_ns // _MS
    start, end = p.opt_int("start_time"), p.opt_int("end_time")
    for key, value in (("start_time", start), ("end_time", end)):
        if value is not None and abs(value) > _MAX_MS:
            raise FunctionError("time_value_overflow", f"`{key}` ({value} ms) is out of range")
    level = p.opt_int("level")
    if level is not None and not 0 <= level < len(LEVELS):
        raise p.error("`level`: expected 0 (1 min), 1 (5 min) or 2 (1 h)")
    name = p.opt_str("metric_name")
    out: dict[str, Any] = {"rollups": [], "histogram_rollups": [], "timestamp": now_ms}
    query = {
        k: p.data[k]
        for k in ("start_time", "end_time", "level", "metric_name")
        if p.data.get(k) is not None
    }
    if query:
        out["query"] = query
    if store is None:
        out["message"] = "Metrics are disabled"
        return out
    lvl = level or 0
    end_ms = now_ms if end is None else end
    start_ms = end_ms - 3_600_000 if start is None else start
    numbers, histograms = store.query(lvl, start_ms, end_ms, name)
    out.update(rollups=numbers, histogram_rollups=histograms, level=lvl, source="memory")
    return out
