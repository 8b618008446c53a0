"""The trace archive keeps traces across a SIGKILLed observability actor (the supervisor
restarts it), and ``enabled: false`` really turns ingestion off."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.integration.observability.helpers import (
    call,
    frame,
    new_span_id,
    new_trace_id,
    span,
    telemetry_socket,
    traces_body,
    wait_ready,
)
from tests.support import EngineProcess, find_process, sdk_client, wait_for


def archived(client: Any) -> int:
    spans = call(client, "engine::health::check", {})["components"]["spans"]["details"]
    return int(spans["archive"].get("written_spans", 0))


def test_traces_survive_an_actor_restart(tmp_path: Path) -> None:
    config = {
        "workers": [
            {
                "name": "iii-observability",
                "config": {
                    "enabled": True,
                    "exporter": "memory",
                    "trace_storage": {"directory": str(tmp_path / "traces")},
                },
            }
        ]
    }
    engine = EngineProcess(config, tmp_path).start()
    client = sdk_client(engine.url)
    try:
        wait_ready(client)
        trace_id, root, child = new_trace_id(), new_span_id(), new_span_id()
        spans = [span(trace_id, root, "kept"), span(trace_id, child, "kid", parent=root)]
        with telemetry_socket(engine.url) as ws:
            ws.send(frame(b"OTLP", traces_body(spans)))
        wait_for(lambda: archived(client) >= 2, timeout=10, interval=0.2)
        assert engine.proc is not None
        pid = find_process(engine.proc.pid, "actors.observability")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: find_process(engine.proc.pid, "actors.observability") != pid, timeout=15)

        def restored() -> list[dict[str, Any]]:
            try:
                return call(client, "engine::traces::tree", {"trace_id": trace_id})["roots"]
            except Exception:
                return []

        (kept,) = wait_for(restored, timeout=20, interval=0.3)
        assert kept["span_id"] == root and [c["span_id"] for c in kept["children"]] == [child]
        storage = call(client, "engine::traces::list", {"trace_id": trace_id})["storage"]
        assert storage["enabled"] is True and storage["status"] == "ok"
        assert (tmp_path / "traces" / "traces.sqlite3").exists()
    finally:
        client.shutdown()
        engine.stop()


def test_enabled_false_ingests_nothing(tmp_path: Path) -> None:
    config = {"workers": [{"name": "iii-observability", "config": {"enabled": False}}]}
    engine = EngineProcess(config, tmp_path).start()
    client = sdk_client(engine.url)
    try:
        wait_for(lambda: _answers(client, "engine::health::check"), timeout=20, interval=0.2)
        trace_id = new_trace_id()
        with telemetry_socket(engine.url) as ws:
            ws.send(frame(b"OTLP", traces_body([span(trace_id, new_span_id(), "ignored")])))
        health = call(client, "engine::health::check", {})
        assert health["components"]["otel"] == {"status": "disabled", "details": None}
        assert health["components"]["spans"] == {"status": "disabled", "details": None}
        try:
            call(client, "iii-observability::ingest", {"kind": "OTLP", "body": {}})
            raise AssertionError("the ingest function should not be registered")
        except Exception as exc:
            assert "function_not_found" in str(exc) or "not found" in str(exc)
        # Logs are gated separately (logs_enabled): engine::log::* still store and answer.
        call(client, "engine::log::warn", {"message": "still logged"})
        logs = call(client, "engine::logs::list", {})["logs"]
        assert [r["body"] for r in logs] == ["still logged"]
    finally:
        client.shutdown()
        engine.stop()
    assert "observability ready" in engine.log_text()


def _answers(client: Any, function_id: str) -> bool:
    try:
        call(client, function_id, {}, timeout_ms=2000)
    except Exception:
        return False
    return True
