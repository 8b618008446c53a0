"""iii-observability through the official SDK: telemetry ingestion (SDK-sent spans, raw OTLP/
MTRC/LOGS frames on ``/otel`` and ``/``), the §10.2 shapes, log and trace triggers, bad input,
and a telemetry flood that must not stall invocations.

One engine for the module, started with no observability block (the built-in seed: enabled,
memory exporters).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observability.helpers import (
    call,
    frame,
    logs_body,
    metrics_body,
    new_span_id,
    new_trace_id,
    span,
    telemetry_socket,
    traces_body,
    wait_ready,
)
from tests.support import (
    EngineProcess,
    WorkerProcess,
    engine_fixture,
    require_sdk025,
    sdk_client,
    wait_for,
)

SPAN_KEYS = {
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status",
    "attributes",
    "service_name",
    "events",
    "links",
}
LOG_KEYS = {
    "timestamp_unix_nano",
    "observed_timestamp_unix_nano",
    "severity_number",
    "severity_text",
    "body",
    "attributes",
    "trace_id",
    "span_id",
    "resource",
    "service_name",
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    yield from engine_fixture(tmp_path_factory.mktemp("obs"), {"workers": []})


@pytest.fixture(scope="module")
def client(engine: EngineProcess) -> Iterator[Any]:
    c = sdk_client(engine.url, "obs-test")
    wait_ready(c)
    try:
        yield c
    finally:
        c.shutdown()


def tree(client: Any, trace_id: str) -> list[dict[str, Any]]:
    return call(client, "engine::traces::tree", {"trace_id": trace_id})["roots"]


def flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(flatten(node["children"]))
    return out


# -- ingestion ------------------------------------------------------------------------------------


WORKER = """
import os, sys, time
from iii import InitOptions, register_worker
c = register_worker(os.environ["III_URL"], InitOptions(worker_name="otel-worker"))
c.register_function(os.environ["FUNCTION_ID"], lambda data: {"hello": data.get("name")})
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("sdk", ["0.23", "0.25"])
def test_spans_of_an_sdk_worker_with_otel_enabled_arrive(
    engine: EngineProcess, client: Any, tmp_path: Path, sdk: str
) -> None:
    python = require_sdk025() if sdk == "0.25" else None
    fid = f"otel::hello-{sdk}"
    worker = WorkerProcess(
        WORKER, tmp_path, engine.url, python=python, OTEL_ENABLED="true", FUNCTION_ID=fid
    )
    try:
        wait_for(lambda: "ready" in worker.output(), timeout=20)
        wait_for(lambda: fid in functions(client), timeout=10)
        assert call(client, fid, {"name": "ada"}) == {"hello": "ada"}

        def executed() -> list[dict[str, Any]]:
            trees = [
                flatten(tree(client, row["trace_id"]))
                for row in call(client, "engine::traces::list", {"name": fid})["spans"]
            ]
            # the SDK's own span ("execute <id>", its service name), not only the engine's
            return [s for spans in trees for s in spans if s["name"] == f"execute {fid}"]

        (sdk_span,) = wait_for(executed, timeout=20, interval=0.3)
        assert SPAN_KEYS <= set(sdk_span) and sdk_span["status"] == "ok"
        assert sdk_span["service_name"] != "iii"  # the worker's resource, not the engine's
        assert sdk_span["end_time_unix_nano"] > sdk_span["start_time_unix_nano"]
    finally:
        worker.stop()


def functions(client: Any) -> set[str]:
    result = call(client, "engine::functions::list", {})
    return {f["function_id"] for f in result["functions"]}


