"""OTLP export: traces, metrics and logs reach a real OTLP receiver (tests/.../receiver.py,
decoding with opentelemetry-proto) over OTLP/HTTP and over OTLP/gRPC (logs over HTTP on the
port rule 4317 → 4318); with the collector down the engine serves and stops normally."""

from __future__ import annotations

import socket
import time
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
from tests.integration.observability.receiver import GrpcReceiver, HttpReceiver, Received
from tests.support import EngineProcess, free_port, sdk_client, wait_for


def observability(endpoint: str) -> dict[str, Any]:
    return {
        "workers": [
            {
                "name": "iii-observability",
                "config": {
                    "enabled": True,
                    "exporter": "both",
                    "endpoint": endpoint,
                    "metrics_enabled": True,
                    "metrics_exporter": "otlp",
                    "logs_exporter": "both",
                    "logs_console_output": False,
                },
            }
        ]
    }


def send_all(engine: EngineProcess, client: Any, tag: str) -> str:
    trace_id = new_trace_id()
    with telemetry_socket(engine.url) as ws:
        ws.send(frame(b"OTLP", traces_body([span(trace_id, new_span_id(), f"{tag} span")])))
        ws.send(frame(b"MTRC", metrics_body(f"{tag}.gauge", 3.0)))
        ws.send(frame(b"LOGS", logs_body(f"{tag} frame log")))
    call(client, "engine::log::info", {"message": f"{tag} engine log"})
    return trace_id


def run_export(tmp_path: Path, endpoint: str, protocol: str, received: Received) -> None:
    engine = EngineProcess(
        observability(endpoint), tmp_path, env={"OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    ).start()
    client = sdk_client(engine.url)
    try:
        wait_ready(client)
        trace_id = send_all(engine, client, protocol)
        wait_for(lambda: trace_id in received.trace_ids(), timeout=15)
        wait_for(lambda: f"{protocol}.gauge" in received.metric_names(), timeout=15)
        wanted = {f"{protocol} frame log", f"{protocol} engine log"}
        wait_for(lambda: wanted <= received.log_bodies(), timeout=15)
        assert f"{protocol} span" in received.span_names()
        # The bus's RED metrics (engine::calls::stats) are exported as gauges too: the
        # engine::log::info call above is one of the invocations they count.
        red = {"iii.invocations", "iii.invocation.errors", "iii.invocation.duration.p99"}
        wait_for(lambda: red <= received.metric_names(), timeout=15)
        assert "engine::log::info" in received.metric_attribute("iii.invocations", "function_id")
    finally:
        client.shutdown()
        assert engine.stop() == 0


def test_traces_metrics_and_logs_arrive_over_otlp_http(tmp_path: Path) -> None:
    port = free_port()
    received = Received()
    with HttpReceiver(received, port):
        run_export(tmp_path, f"http://127.0.0.1:{port}", "http/protobuf", received)
    assert received.via == {"traces": {"http"}, "metrics": {"http"}, "logs": {"http"}}


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the receivers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_traces_and_metrics_arrive_over_otlp_grpc_and_logs_over_http_on_4318(
    tmp_path: Path,
) -> None:
    if not (_free(4317) and _free(4318)):
        pytest.skip("ports 4317/4318 are taken on this machine")
    received = Received()
    with GrpcReceiver(received, 4317), HttpReceiver(received, 4318):
        run_export(tmp_path, "http://127.0.0.1:4317", "grpc", received)
    assert received.via == {"traces": {"grpc"}, "metrics": {"grpc"}, "logs": {"http"}}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_with_the_collector_down_the_engine_serves_and_stops_normally(
    tmp_path: Path, protocol: str
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    engine = EngineProcess(
        observability(endpoint), tmp_path, env={"OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    ).start()
    client = sdk_client(engine.url)
    try:
        wait_ready(client)
        client.register_function("down::echo", lambda data: {"i": data["i"]})
        for i in range(5):
            send_all(engine, client, f"down{i}")
            began = time.monotonic()
            assert call(client, "down::echo", {"i": i}) == {"i": i}
            assert call(client, "engine::traces::list", {"limit": 1})["total"] >= 1
            assert time.monotonic() - began < 1.0

        def failed() -> Any:
            otel = call(client, "engine::health::check", {})["components"]["otel"]
            return otel["details"]["otlp"]["failed"]["traces"]

        wait_for(failed, timeout=20, interval=0.5)
    finally:
        client.shutdown()
        began = time.monotonic()
        assert engine.stop() == 0
        assert time.monotonic() - began < 10


def _log_batches(received: Received) -> list[list[str]]:
    with received.lock:
        return [
            [lr.body.string_value for rl in r.resource_logs for sl in rl.scope_logs
             for lr in sl.log_records]
            for r in received.requests["logs"]
        ]  # fmt: skip


def test_logs_batch_size_and_flush_interval_shape_the_log_export(tmp_path: Path) -> None:
    """Logs go out in batches of ``logs_batch_size`` when a batch is full, else after
    ``logs_flush_interval_ms``; both change at runtime with configuration::set (rebuild tier)."""
    port = free_port()
    received = Received()
    block = {
        "enabled": True,
        "exporter": "memory",
        "endpoint": f"http://127.0.0.1:{port}",
        "logs_exporter": "otlp",
        "logs_console_output": False,
        "logs_batch_size": 3,
        "logs_flush_interval_ms": 3_600_000,
    }
    config = {"workers": [{"name": "iii-observability", "config": block}]}
    with HttpReceiver(received, port):
        engine = EngineProcess(
            config, tmp_path, env={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        )
        engine.start()
        client = sdk_client(engine.url)
        try:
            wait_ready(client)
            for i in range(2):
                call(client, "engine::log::info", {"message": f"held {i}"})
            time.sleep(2.0)  # several flush ticks: an unfilled batch waits for the interval
            assert _log_batches(received) == []
            call(client, "engine::log::info", {"message": "held 2"})
            wait_for(lambda: _log_batches(received), timeout=10)
            assert _log_batches(received) == [["held 0", "held 1", "held 2"]]
            changed = {**block, "logs_batch_size": 100, "logs_flush_interval_ms": 200}
            call(client, "configuration::set", {"id": "iii-observability", "value": changed})
            wait_for(lambda: "logs_flush_interval_ms" in engine.log_text(), timeout=15)
            call(client, "engine::log::info", {"message": "alone"})
            wait_for(lambda: len(_log_batches(received)) == 2, timeout=10)
            assert _log_batches(received)[1] == ["alone"]  # the interval, not a full batch
        finally:
            client.shutdown()
            assert engine.stop() == 0
