"""OTLP/JSON documents as the SDKs send them, and a raw telemetry socket to send them on."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.support import wait_for


def attrs(**values: Any) -> list[dict[str, Any]]:
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            out.append({"key": key, "value": {"boolValue": value}})
        elif isinstance(value, int):
            out.append({"key": key, "value": {"intValue": str(value)}})
        else:
            out.append({"key": key, "value": {"stringValue": str(value)}})
    return out


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def span(
    trace_id: str,
    span_id: str,
    name: str,
    *,
    parent: str | None = None,
    start_ns: int | None = None,
    duration_ms: float = 5.0,
    status: int = 1,
    **attributes: Any,
) -> dict[str, Any]:
    start = start_ns if start_ns is not None else time.time_ns()
    out: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + int(duration_ms * 1e6)),
        "attributes": attrs(**attributes),
        "events": [],
        "links": [],
        "status": {"code": status, "message": "boom" if status == 2 else ""},
    }
    if parent:
        out["parentSpanId"] = parent
    return out


def traces_body(spans: list[dict[str, Any]], service: str = "frames-test") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs(**{"service.name": service})},
                "scopeSpans": [{"scope": {"name": "test", "version": "1"}, "spans": spans}],
            }
        ]
    }


def logs_body(
    message: str, severity: str = "WARN", number: int = 13, service: str = "frames-test"
) -> dict[str, Any]:
    now = str(time.time_ns())
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": attrs(**{"service.name": service})},
                "scopeLogs": [
                    {
                        "scope": {"name": "test", "version": "1"},
                        "logRecords": [
                            {
                                "timeUnixNano": now,
                                "observedTimeUnixNano": now,
                                "severityNumber": number,
                                "severityText": severity,
                                "body": {"stringValue": message},
                                "attributes": attrs(origin="frame"),
                            }
                        ],
                    }
                ],
            }
        ]
    }


def metrics_body(name: str, value: float, service: str = "frames-test") -> dict[str, Any]:
    now = str(time.time_ns())
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": attrs(**{"service.name": service})},
                "scopeMetrics": [
                    {
                        "scope": {"name": "test", "version": "1"},
                        "metrics": [
                            {
                                "name": name,
                                "description": "a test gauge",
                                "unit": "1",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "attributes": attrs(host="h1"),
                                            "startTimeUnixNano": now,
                                            "timeUnixNano": now,
                                            "asDouble": value,
                                        }
                                    ]
                                },
                            }
                        ],
                    }
                ],
            }
        ]
    }


def frame(prefix: bytes, body: dict[str, Any]) -> bytes:
    return prefix + json.dumps(body).encode()


def telemetry_socket(url: str, path: str = "/otel") -> ClientConnection:
    return connect(url + path, open_timeout=5, close_timeout=2, max_size=None)


def call(client: Any, function_id: str, payload: Any, timeout_ms: int = 10_000) -> Any:
    return client.trigger(
        {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms}
    )


def wait_ready(client: Any, timeout: float = 20.0) -> None:
    """Until the observability actor answers (it starts with the engine)."""

    def answered() -> bool:
        try:
            call(client, "engine::traces::list", {"limit": 1}, timeout_ms=2000)
        except Exception:
            return False
        return True

    wait_for(answered, timeout=timeout, interval=0.2)
