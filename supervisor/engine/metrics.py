"""RED metrics per function and per worker, kept by a completion hook: count, errors and latency
percentiles over a sliding window, at O(1) per call and fixed memory per key.

Latency goes into a fixed-size histogram of log-spaced buckets (each ``GROWTH`` times the one
before, from ``MIN_SECONDS`` up; below and above fall into the first and last bucket). The
window is a ring of ``INTERVALS`` per-interval histograms: a call lands in the slot of its
interval, and a slot is cleared when its interval comes round again, so the window slides by
one interval at a time. A percentile is found by walking the merged buckets and interpolating
inside the one holding the rank (geometrically, as the buckets are), which is accurate to a
fraction of a bucket's width (``GROWTH`` - 1 = 4 %). Counts and errors are also kept since the
start. Time comes in as ``now`` (the bus clock). A call is counted once, in the cell of its
function and callee; the rows per function and per worker are sums of cells, made only when
read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.engine.invocations import Pending
    from transport.messages import ErrorBody

__all__ = [
    "GROWTH",
    "CallMetrics",
    "Cell",
    "Histogram",
    "Series",
    "bucket_of",
    "percentiles",
    "summary",
]

MIN_SECONDS = 1e-6
MAX_SECONDS = 3600.0
GROWTH = 1.04
_LOG_GROWTH = math.log(GROWTH)
BUCKETS = int(math.log(MAX_SECONDS / MIN_SECONDS) / _LOG_GROWTH) + 2
INTERVAL_SECONDS = 10.0
INTERVALS = 6  # the window: 60 s
MAX_KEYS = 10_000  # cells kept; past it the oldest cell goes

# (namespace, function id, callee worker id or None)
Cell = tuple[str, str, "str | None"]


_LOG_MIN = math.log(MIN_SECONDS)
_PER_LOG = 1 / _LOG_GROWTH
_LOG = math.log


def bucket_of(seconds: float) -> int:
    if seconds <= MIN_SECONDS:
        return 0
    index = int((_LOG(seconds) - _LOG_MIN) * _PER_LOG) + 1
    return index if index < BUCKETS else BUCKETS - 1


def bucket_bounds(index: int) -> tuple[float, float]:
    """The [low, high) latency range in seconds of a bucket (bucket 0 holds up to 1 µs)."""
    if index == 0:
        return 0.0, MIN_SECONDS
    return MIN_SECONDS * GROWTH ** (index - 1), MIN_SECONDS * GROWTH**index


class Histogram:
    """Counts per bucket in a list of fixed length."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * BUCKETS
        self.total = 0

    def add(self, index: int) -> None:
        self.counts[index] += 1
        self.total += 1

    def clear(self) -> None:
        if self.total:
            self.counts[:] = _ZEROS
        self.total = 0


_ZEROS = [0] * BUCKETS
_UNUSED = Histogram()


def percentiles(hists: Iterable[Histogram], qs: tuple[float, ...]) -> list[float | None]:
    """The ``qs`` quantiles (0..1) in seconds of the merged histograms (None when empty)."""
    parts = [h for h in hists if h.total]
    total = sum(h.total for h in parts)
    if not total:
        return [None] * len(qs)
    merged = [sum(column) for column in zip(*(h.counts for h in parts), strict=True)]
    out: list[float | None] = []
    for q in qs:
        rank = q * total  # the rank-th smallest sample, 0 < rank <= total
        seen = 0
        for index, count in enumerate(merged):
            if count and seen + count >= rank:
                lo, hi = bucket_bounds(index)
                fraction = (rank - seen) / count
                out.append(hi * fraction if lo <= 0.0 else lo * (hi / lo) ** fraction)
                break
            seen += count
        else:
            out.append(bucket_bounds(BUCKETS - 1)[1])
    return out