@pytest.mark.parametrize("path", ["/otel", "/"])
def test_raw_frames_reach_the_stores(engine: EngineProcess, client: Any, path: str) -> None:
    trace_id, root_id, child_id = new_trace_id(), new_span_id(), new_span_id()
    metric = f"test.gauge.{path.strip('/') or 'main'}"
    message = f"frame log on {path}"
    spans = [
        span(trace_id, root_id, "GET /orders", duration_ms=20, route="/orders"),
        span(trace_id, child_id, "db.query", parent=root_id, status=2, table="orders"),
    ]
    with telemetry_socket(engine.url, path) as ws:
        ws.send("text frames are ignored")
        ws.send(b"JUNK" + b"{}")  # another prefix: dropped
        ws.send(frame(b"OTLP", traces_body(spans)))
        ws.send(frame(b"LOGS", logs_body(message)))
        ws.send(frame(b"MTRC", metrics_body(metric, 42.5)))
        ws.ping()

    roots = wait_for(lambda: tree(client, trace_id), timeout=10)
    assert [r["span_id"] for r in roots] == [root_id]
    (child,) = roots[0]["children"]
    assert (child["span_id"], child["parent_span_id"], child["status"]) == (
        child_id,
        root_id,
        "error",
    )
    assert child["status_description"] == "boom"
    assert ["table", "orders"] in child["attributes"]
    assert roots[0]["service_name"] == "frames-test"

    def logged() -> list[dict[str, Any]]:
        return [
            r
            for r in call(client, "engine::logs::list", {"severity_text": "warn"})["logs"]
            if r["body"] == message
        ]

    (record,) = wait_for(logged, timeout=10)
    assert LOG_KEYS <= set(record)
    assert (record["severity_number"], record["attributes"]) == (13, {"origin": "frame"})

    def measured() -> list[dict[str, Any]]:
        return call(client, "engine::metrics::list", {"metric_name": metric})["sdk_metrics"]

    (m,) = wait_for(measured, timeout=10)
    assert (m["type"], m["data_points"][0]["value"], m["service_name"]) == (
        "gauge",
        42.5,
        "frames-test",
    )


# -- the §10.2 shapes -----------------------------------------------------------------------------


def test_log_functions_store_records_with_the_documented_shape(client: Any) -> None:
    tag = f"shape-{time.monotonic_ns()}"
    for level in ("trace", "debug", "info", "warn", "error"):
        assert call(client, f"engine::log::{level}", {"message": f"{tag} {level}"}) is None
    call(
        client,
        "engine::log::info",
        {"message": f"{tag} rich", "data": {"order": 7}, "trace_id": "t1", "span_id": "s1"},
    )
    result = call(client, "engine::logs::list", {"severity_min": 13, "limit": 50})
    assert set(result) == {"logs", "total", "query", "timestamp"}
    assert result["query"] == {"severity_min": 13, "limit": 50}
    mine = [r for r in result["logs"] if r["body"].startswith(tag)]
    assert [(r["severity_text"], r["severity_number"]) for r in mine] == [
        ("ERROR", 17),
        ("WARN", 13),
    ]  # newest first, severity_min inclusive
    (rich,) = call(client, "engine::logs::list", {"trace_id": "t1", "span_id": "s1"})["logs"]
    assert set(rich) == LOG_KEYS
    assert (rich["body"], rich["attributes"], rich["service_name"]) == (
        f"{tag} rich",
        {"order": 7},
        "unknown",
    )
    page = call(client, "engine::logs::list", {"offset": 1, "limit": 2})
    assert len(page["logs"]) == 2 and page["total"] >= 6


def test_traces_list_filters_sorts_and_pages(engine: EngineProcess, client: Any) -> None:
    service = f"svc-{time.monotonic_ns()}"
    ids = [new_trace_id() for _ in range(3)]
    base = time.time_ns()
    spans = [
        span(ids[0], new_span_id(), "checkout", start_ns=base, duration_ms=30, tier="gold"),
        span(ids[1], new_span_id(), "checkout", start_ns=base + 1000, duration_ms=10, tier="free"),
        span(ids[2], new_span_id(), "refund", start_ns=base + 2000, duration_ms=20, status=2),
    ]
    with telemetry_socket(engine.url) as ws:
        ws.send(frame(b"OTLP", traces_body(spans, service=service)))
    q = {"service_name": service}
    wait_for(lambda: call(client, "engine::traces::list", q)["total"] == 3, timeout=10)
    result = call(client, "engine::traces::list", {**q, "sort_by": "duration", "limit": 2})
    assert set(result) == {"spans", "total", "offset", "limit", "storage"}
    assert (result["total"], result["offset"], result["limit"]) == (3, 0, 2)
    assert [s["trace_id"] for s in result["spans"]] == [ids[1], ids[2]]
    desc = call(client, "engine::traces::list", {**q, "sort_order": "desc"})["spans"]
    assert [s["trace_id"] for s in desc] == [ids[2], ids[1], ids[0]]
    assert [
        s["trace_id"] for s in call(client, "engine::traces::list", {**q, "status": "ERR"})["spans"]
    ] == [ids[2]]
    gold = call(client, "engine::traces::list", {**q, "attributes": [["tier", "gold"]]})
    assert [s["trace_id"] for s in gold["spans"]] == [ids[0]]
    not_free = call(client, "engine::traces::list", {**q, "exclude_attributes": [["tier", "free"]]})
    assert {s["trace_id"] for s in not_free["spans"]} == {ids[0], ids[2]}
    slow = call(client, "engine::traces::list", {**q, "min_duration_ms": 15})
    assert {s["trace_id"] for s in slow["spans"]} == {ids[0], ids[2]}
    groups = call(client, "engine::traces::group_by", {"attribute": "tier"})["groups"]
    by_value = {g["value"]: g for g in groups if set(g["trace_ids"]) & set(ids)}
    assert set(by_value) == {"gold", "free"}
    assert set(by_value["gold"]) == {
        "value",
        "label",
        "trace_ids",
        "span_count",
        "first_seen_ms",
        "last_seen_ms",
        "duration_ms",
        "error_count",
    }
    assert by_value["gold"]["trace_ids"] == [ids[0]]


