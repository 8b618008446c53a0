"""iii-observability's pure parts: bounded span/log/metric stores on explicit time, OTLP/JSON
decoding, the §10.2 query results, settings with their env fallbacks and the OTLP/HTTP URLs."""

from __future__ import annotations

from typing import Any

import pytest

from actors.observability.logs import LogStore, list_logs, log_record
from actors.observability.metrics import MetricStore, WorkerCounts, engine_metrics, list_metrics
from actors.observability.otlpjson import hex_id, logs_of, metrics_of, spans_of
from actors.observability.settings import (
    MIN_DISK_BYTES,
    http_endpoint,
    parse_config,
    resolve,
)
from actors.observability.spans import SpanStore, group_by, list_traces, span_size, trace_tree
from manifests.blocks.observability import DEFAULTS
from transport.client import FunctionError

S = 1_000_000_000
MS = 1_000_000


def mk(trace: str, span: str, *, parent: str | None = None, start: int = 0, end: int = 0,
       name: str = "op", status: str = "ok", service: str = "svc",
       attributes: list[list[str]] | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "trace_id": trace.ljust(32, "0"),
        "span_id": span.ljust(16, "0"),
        "parent_span_id": parent.ljust(16, "0") if parent else None,
        "name": name,
        "start_time_unix_nano": start,
        "end_time_unix_nano": end,
        "status": status,
        "attributes": attributes or [],
        "service_name": service,
        "events": [],
        "links": [],
    }


# -- the span store -------------------------------------------------------------------------------


def test_span_store_is_bounded_by_count_oldest_first() -> None:
    store = SpanStore(max_spans=3)
    for i in range(5):
        store.add(mk(f"t{i}", f"s{i}", start=i, end=i + 1))
    assert len(store) == 3 and store.evicted == 2
    assert [s["span_id"][:2] for s in store.spans()] == ["s2", "s3", "s4"]
    assert store.trace("t0".ljust(32, "0")) == []


def test_span_store_is_bounded_by_bytes() -> None:
    one = span_size(mk("t", "s", start=1, end=2))
    store = SpanStore(max_spans=1000, max_bytes=one * 4)
    for i in range(10):
        store.add(mk(f"t{i}", f"s{i}", start=1, end=2))
    assert store.bytes <= one * 4 + 16 and 3 <= len(store) <= 4
    assert [s["span_id"][:2] for s in store.spans()][-1] == "s9"


def test_a_span_seen_again_replaces_the_stored_one_and_its_bytes() -> None:
    store = SpanStore(max_spans=10)
    store.add(mk("t", "s", start=1, end=0))  # pending snapshot
    before = store.bytes
    store.add(mk("t", "s", start=1, end=5, attributes=[["k", "v" * 50]]))
    assert len(store) == 1 and store.bytes > before
    assert store.trace("t".ljust(32, "0"))[0]["end_time_unix_nano"] == 5


def test_retention_drops_old_spans_on_fake_time() -> None:
    store = SpanStore(max_spans=100)
    store.add(mk("a", "1", start=10 * S, end=11 * S))
    store.add(mk("b", "2", start=20 * S, end=21 * S))
    assert store.expire(now_ns=30 * S, max_age_ns=15 * S) == 1
    assert [s["span_id"][:1] for s in store.spans()] == ["2"]
    assert store.expire(now_ns=30 * S, max_age_ns=15 * S) == 0


# -- trace queries --------------------------------------------------------------------------------


def test_tree_nests_children_and_orphans_count_as_roots() -> None:
    store = SpanStore(max_spans=100)
    store.add(mk("t", "root", start=1, end=9))
    store.add(mk("t", "kid", parent="root", start=2, end=3))
    store.add(mk("t", "grand", parent="kid", start=2, end=3))
    store.add(mk("t", "orphan", parent="gone", start=5, end=6))
    roots = trace_tree(store, {"trace_id": "t".ljust(32, "0")})["roots"]
    assert [r["span_id"][:6] for r in roots] == ["root00", "orphan"]
    (kid,) = roots[0]["children"]
    assert [g["span_id"][:5] for g in kid["children"]] == ["grand"]
    rows = list_traces(store, {}, now_ns=10)["spans"]
    assert [r["span_id"][:4] for r in rows] == ["root"]  # one row per trace


