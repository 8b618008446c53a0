"""A small OTLP receiver for the export tests: OTLP/HTTP (protobuf POSTs on /v1/traces,
/v1/metrics, /v1/logs) and OTLP/gRPC (the Trace and Metrics services), decoded with
opentelemetry-proto. What arrived is kept per signal as the decoded protobuf requests."""

from __future__ import annotations

import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc  # type: ignore[import-untyped]  # no stubs installed
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

REQUESTS: dict[str, Any] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
RESPONSES: dict[str, Any] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}


class Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, list[Any]] = {s: [] for s in REQUESTS}
        self.via: dict[str, set[str]] = {s: set() for s in REQUESTS}

    def add(self, signal: str, request: Any, via: str) -> None:
        with self.lock:
            self.requests[signal].append(request)
            self.via[signal].add(via)

    def span_names(self) -> set[str]:
        with self.lock:
            return {
                s.name
                for r in self.requests["traces"]
                for rs in r.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
            }

    def trace_ids(self) -> set[str]:
        with self.lock:
            return {
                s.trace_id.hex()
                for r in self.requests["traces"]
                for rs in r.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
            }

    def metric_names(self) -> set[str]:
        with self.lock:
            return {
                m.name
                for r in self.requests["metrics"]
                for rm in r.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
            }

    def metric_attribute(self, name: str, key: str) -> set[str]:
        """The string values of attribute ``key`` on the data points of gauge ``name``."""
        with self.lock:
            return {
                a.value.string_value
                for r in self.requests["metrics"]
                for rm in r.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
                if m.name == name
                for p in m.gauge.data_points
                for a in p.attributes
                if a.key == key
            }

    def log_bodies(self) -> set[str]:
        with self.lock:
            return {
                lr.body.string_value
                for r in self.requests["logs"]
                for rl in r.resource_logs
                for sl in rl.scope_logs
                for lr in sl.log_records
            }


class HttpReceiver:
    def __init__(self, received: Received, port: int) -> None:
        outer = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                signal = self.path.rstrip("/").rsplit("/", 1)[-1]
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if signal not in REQUESTS:
                    self.send_response(404)
                    self.end_headers()
                    return
                outer.add(signal, REQUESTS[signal].FromString(body), "http")
                reply = RESPONSES[signal]().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC name
        self.received.add("traces", request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC name
        self.received.add("metrics", request, "grpc")
        return metrics_service_pb2.ExportMetricsServiceResponse()


class GrpcReceiver:
    def __init__(self, received: Received, port: int) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(received), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _Metrics(received), self.server
        )
        bound = self.server.add_insecure_port(f"127.0.0.1:{port}")
        if bound != port:
            raise OSError(f"cannot listen on 127.0.0.1:{port}")

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)