def test_health_and_sampling_shapes(client: Any) -> None:
    health = call(client, "engine::health::check", {})
    assert set(health) == {"status", "components", "timestamp", "version"}
    assert health["status"] == "healthy"
    assert set(health["components"]) == {"otel", "metrics", "logs", "spans"}
    assert health["components"]["otel"]["details"]["exporter"] == "Some(Memory)"
    assert {"stored_spans", "hot_bytes", "archive"} <= set(health["components"]["spans"]["details"])
    rules = call(client, "engine::sampling::rules", {})
    assert rules["traces"]["default_ratio"] == 1.0 and rules["logs"] == {"sampling_ratio": 1.0}
    metrics = call(client, "engine::metrics::list", {})
    assert set(metrics["engine_metrics"]) >= {"invocations", "workers", "performance"}
    assert set(metrics["engine_metrics"]["invocations"]) == {
        "total",
        "success",
        "error",
        "deferred",
        "by_function",
    }


@pytest.mark.parametrize(
    ("function_id", "payload", "code", "text"),
    [
        ("engine::traces::tree", {}, "deserialization_error", "missing field `trace_id`"),
        ("engine::traces::list", {"limit": "ten"}, "deserialization_error", "`limit`"),
        ("engine::traces::group_by", {}, "deserialization_error", "missing field `attribute`"),
        ("engine::logs::list", {"severity_min": "x"}, "deserialization_error", "severity_min"),
        ("engine::log::info", {"data": 1}, "deserialization_error", "missing field `message`"),
        (
            "engine::metrics::list",
            {"start_time": 10**19},
            "time_value_overflow",
            "out of range",
        ),
    ],
)
def test_bad_input_gets_a_clear_error_and_the_actor_keeps_serving(
    client: Any, function_id: str, payload: Any, code: str, text: str
) -> None:
    with pytest.raises(Exception) as info:
        call(client, function_id, payload)
    assert code in str(info.value) and text in str(info.value)
    assert call(client, "engine::health::check", {})["status"] == "healthy"


# -- trigger types --------------------------------------------------------------------------------


def test_log_trigger_fires_for_its_level_only(client: Any) -> None:
    got: list[Any] = []
    fid = f"obs::on-warn-{time.monotonic_ns()}"
    client.register_function(fid, lambda data: got.append(data))
    trigger = client.register_trigger(
        {"type": "log", "function_id": fid, "config": {"level": "warn"}}
    )
    try:
        time.sleep(0.3)  # the binding reaches the actor
        tag = f"trig-{time.monotonic_ns()}"
        call(client, "engine::log::info", {"message": f"{tag} info"})
        call(client, "engine::log::warn", {"message": f"{tag} warn", "data": {"k": "v"}})
        wait_for(lambda: any(d.get("body") == f"{tag} warn" for d in got), timeout=10)
        time.sleep(0.3)
        mine = [d for d in got if str(d.get("body", "")).startswith(tag)]
        assert [d["severity_text"] for d in mine] == ["WARN"]
        assert LOG_KEYS <= set(mine[0]) and mine[0]["attributes"] == {"k": "v"}
    finally:
        trigger.unregister()