def test_list_hides_internal_traces_and_marks_pending_rows() -> None:
    store = SpanStore(max_spans=100)
    store.add(mk("a", "1", name="engine::functions::list", start=1, end=2))
    store.add(mk("b", "2", name="checkout", start=3, end=0))
    rows = list_traces(store, {}, now_ns=10 * MS)["spans"]
    assert [(r["name"], r.get("pending")) for r in rows] == [("checkout", True)]
    assert list_traces(store, {"include_internal": True}, now_ns=10)["total"] == 2
    slow = list_traces(store, {"min_duration_ms": 5}, now_ns=10 * MS)  # pending: time so far
    assert slow["total"] == 1


def test_list_time_window_overlap_and_search_all_spans() -> None:
    store = SpanStore(max_spans=100)
    store.add(mk("a", "1", name="root", start=100 * MS, end=200 * MS))
    store.add(mk("a", "2", parent="1", name="db.query", start=150 * MS, end=160 * MS))
    assert list_traces(store, {"start_time": 190, "end_time": 300}, now_ns=0)["total"] == 1
    assert list_traces(store, {"start_time": 201}, now_ns=0)["total"] == 0
    assert list_traces(store, {"name": "db"}, now_ns=0)["total"] == 0
    assert list_traces(store, {"name": "db", "search_all_spans": True}, now_ns=0)["total"] == 1


def test_group_by_counts_traces_spans_and_errors_newest_first() -> None:
    store = SpanStore(max_spans=100)
    store.add(mk("a", "1", start=1 * MS, end=2 * MS, attributes=[["route", "/a"]]))
    store.add(mk("b", "2", start=5 * MS, end=9 * MS, status="error", attributes=[["route", "/b"]]))
    store.add(mk("c", "3", start=6 * MS, end=7 * MS, attributes=[["route", "/b"]]))
    groups = group_by(store, {"attribute": "route"}, now_ns=0)["groups"]
    assert [g["value"] for g in groups] == ["/b", "/a"]
    assert (groups[0]["span_count"], groups[0]["error_count"], len(groups[0]["trace_ids"])) == (
        2,
        1,
        2,
    )
    assert groups[0]["duration_ms"] == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"limit": -1}, "`limit`"),
        ({"attributes": [["k"]]}, "`attributes`"),
        ({"trace_ids": "x"}, "`trace_ids`"),
        ({"min_duration_ms": "slow"}, "`min_duration_ms`"),
        ("nope", "expected an object"),
    ],
)
def test_bad_trace_queries_raise_deserialization_errors(data: Any, text: str) -> None:
    with pytest.raises(FunctionError) as info:
        list_traces(SpanStore(max_spans=1), data, now_ns=0)
    assert info.value.code == "deserialization_error" and text in info.value.message


# -- logs -----------------------------------------------------------------------------------------


def test_log_store_bounded_by_count_and_retention_on_fake_time() -> None:
    store = LogStore(max_count=3, retention_seconds=10)
    for i in range(5):
        store.add(log_record("info", {"message": f"m{i}"}, now_ns=i * S), now_ns=i * S)
    assert [r["body"] for r in store.newest_first(4 * S)] == ["m4", "m3", "m2"]
    assert [r["body"] for r in store.newest_first(13 * S)] == ["m4", "m3"]  # m2 is 11 s old
    assert list(store.newest_first(100 * S)) == []


def test_log_records_of_each_level_and_the_list_filters() -> None:
    store = LogStore(max_count=100, retention_seconds=3600)
    for i, level in enumerate(("trace", "debug", "info", "warn", "error")):
        store.add(log_record(level, {"message": level, "trace_id": "t"}, now_ns=i * MS), i * MS)
    out = list_logs(store, {"severity_min": 9}, now_ns=10 * MS)
    assert [(r["severity_text"], r["severity_number"]) for r in out["logs"]] == [
        ("ERROR", 17),
        ("WARN", 13),
        ("INFO", 9),
    ]
    assert out["query"] == {"severity_min": 9} and out["total"] == 3
    assert list_logs(store, {"severity_text": "warn"}, now_ns=0)["total"] == 1
    page = list_logs(store, {"offset": 1, "limit": 1, "start_time": 1, "end_time": 3}, now_ns=0)
    assert (page["total"], [r["body"] for r in page["logs"]]) == (3, ["info"])
    assert list_logs(None, {"limit": 1}, now_ns=5 * MS) == {"logs": [], "total": 0, "timestamp": 5}


