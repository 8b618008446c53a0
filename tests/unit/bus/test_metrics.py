"""RED metrics: histogram percentiles against exact ones, the sliding window, per-worker rows,
engine::calls::stats. Time is an argument; nothing sleeps."""

from __future__ import annotations

import math
import random

import pytest

from supervisor.engine.bus import Bus
from supervisor.engine.metrics import (
    BUCKETS,
    INTERVAL_SECONDS,
    INTERVALS,
    Histogram,
    Series,
    bucket_of,
    percentiles,
)
from supervisor.engine.runner import build_bus
from tests.unit.bus.test_routing import Clock, Worker
from transport import messages as m


def exact(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of the samples themselves."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def hist_of(samples: list[float]) -> Histogram:
    h = Histogram()
    for s in samples:
        h.add(bucket_of(s))
    return h


@pytest.mark.parametrize(
    "name, draw",
    [
        ("uniform 1-50 ms", lambda r: r.uniform(0.001, 0.050)),
        ("lognormal around 2 ms", lambda r: r.lognormvariate(math.log(0.002), 1.0)),
        ("exponential 300 us", lambda r: r.expovariate(1 / 0.0003)),
        ("bimodal 100 us / 80 ms", lambda r: r.choice((0.0001, 0.08)) * r.uniform(0.9, 1.1)),
    ],
)
def test_percentiles_are_within_5_percent_of_the_exact_ones(name: str, draw: object) -> None:
    rnd = random.Random(name)
    samples = [draw(rnd) for _ in range(20_000)]  # type: ignore[operator]
    got = percentiles([hist_of(samples)], (0.5, 0.95, 0.99))
    for q, value in zip((0.5, 0.95, 0.99), got, strict=True):
        want = exact(samples, q)
        assert value is not None
        assert abs(value - want) <= 0.05 * want, (name, q, value, want)


def test_percentiles_merge_several_histograms() -> None:
    rnd = random.Random(7)
    parts = [[rnd.uniform(0.001, 0.01) * (i + 1) for _ in range(1000)] for i in range(4)]
    merged = percentiles([hist_of(p) for p in parts], (0.5, 0.99))
    flat = [s for p in parts for s in p]
    for q, value in zip((0.5, 0.99), merged, strict=True):
        assert value is not None and abs(value - exact(flat, q)) <= 0.05 * exact(flat, q)


def test_a_histogram_has_a_fixed_size_whatever_it_holds() -> None:
    h = hist_of([1e-9, 0.5, 1e6])  # below, inside and above the range
    assert len(h.counts) == BUCKETS and h.total == 3
    assert h.counts[0] == 1 and h.counts[BUCKETS - 1] == 1
    h.clear()
    assert h.total == 0 and not any(h.counts)


def test_empty_percentiles_are_none() -> None:
    assert percentiles([Histogram()], (0.5,)) == [None]


def epoch(now: float) -> int:
    return int(now // INTERVAL_SECONDS)


def test_the_window_slides_one_interval_at_a_time() -> None:
    s = Series()
    now = 1000.0
    for _ in range(10):
        s.add(bucket_of(0.010), False, epoch(now))
    s.add(bucket_of(0.010), True, epoch(now))
    later = now + INTERVAL_SECONDS * (INTERVALS - 1)
    for _ in range(5):
        s.add(bucket_of(0.100), False, epoch(later))
    doc = s.summary(later)
    assert (doc["count"], doc["errors"], doc["window_count"], doc["window_errors"]) == (
        16,
        1,
        16,
        1,
    )
    # One interval more: the first calls leave the window, the totals keep them.
    doc = s.summary(later + INTERVAL_SECONDS)
    assert (doc["count"], doc["errors"], doc["window_count"], doc["window_errors"]) == (16, 1, 5, 0)
    assert abs(doc["p50_ms"] - 100) <= 4
    # The slot of the first interval is reused, cleared, when its turn comes round.
    s.add(bucket_of(0.001), False, epoch(now + INTERVAL_SECONDS * INTERVALS))
    hists, _ = s.window(now + INTERVAL_SECONDS * INTERVALS)
    assert sum(h.total for h in hists) == 6
    empty = s.summary(now + 100 * INTERVAL_SECONDS)
    assert empty["window_count"] == 0 and empty["p99_ms"] is None and empty["count"] == 17


def test_calls_are_counted_per_function_and_per_worker() -> None:
    clock = Clock()
    bus = build_bus(clock=clock, invocation_deadline=60.0)
    a, b = Worker(bus, "a"), Worker(bus, "b")
    a.register("f")
    for i in range(10):
        inv = b.call("f", {})
        clock.now += 0.002 * (i + 1)
        err = m.ErrorBody("invocation_failed", "boom") if i % 5 == 0 else None
        a.send(m.InvocationResult(invocation_id=inv, function_id="f", error=err))
    inv = b.call("engine::calls::stats", {"function_id": "f"})
    (res,) = [r for r in b.of(m.InvocationResult) if r.invocation_id == inv]
    doc = res.result
    assert doc["enabled"] is True
    (row,) = doc["functions"]
    assert (row["function_id"], row["namespace"], row["count"], row["errors"]) == (
        "f",
        "default",
        10,
        2,
    )
    samples = [0.002 * (i + 1) for i in range(10)]
    assert abs(row["p50_ms"] - exact(samples, 0.5) * 1000) <= 0.05 * exact(samples, 0.5) * 1000
    assert row["window_seconds"] == INTERVAL_SECONDS * INTERVALS
    (wrow,) = [w for w in doc["workers"] if w["worker_id"] == a.conn.worker_id]
    assert (wrow["name"], wrow["count"], wrow["errors"]) == ("a", 10, 2)


def test_a_bad_function_id_argument_is_a_clear_error() -> None:
    bus = build_bus(clock=Clock())
    b = Worker(bus, "b")
    inv = b.call("engine::calls::stats", {"function_id": 3})
    (res,) = [r for r in b.of(m.InvocationResult) if r.invocation_id == inv]
    assert res.error.code == "deserialization_error"
    assert "function_id" in res.error.message


def test_metrics_switched_off_install_no_hook() -> None:
    bus = Bus(clock=Clock(), metrics=False)
    assert bus.metrics is None and bus.hooks.completion == []
    on = build_bus(clock=Clock())
    assert on.metrics is not None and on.metrics.on_completion in on.hooks.completion


def test_locally_run_calls_are_counted_at_their_mean_duration() -> None:
    from supervisor.engine.metrics import CallMetrics

    metrics = CallMetrics()
    metrics.add_local(("default", "f"), 4, 1, 40.0, 1000.0)  # 4 calls, 1 failed, 10 ms each
    metrics.add_local(("default", "f"), 0, 0, 0.0, 1000.0)  # an empty report changes nothing
    (row,) = metrics.snapshot(1000.0)["functions"]
    assert (row["count"], row["errors"], row["window_count"]) == (4, 1, 4)
    assert abs(row["p50_ms"] - 10) <= 0.4


def test_a_call_counts_once_in_its_function_row_and_once_in_its_workers_row() -> None:
    from supervisor.engine.metrics import CallMetrics

    clock = Clock()
    bus = build_bus(clock=clock, invocation_deadline=60.0)
    a, b, c = Worker(bus, "a"), Worker(bus, "b"), Worker(bus, "c")
    a.register("f")
    b.register("f")  # f has two owners: its calls land in two cells
    a.register("g")
    served: dict[str, int] = {}
    for i in range(12):
        inv = c.call("f" if i % 3 else "g", {})
        got = {w: w.of(m.InvokeFunction) for w in (a, b)}  # each outbox read (drained) once
        ((owner, (call,)),) = [(w, calls) for w, calls in got.items() if calls]
        served[owner.conn.worker_id] = served.get(owner.conn.worker_id, 0) + 1
        clock.now += 0.001
        err = m.ErrorBody("invocation_failed", "boom") if i == 1 else None
        owner.send(m.InvocationResult(invocation_id=inv, function_id=call.function_id, error=err))
    metrics = bus.metrics
    assert isinstance(metrics, CallMetrics)
    doc = metrics.snapshot(clock.now)
    rows = {r["function_id"]: r for r in doc["functions"]}
    assert (rows["f"]["count"], rows["f"]["errors"], rows["f"]["window_count"]) == (8, 1, 8)
    assert (rows["g"]["count"], rows["g"]["errors"]) == (4, 0)
    workers = {w["worker_id"]: w for w in doc["workers"]}
    assert {wid: w["count"] for wid, w in workers.items()} == served
    assert sum(w["count"] for w in workers.values()) == 12
    assert workers[a.conn.worker_id]["name"] == "a"
