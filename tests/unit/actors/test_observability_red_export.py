"""The bus's RED figures (engine::calls::stats) become OTLP gauge records for the exporter."""

from __future__ import annotations

from actors.observability.export import _metrics
from actors.observability.metrics import red_records

STATS = {
    "functions": [
        {
            "function_id": "orders::get",
            "namespace": "default",
            "count": 10,
            "errors": 2,
            "p50_ms": 1.5,
            "p95_ms": 4.0,
            "p99_ms": 9.0,
            "window_seconds": 60,
        },
        {"function_id": "iii-observability::ingest", "namespace": "default", "count": 99},
        {"function_id": "idle::fn", "namespace": "ns", "count": 0, "errors": 0, "p50_ms": None},
    ],
    "workers": [{"worker_id": "w1", "name": "api", "count": 10, "errors": 2, "p99_ms": 9.0}],
}


def test_each_figure_is_a_gauge_with_a_point_per_function_and_worker() -> None:
    records = {r["name"]: r for r in red_records(STATS, start_ns=1, now_ns=2)}
    calls = records["iii.invocations"]
    assert calls["type"] == "gauge" and calls["service_name"] == "iii-engine"
    points = {tuple(sorted(p["attributes"].items())): p["value"] for p in calls["data_points"]}
    assert points == {
        (("function_id", "orders::get"), ("namespace", "default")): 10,
        (("function_id", "idle::fn"), ("namespace", "ns")): 0,
        (("worker_id", "w1"), ("worker_name", "api")): 10,
    }
    p99 = records["iii.invocation.duration.p99"]["data_points"]
    assert sorted(p["value"] for p in p99) == [9.0, 9.0]  # the idle function has no p99
    assert "iii.invocation.duration.p50" in records and records["iii.invocations"]["unit"]


def test_telemetry_plumbing_and_garbage_are_left_out() -> None:
    names = {
        p["attributes"].get("function_id")
        for r in red_records(STATS, start_ns=1, now_ns=2)
        for p in r["data_points"]
    }
    assert "iii-observability::ingest" not in names
    assert red_records(None, start_ns=1, now_ns=2) == []
    assert red_records({"functions": ["x", 3]}, start_ns=1, now_ns=2) == []


def test_records_convert_to_the_sdk_metrics_data() -> None:
    data = _metrics(red_records(STATS, start_ns=1, now_ns=2))
    (resource,) = data.resource_metrics
    assert resource.resource.attributes["service.name"] == "iii-engine"
    names = {m.name for m in resource.scope_metrics[0].metrics}
    assert "iii.invocation.errors" in names