def test_a_log_without_message_is_refused() -> None:
    with pytest.raises(FunctionError) as info:
        log_record("warn", {"data": 1}, now_ns=0)
    assert info.value.message.endswith("missing field `message`")


# -- metrics --------------------------------------------------------------------------------------


def test_metric_store_bounded_by_count_and_retention() -> None:
    store = MetricStore(max_count=2, retention_seconds=10)
    for i in range(3):
        store.add({"name": f"m{i}", "timestamp_unix_nano": i, "data_points": []}, i * S)
    assert [r["name"] for r in store.records(2 * S)] == ["m1", "m2"]
    assert [r["name"] for r in store.records(12 * S)] == ["m2"]


def test_engine_metrics_read_the_bus_red_figures() -> None:
    stats = {
        "functions": [
            {
                "function_id": "a",
                "count": 900,
                "errors": 90,
                "p50_ms": 2.0,
                "p95_ms": 4.0,
                "p99_ms": 8.0,
            },
            {
                "function_id": "b",
                "count": 100,
                "errors": 10,
                "p50_ms": 12.0,
                "p95_ms": 14.0,
                "p99_ms": 18.0,
            },
            {"function_id": "iii-observability::ingest", "count": 50, "errors": 0},
        ],  # fmt: skip
        "workers": [{"worker_id": "w", "name": "n", "count": 1000, "errors": 100}],
    }
    counts = WorkerCounts()
    counts.event({"event": "worker_connected"})
    counts.event({"event": "worker_disconnected"})
    out = engine_metrics(stats, active_workers=3, counts=counts)
    assert out["invocations"] == {
        "total": 1000,
        "success": 900,
        "error": 100,
        "deferred": 0,
        "by_function": {"a": 900, "b": 100},
    }
    assert out["workers"] == {"spawns": 1, "deaths": 1, "active": 3}
    assert out["performance"]["p50_duration_ms"] == pytest.approx(3.0)
    assert out["performance"]["p99_duration_ms"] == pytest.approx(9.0)
    result = list_metrics(None, {}, out, now_ns=7 * MS)
    assert set(result) == {"engine_metrics", "sdk_metrics", "timestamp"}


