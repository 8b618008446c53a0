"""iii-observability's rollups on explicit time: buckets at 1 min / 5 min / 1 h, bounded rings
and series, cumulative readings turned into deltas, RED and SDK records as samples, and the
``engine::rollups::list`` result."""

from __future__ import annotations

from typing import Any

import pytest

from actors.observability.rollups import (
    KEEP,
    CumulativeDeltas,
    RollupStore,
    list_rollups,
    red_samples,
    sdk_samples,
)
from transport.client import FunctionError

S = 1_000_000_000
MS = 1_000_000
T0 = 1_699_999_200 * S  # on an hour boundary


def test_t0_is_on_an_hour_boundary() -> None:
    assert (T0 // S) % 3600 == 0


def test_numbers_roll_up_into_minute_five_minute_and_hour_buckets() -> None:
    store = RollupStore()
    for i, v in enumerate([1.0, 5.0, 3.0]):
        store.add("m", v, T0 + i * 20 * S)  # 0 s, 20 s, 40 s: one minute
    store.add("m", 10.0, T0 + 61 * S)  # the next minute
    minutes, _ = store.query(0, T0 // MS, (T0 + 3600 * S) // MS, None)
    assert [(b["start_time"], b["count"], b["sum"], b["min"], b["max"]) for b in minutes] == [
        (T0 // MS, 3, 9.0, 1.0, 5.0),
        ((T0 + 60 * S) // MS, 1, 10.0, 10.0, 10.0),
    ]
    assert minutes[0]["avg"] == 3.0 and minutes[0]["last"] == 3.0
    assert minutes[0]["end_time"] - minutes[0]["start_time"] == 60_000
    five, _ = store.query(1, T0 // MS, T0 // MS, None)
    hour, _ = store.query(2, T0 // MS, T0 // MS, None)
    assert [(b["count"], b["sum"], b["interval_seconds"]) for b in five] == [(4, 19.0, 300)]
    assert [(b["count"], b["sum"], b["interval_seconds"]) for b in hour] == [(4, 19.0, 3600)]


def test_each_level_keeps_a_fixed_number_of_buckets() -> None:
    store = RollupStore()
    for minute in range(KEEP[0] + 30):
        store.add("m", 1.0, T0 + minute * 60 * S)
    minutes, _ = store.query(0, 0, 2**50, "m")
    assert len(minutes) == KEEP[0]
    assert minutes[0]["start_time"] == (T0 + 30 * 60 * S) // MS  # the oldest 30 went


def test_series_are_bounded_the_least_recently_updated_going_first() -> None:
    store = RollupStore(max_series=2)
    store.add("a", 1, T0)
    store.add("b", 1, T0)
    store.add("a", 1, T0 + S)
    store.add("c", 1, T0 + 2 * S)
    rows, _ = store.query(0, 0, 2**50, None)
    assert sorted({r["metric_name"] for r in rows}) == ["a", "c"]


def test_query_filters_by_name_and_by_overlap_with_the_range() -> None:
    store = RollupStore()
    store.add("a", 1, T0)
    store.add("b", 1, T0 + 120 * S)
    assert [r["metric_name"] for r in store.query(0, 0, 2**50, "b")[0]] == ["b"]
    # [T0+30s, T0+90s] overlaps the bucket starting at T0 only.
    rows, _ = store.query(0, (T0 + 30 * S) // MS, (T0 + 90 * S) // MS, None)
    assert [r["metric_name"] for r in rows] == ["a"]


def test_cumulative_deltas_baseline_reset_and_priming() -> None:
    d = CumulativeDeltas(primed=False)
    assert d.delta("k", 100) == 0  # a baseline before priming
    assert d.delta("k", 130) == 30
    assert d.delta("k", 5) == 5  # a reset counts in full
    d.primed = True
    assert d.delta("new", 7) == 7  # a series born after we began watching


def test_red_samples_are_engine_wide_deltas_and_weighted_latencies() -> None:
    d = CumulativeDeltas(primed=False)

    def stats(a: int, a_err: int, b: int) -> dict[str, Any]:
        return {
            "functions": [
                {"function_id": "a", "namespace": "default", "count": a, "errors": a_err,
                 "p99_ms": 10.0, "p50_ms": 1.0, "p95_ms": 5.0, "window_count": 3},
                {"function_id": "b", "namespace": "default", "count": b, "errors": 0,
                 "p99_ms": 40.0, "p50_ms": 2.0, "p95_ms": 8.0, "window_count": 1},
                {"function_id": "iii-observability::ingest", "namespace": "default",
                 "count": 999, "errors": 9, "window_count": 0},
            ]
        }  # fmt: skip

    first = {s.name: s.value for s in red_samples(stats(10, 2, 5), d, T0)}
    assert first["iii.invocations.total"] == 0  # the first reading is the baseline
    second = {s.name: (s.value, s.kind) for s in red_samples(stats(16, 5, 6), d, T0 + 10 * S)}
    assert second["iii.invocations.total"] == (7, "delta")
    assert second["iii.invocations.error"] == (3, "delta")
    assert second["iii.invocations.success"] == (4, "delta")
    assert second["iii.invocation.duration.p99"] == ((3 * 10 + 40) / 4, "gauge")


def _record(kind: str, points: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "m", "type": kind, "data_points": points, "service_name": "svc", **extra}


def test_sdk_gauges_and_sums_become_samples_by_temporality() -> None:
    d = CumulativeDeltas(primed=True)
    pt = {"attributes": {"h": "1"}, "value": 4}
    samples, _ = sdk_samples([_record("gauge", [pt])], d, T0)
    assert [(s.value, s.kind) for s in samples] == [(4, "gauge")]
    samples, _ = sdk_samples([_record("sum", [pt], aggregation_temporality=1)], d, T0)
    assert [(s.value, s.kind) for s in samples] == [(4, "delta")]
    cumulative = {"aggregation_temporality": 2, "is_monotonic": True}
    sdk_samples([_record("sum", [pt], **cumulative)], d, T0)
    samples, _ = sdk_samples([_record("sum", [{**pt, "value": 10}], **cumulative)], d, T0)
    assert [(s.value, s.kind) for s in samples] == [(6, "delta")]
    updown = {"aggregation_temporality": 2, "is_monotonic": False}
    samples, _ = sdk_samples([_record("sum", [pt], **updown)], d, T0)
    assert [(s.value, s.kind) for s in samples] == [(4, "gauge")]


def test_sdk_cumulative_histograms_become_delta_histograms() -> None:
    d = CumulativeDeltas(primed=True)
    store = RollupStore()

    def point(count: int, total: float, counts: list[int]) -> dict[str, Any]:
        return {"attributes": {}, "count": count, "sum": total,
                "explicit_bounds": [10.0], "bucket_counts": counts}  # fmt: skip

    for p in (point(2, 8.0, [2, 0]), point(5, 68.0, [3, 2])):
        samples, hists = sdk_samples([_record("histogram", [p], aggregation_temporality=2)], d, T0)
        for name, h in hists:
            store.add_histogram(name, h, T0)
    assert [(s.value, s.kind) for s in samples] == [(20.0, "gauge")]  # (68-8)/(5-2)
    _, rows = store.query(0, 0, 2**50, None)
    assert [(r["count"], r["sum"], r["bucket_counts"], r["explicit_bounds"]) for r in rows] == [
        (5.0, 68.0, [3.0, 2.0], [10.0])
    ]


def test_list_rollups_shape_defaults_and_errors() -> None:
    store = RollupStore()
    store.add("m", 2.0, T0 - 30 * 60 * S)
    store.add("m", 2.0, T0 - 2 * 3600 * S)  # outside the default last hour
    out = list_rollups(store, {}, now_ns=T0)
    assert set(out) == {"rollups", "histogram_rollups", "level", "source", "timestamp"}
    assert out["level"] == 0 and out["source"] == "memory"
    assert [r["start_time"] for r in out["rollups"]] == [(T0 - 30 * 60 * S) // MS]
    asked = list_rollups(store, {"level": 2, "metric_name": "m", "start_time": 0}, now_ns=T0)
    assert asked["query"] == {"level": 2, "metric_name": "m", "start_time": 0}
    assert len(asked["rollups"]) == 2
    disabled = list_rollups(None, {}, now_ns=T0)
    assert disabled["rollups"] == [] and disabled["message"] == "Metrics are disabled"
    with pytest.raises(FunctionError) as bad_level:
        list_rollups(store, {"level": 3}, now_ns=T0)
    assert "level" in bad_level.value.message
    with pytest.raises(FunctionError) as overflow:
        list_rollups(store, {"start_time": 2**63}, now_ns=T0)
    assert overflow.value.code == "time_value_overflow"