class Series:
    """Totals since the start and the sliding window of one key (a function or a worker):
    ``INTERVALS`` histograms, the one of the current interval written to."""

    __slots__ = ("count", "errors", "slots", "epochs", "slot_errors", "epoch", "current", "slot")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.slots: list[Histogram | None] = [None] * INTERVALS
        self.epochs = [-1] * INTERVALS  # which interval each slot holds
        self.slot_errors = [0] * INTERVALS
        self.epoch = -1  # the interval ``current`` (slot number ``slot``) holds
        self.current = _UNUSED  # replaced by the first call's slot, never written
        self.slot = 0

    def _turn(self, epoch: int) -> None:
        i = epoch % INTERVALS
        hist = self.slots[i]
        if hist is None:
            hist = self.slots[i] = Histogram()
        if self.epochs[i] != epoch:
            hist.clear()
            self.epochs[i] = epoch
            self.slot_errors[i] = 0
        self.epoch, self.current, self.slot = epoch, hist, i

    def add(self, bucket: int, failed: bool, epoch: int) -> None:
        """One call, in the interval ``epoch`` (``int(now // INTERVAL_SECONDS)``)."""
        if epoch != self.epoch:
            self._turn(epoch)
        current = self.current
        current.counts[bucket] += 1
        current.total += 1
        self.count += 1
        if failed:
            self.errors += 1
            self.slot_errors[self.slot] += 1

    def window(self, now: float) -> tuple[list[Histogram], int]:
        """The histograms and the error count of the intervals inside the window at ``now``."""
        current = int(now // INTERVAL_SECONDS)
        hists: list[Histogram] = []
        errors = 0
        for i, epoch in enumerate(self.epochs):
            hist = self.slots[i]
            if hist is not None and current - INTERVALS < epoch <= current:
                hists.append(hist)
                errors += self.slot_errors[i]
        return hists, errors

    def summary(self, now: float) -> dict[str, Any]:
        return summary((self,), now)


def summary(cells: Iterable[Series], now: float) -> dict[str, Any]:
    """Totals and window percentiles of the sum of ``cells`` (one row of the snapshot)."""
    count = errors = window_errors = 0
    hists: list[Histogram] = []
    for series in cells:
        count += series.count
        errors += series.errors
        more, more_errors = series.window(now)
        hists += more
        window_errors += more_errors
    p50, p95, p99 = percentiles(hists, (0.50, 0.95, 0.99))
    return {
        "count": count,
        "errors": errors,
        "p50_ms": _ms(p50),
        "p95_ms": _ms(p95),
        "p99_ms": _ms(p99),
        "window_count": sum(h.total for h in hists),
        "window_errors": window_errors,
        "window_seconds": INTERVAL_SECONDS * INTERVALS,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class CallMetrics:
    """The completion hook: one ``Series`` per cell — (namespace, function id, callee worker
    id; None for a built-in) — so a call costs one lookup and one ``add``. The rows per
    function and per worker are sums of their cells, made when asked (``snapshot``).
    ``names`` keeps each worker's name."""

    def __init__(self) -> None:
        self.cells: dict[Cell, Series] = {}
        self.names: dict[str, str | None] = {}

    def on_completion(
        self, pending: Pending, result: Any, err: ErrorBody | None, now: float
    ) -> None:
        callee = pending.callee
        if callee is None:
            key: Cell = (pending.namespace, pending.function_id, None)
        else:
            key = (pending.namespace, pending.function_id, callee.worker_id)
            self.names[callee.worker_id] = callee.name
        series = self.cells.get(key)
        if series is None:
            series = self._cell(key)
        series.add(bucket_of(now - pending.started), err is not None, int(now // INTERVAL_SECONDS))

    def _cell(self, key: Cell) -> Series:
        series = self.cells[key] = Series()
        if len(self.cells) > MAX_KEYS:
            oldest = next(iter(self.cells))
            del self.cells[oldest]
            wid = oldest[2]
            if wid is not None and not any(k[2] == wid for k in self.cells):
                self.names.pop(wid, None)
        return series

    def add_local(
        self, key: tuple[str, str], count: int, errors: int, duration_ms_sum: float, now: float
    ) -> None:
        """Calls a worker ran in-process (``localinvocationstats``, OBSERVE.md §8.2): counted
        with the routed ones, each at the mean duration of its report (no finer figure
        travels), in the function's row only (no worker's: they were not routed)."""
        if count <= 0:
            return
        cell: Cell = (key[0], key[1], None)
        series = self.cells.get(cell)
        if series is None:
            series = self._cell(cell)
        bucket = bucket_of(max(duration_ms_sum, 0.0) / count / 1000)
        epoch = int(now // INTERVAL_SECONDS)
        for i in range(count):
            series.add(bucket, i < errors, epoch)

    def function_rows(self) -> dict[tuple[str, str], list[Series]]:
        rows: dict[tuple[str, str], list[Series]] = {}
        for (ns, fid, _), series in self.cells.items():
            rows.setdefault((ns, fid), []).append(series)
        return rows

    def worker_rows(self) -> dict[str, list[Series]]:
        rows: dict[str, list[Series]] = {}
        for (_, _, wid), series in self.cells.items():
            if wid is not None:
                rows.setdefault(wid, []).append(series)
        return rows

    def snapshot(self, now: float) -> dict[str, Any]:
        """The ``engine::calls::stats`` document (PROTOCOL.md has no such call; it is ours)."""
        functions = [
            {"function_id": fid, "namespace": ns, **summary(cells, now)}
            for (ns, fid), cells in sorted(self.function_rows().items(), key=lambda kv: kv[0])
        ]
        workers = []
        for wid, cells in sorted(self.worker_rows().items()):
            row = summary(cells, now)
            del row["window_seconds"]
            workers.append({"worker_id": wid, "name": self.names.get(wid), **row})
        return {"functions": functions, "workers": workers}