def test_trace_trigger_gets_the_changed_trace_ids(engine: EngineProcess, client: Any) -> None:
    got: list[Any] = []
    fid = f"obs::on-trace-{time.monotonic_ns()}"
    service = f"watched-{time.monotonic_ns()}"
    client.register_function(fid, lambda data: got.append(data))
    trigger = client.register_trigger(
        {
            "type": "trace",
            "function_id": fid,
            "config": {"service_name": service, "status": "error"},
        }
    )
    try:
        time.sleep(0.3)
        failing, fine, other = new_trace_id(), new_trace_id(), new_trace_id()
        with telemetry_socket(engine.url) as ws:
            ws.send(
                frame(b"OTLP", traces_body([span(failing, new_span_id(), "x", status=2)], service))
            )
            ws.send(
                frame(b"OTLP", traces_body([span(fine, new_span_id(), "y", status=1)], service))
            )
            ws.send(frame(b"OTLP", traces_body([span(other, new_span_id(), "z", status=2)])))
        wait_for(lambda: got, timeout=10)
        time.sleep(0.5)
        ids = [tid for d in got for tid in d["trace_ids"]]
        assert ids == [failing]
    finally:
        trigger.unregister()


def test_a_trace_trigger_does_not_fire_on_its_own_deliveries(
    engine: EngineProcess, client: Any
) -> None:
    got: list[Any] = []
    fid = f"obs::on-any-trace-{time.monotonic_ns()}"

    def seen(data: Any) -> dict[str, bool]:
        got.append(data)
        return {"seen": True}

    client.register_function(fid, seen)
    trigger = client.register_trigger({"type": "trace", "function_id": fid, "config": {}})
    try:
        time.sleep(0.3)
        trace_id = new_trace_id()
        with telemetry_socket(engine.url) as ws:
            ws.send(frame(b"OTLP", traces_body([span(trace_id, new_span_id(), "once")])))
        wait_for(lambda: any(trace_id in d["trace_ids"] for d in got), timeout=10)
        settled = len(got)
        time.sleep(1.5)  # five ticks: each delivery's own spans would have fired one more
        assert len(got) == settled, got[settled:]
    finally:
        trigger.unregister()


def test_traces_clear_empties_the_store(engine: EngineProcess, client: Any) -> None:
    trace_id = new_trace_id()
    with telemetry_socket(engine.url) as ws:
        ws.send(frame(b"OTLP", traces_body([span(trace_id, new_span_id(), "gone")])))
    wait_for(lambda: tree(client, trace_id), timeout=10)
    assert call(client, "engine::traces::clear", {}) == {"success": True}
    assert tree(client, trace_id) == []
    assert call(client, "engine::traces::list", {})["total"] == 0


# -- a flood of telemetry -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/otel", "/"])
def test_a_telemetry_flood_never_stalls_invocations(
    engine: EngineProcess, client: Any, path: str
) -> None:
    fid = f"obs::ping-{path.strip('/') or 'main'}"
    client.register_function(fid, lambda data: {"pong": True})
    wait_for(lambda: fid in functions(client), timeout=10)
    big = frame(
        b"OTLP",
        traces_body([span(new_trace_id(), new_span_id(), f"flood {i}") for i in range(20)]),
    )
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        with telemetry_socket(engine.url, path) as ws:
            while not stop.is_set():
                ws.send(big)
                sent[0] += 1

    def drop_reports() -> int:
        return engine.log_text().count("telemetry frames dropped")

    before = drop_reports()
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sent[0] > 200, timeout=10)
        worst = 0.0
        for _ in range(50):
            began = time.monotonic()
            assert call(client, fid, {}) == {"pong": True}
            worst = max(worst, time.monotonic() - began)
        # Drops are reported at most every 5 s: the flood goes on until this one's report.
        wait_for(lambda: drop_reports() > before, timeout=15, interval=0.2)
    finally:
        stop.set()
        thread.join(10)
    assert worst < 1.0, f"a call took {worst:.3f}s during the flood"
    assert call(client, "engine::health::check", {})["status"] == "healthy"
