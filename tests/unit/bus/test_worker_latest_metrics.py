"""``engine::workers::info.latest_metrics`` from the ``iii.worker.*`` gauges of MTRC frames:
matched by the ``worker.id`` attribute (a ``/otel`` frame has no worker) or by the frame's own
connection, merged field by field, absent until a sample arrived, gone with the connection."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from manifests.blocks.observability import INGEST_FUNCTION_ID
from supervisor.engine.bus import Bus
from supervisor.engine.runner import build_bus
from supervisor.engine.telemetry import TelemetryForwarder
from supervisor.engine.workermetrics import worker_samples
from tests.unit.bus.test_routing import Clock, Worker
from transport import messages as m


@pytest.fixture
def bus() -> Bus:
    return build_bus(clock=Clock(), invocation_deadline=60.0)


def gauge(name: str, value: float, worker_id: str | None, t_ms: int = 1000) -> dict[str, Any]:
    attrs = [{"key": "worker.id", "value": {"stringValue": worker_id}}] if worker_id else []
    point = {"attributes": attrs, "timeUnixNano": str(t_ms * 1_000_000), "asDouble": value}
    return {"name": name, "unit": "1", "gauge": {"dataPoints": [point]}}


def body(*metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceMetrics": [
            {"resource": {"attributes": []}, "scopeMetrics": [{"metrics": list(metrics)}]}
        ]
    }


def test_worker_gauges_become_named_fields_per_worker_id() -> None:
    samples = worker_samples(
        body(
            gauge("iii.worker.memory.rss", 123.0, "w1", t_ms=5000),
            gauge("iii.worker.cpu.percent", 2.5, "w1", t_ms=6000),
            gauge("iii.worker.uptime_seconds", 9.0, "w2"),
            gauge("app.requests", 7.0, "w1"),  # not a worker gauge
            gauge("iii.worker.unknown", 1.0, "w1"),
        ),
        None,
    )
    assert samples == {
        "w1": {"memory_rss": 123.0, "cpu_percent": 2.5, "timestamp_ms": 6000},
        "w2": {"uptime_seconds": 9.0, "timestamp_ms": 1000},
    }


def test_a_point_without_worker_id_belongs_to_the_frames_connection() -> None:
    assert worker_samples(body(gauge("iii.worker.memory.vms", 5.0, None)), "conn-1") == {
        "conn-1": {"memory_vms": 5.0, "timestamp_ms": 1000}
    }
    assert worker_samples(body(gauge("iii.worker.memory.vms", 5.0, None)), None) == {}


def info(bus: Bus, caller: Worker, name: str) -> Any:
    inv = caller.call("engine::workers::info", {"name": name})
    [result] = [r for r in caller.of(m.InvocationResult) if r.invocation_id == inv]
    return result.result


def test_workers_info_shows_the_merged_sample_of_a_connected_worker(bus: Bus) -> None:
    actor = Worker(bus, "iii-observability")
    actor.register(INGEST_FUNCTION_ID)
    sdk = Worker(bus, "gauges")
    fwd = TelemetryForwarder(bus)
    assert "latest_metrics" not in info(bus, sdk, "gauges")["worker"]
    wid = sdk.conn.worker_id
    frame = b"MTRC" + orjson.dumps(body(gauge("iii.worker.memory.rss", 10.0, wid)))
    assert fwd.offer(frame, None) is True  # as on a /otel socket: no connection of its own
    fwd.offer(b"MTRC" + orjson.dumps(body(gauge("iii.worker.cpu.percent", 1.5, wid))), None)
    assert info(bus, sdk, "gauges")["worker"]["latest_metrics"] == {
        "memory_rss": 10.0,
        "cpu_percent": 1.5,
        "timestamp_ms": 1000,
    }
    fwd.offer(b"MTRC" + orjson.dumps(body(gauge("iii.worker.memory.rss", 1.0, "gone"))), None)
    assert all(c.latest_metrics is None for c in (actor.conn,))  # unknown ids are skipped


def test_nothing_is_derived_while_nobody_ingests(bus: Bus) -> None:
    sdk = Worker(bus, "gauges")
    fwd = TelemetryForwarder(bus)
    frame = b"MTRC" + orjson.dumps(body(gauge("iii.worker.memory.rss", 10.0, sdk.conn.worker_id)))
    assert fwd.offer(frame, None) is False
    assert sdk.conn.latest_metrics is None