def test_metrics_list_window_name_and_overflow() -> None:
    store = MetricStore(max_count=10, retention_seconds=3600)
    now = 1_000 * S
    for name, at in (("cpu", 10 * S), ("mem", 20 * S), ("cpu", 30 * S)):
        point = {"value": at // S, "time_unix_nano": at, "attributes": {}}
        record = {"name": name, "timestamp_unix_nano": at, "data_points": [point]}
        store.add(record, now)
    out = list_metrics(store, {"metric_name": "cpu", "start_time": 15_000}, {}, now_ns=now)
    assert [r["timestamp_unix_nano"] for r in out["sdk_metrics"]] == [30 * S]
    agg = list_metrics(store, {"aggregate_interval": 60}, {}, now_ns=now)["aggregated_metrics"]
    assert {(a["metric_name"], a["count"]) for a in agg} == {("cpu", 2), ("mem", 1)}
    with pytest.raises(FunctionError) as info:
        list_metrics(store, {"end_time": 10**19}, {}, now_ns=now)
    assert info.value.code == "time_value_overflow"


# -- OTLP/JSON ------------------------------------------------------------------------------------


def test_spans_logs_and_metrics_decode_from_otlp_json() -> None:
    kv = [{"key": "service.name", "value": {"stringValue": "api"}}]
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": kv},
                "scopeSpans": [
                    {
                        "scope": {"name": "sc", "version": "2"},
                        "spans": [
                            {
                                "traceId": "AAAAAAAAAAAAAAAAAAAAAQ==",  # base64, as protobuf JSON
                                "spanId": "00000000000000AB",
                                "name": "GET",
                                "startTimeUnixNano": "5",
                                "endTimeUnixNano": "9",
                                "status": {"code": "STATUS_CODE_ERROR", "message": "x"},
                                "attributes": [
                                    {"key": "n", "value": {"intValue": "3"}},
                                    {"key": "b", "value": {"boolValue": True}},
                                ],
                            },
                            {"traceId": "zz", "spanId": "1"},  # unreadable: skipped
                        ],
                    }
                ],
            }
        ]
    }
    (s,) = spans_of(body)
    assert (s["trace_id"], s["span_id"]) == ("0" * 31 + "1", "00000000000000ab")
    assert (s["status"], s["status_description"], s["service_name"]) == ("error", "x", "api")
    assert s["attributes"] == [["n", "3"], ["b", "true"]]
    assert (s["instrumentation_scope_name"], s["instrumentation_scope_version"]) == ("sc", "2")
    logs = {"resourceLogs": [{"resource": {"attributes": kv}, "scopeLogs": [
        {"logRecords": [{"severityNumber": 17, "severityText": "ERROR",
                         "body": {"kvlistValue": {"values": [{"key": "a", "value": {
                             "doubleValue": 1.5}}]}}}]}]}]}  # fmt: skip
    (record,) = logs_of(logs, now_ns=77)
    assert (record["body"], record["timestamp_unix_nano"], record["service_name"]) == (
        {"a": 1.5},
        77,
        "api",
    )
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "h", "histogram": {"dataPoints": [{"count": "2", "sum": 3, "bucketCounts": ["1", "1"],
                                                    "explicitBounds": [1.0], "timeUnixNano": "4"}]}},
        {"name": "no-data"}]}]}]}  # fmt: skip
    (m,) = metrics_of(metrics, now_ns=1)
    assert (m["type"], m["data_points"][0]["count"], m["data_points"][0]["bucket_counts"]) == (
        "histogram",
        2,
        [1, 1],
    )
    assert hex_id(None, 16) == "" and spans_of({"resourceSpans": "bad"}) == []


# -- settings -------------------------------------------------------------------------------------


def test_the_seed_and_the_env_fallbacks() -> None:
    seeded = resolve(parse_config(DEFAULTS), {})
    assert (seeded.enabled, seeded.exporter, seeded.memory_max_spans) == (True, "memory", 1000000)
    bare = resolve(parse_config({"service_name": "x"}), {})
    assert (bare.enabled, bare.exporter, bare.metrics_enabled, bare.memory_max_spans) == (
        False,
        "otlp",
        False,
        1000,
    )
    env = {
        "OTEL_ENABLED": "1",
        "OTEL_EXPORTER_TYPE": "both",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_MEMORY_MAX_SPANS": "50",
    }
    from_env = resolve(parse_config({"service_name": "x"}), env)
    assert (from_env.enabled, from_env.exporter, from_env.protocol) == (True, "both", "http")
    assert (from_env.endpoint, from_env.memory_max_spans) == ("http://col:4317", 50)
    assert resolve(parse_config({"enabled": False}), env).enabled is False  # the block wins


def test_archive_limits_are_clamped() -> None:
    s = resolve(parse_config({"trace_storage": {"max_disk_bytes": 1, "retention_seconds": 0}}), {})
    assert s.archive is not None
    assert (s.archive.max_disk_bytes, s.archive.retention_seconds) == (MIN_DISK_BYTES, 2_592_000)
    assert resolve(parse_config({"trace_storage": {"enabled": False}}), {}).archive is None
    # The hot store is bounded by bytes with or without the archive.
    assert resolve(parse_config({}), {}).memory_max_bytes == 268_435_456
    small = parse_config({"trace_storage": {"enabled": False, "memory_max_bytes": 1}})
    assert resolve(small, {}).memory_max_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("endpoint", "signal", "url"),
    [
        ("http://localhost:4317", "logs", "http://localhost:4318/v1/logs"),
        ("http://col:9000", "traces", "http://col:9000/v1/traces"),
        ("col:4317", "metrics", "http://col:4318/v1/metrics"),
        ("https://col/base/", "logs", "https://col/base/v1/logs"),
        ("http://col:4318/v1/traces", "traces", "http://col:4318/v1/traces"),
    ],
)
def test_otlp_http_urls_follow_the_port_rule(endpoint: str, signal: str, url: str) -> None:
    assert http_endpoint(endpoint, signal) == url
