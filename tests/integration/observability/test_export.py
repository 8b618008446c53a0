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
