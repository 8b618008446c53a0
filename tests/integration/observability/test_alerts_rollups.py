"""Alert rules and rollups through the official SDK (WORKERS.md §10.1–10.2): rules over the
engine's RED figures and over SDK metrics (raw MTRC frames), firing / resolved states with the
rule's cooldown and actions (a function, the log store), periodic evaluation, rollups at the
three levels; and ``engine::workers::info.latest_metrics`` from an SDK worker's MTRC frames.

One engine for the module, with two rules configured in config.yaml.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observability.helpers import (
    call,
    frame,
    metrics_body,
    telemetry_socket,
    wait_ready,
)
from tests.support import (
    EngineProcess,
    WorkerProcess,
    engine_fixture,
    free_port,
    require_sdk025,
    sdk_client,
    wait_for,
)

WEBHOOK_PORT = free_port()
RULES = [
    {
        "name": "errors",
        "metric": "iii.invocations.error",
        "threshold": 3,
        "operator": ">=",
        "window_seconds": 120,
        "cooldown_seconds": 3600,
        "action": {"type": "function", "path": "alerts::sink"},
    },
    {
        "name": "depth",
        "metric": "test.queue.depth",
        "threshold": 50,
        "window_seconds": 120,
        "cooldown_seconds": 1,
    },
    {
        "name": "depth-hook",
        "metric": "test.queue.depth",
        "threshold": 50,
        "operator": "greaterthan",
        "window_seconds": 120,
        "cooldown_seconds": 3600,
        "action": {"type": "webhook", "url": f"http://127.0.0.1:{WEBHOOK_PORT}/alerts"},
    },
]
NAMES = ["errors", "depth", "depth-hook"]


class Hooks:
    """A local HTTP endpoint that keeps the JSON bodies POSTed to it."""

    def __init__(self, port: int) -> None:
        self.bodies: list[Any] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.bodies.append((self.path, json.loads(raw)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    h = Hooks(WEBHOOK_PORT)
    try:
        yield h
    finally:
        h.server.shutdown()
        h.server.server_close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, hooks: Hooks) -> Iterator[EngineProcess]:
    block = {"enabled": True, "exporter": "memory", "metrics_enabled": True, "alerts": RULES}
    config = {"workers": [{"name": "iii-observability", "config": block}]}
    yield from engine_fixture(tmp_path_factory.mktemp("alerts"), config)


@pytest.fixture(scope="module")
def client(engine: EngineProcess) -> Iterator[Any]:
    c = sdk_client(engine.url, "alerts-test")
    wait_ready(c)
    try:
        yield c
    finally:
        c.shutdown()


def states(client: Any) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in call(client, "engine::alerts::list", {})["alerts"]}


def test_alerts_list_shows_the_configured_rules_and_their_states(client: Any) -> None:
    out = call(client, "engine::alerts::list", {})
    assert set(out) >= {"alerts", "rules", "firing_count", "timestamp"}
    assert [r["name"] for r in out["rules"]] == NAMES
    assert out["rules"][0]["operator"] == "greaterthanorequal"  # the symbol, by its name
    assert out["rules"][1]["action"] == {"type": "log"}
    for row in out["alerts"]:
        assert row["state"] in ("ok", "no_data", "firing", "resolved")
        assert {"value", "last_evaluated", "trigger_count", "firing_since"} <= set(row)


def test_failed_calls_fire_the_error_rule_once_within_its_cooldown(client: Any) -> None:
    received: list[Any] = []
    client.register_function("alerts::sink", lambda data: received.append(data))

    def fail(data: Any) -> Any:
        raise RuntimeError("boom")

    client.register_function("alerts::fail", fail)
    wait_for(lambda: _registered(client, "alerts::fail"), timeout=10)
    for _ in range(4):
        with pytest.raises(Exception):  # noqa: B017 - the SDK raises its own error type
            call(client, "alerts::fail", {})
    result = call(client, "engine::alerts::evaluate", {})
    assert result["evaluated"] is True and isinstance(result["timestamp"], int)
    fired = {a["name"]: a for a in result["triggered_alerts"]}
    assert "errors" in fired, result
    assert fired["errors"]["status"] == "firing" and fired["errors"]["value"] >= 4
    assert fired["errors"]["threshold"] == 3
    wait_for(lambda: any(r.get("name") == "errors" for r in received), timeout=10)
    assert states(client)["errors"]["state"] == "firing"
    assert call(client, "engine::alerts::list", {})["firing_count"] >= 1
    again = call(client, "engine::alerts::evaluate", {})
    assert "errors" not in {a["name"] for a in again["triggered_alerts"]}  # the cooldown


def test_an_sdk_gauge_fires_and_then_resolves_with_log_records_and_webhooks(
    engine: EngineProcess, client: Any, hooks: Hooks
) -> None:
    with telemetry_socket(engine.url) as ws:
        ws.send(frame(b"MTRC", metrics_body("test.queue.depth", 80.0)))
    wait_for(
        lambda: states(client)["depth"]["state"] != "no_data" or _evaluate_fired(client, "depth"),
        timeout=10,
    )
    row = states(client)["depth"]
    assert row["state"] == "firing" and row["value"] == 80.0
    with telemetry_socket(engine.url) as ws:
        for _ in range(3):  # mean over the window: (80 + 3 × 0) / 4 = 20 < 50
            ws.send(frame(b"MTRC", metrics_body("test.queue.depth", 0.0)))

    def resolved() -> bool:
        call(client, "engine::alerts::evaluate", {})
        return states(client)["depth"]["state"] in ("resolved", "ok")

    wait_for(resolved, timeout=10, interval=0.3)
    bodies = [
        r["body"] for r in call(client, "engine::logs::list", {"severity_text": "warn"})["logs"]
    ]
    assert any(b.startswith("alert depth firing") for b in bodies), bodies
    assert any(b.startswith("alert depth resolved") for b in bodies), bodies
    assert "alert depth firing" in engine.log_text()
    wait_for(lambda: len(hooks.bodies) >= 2, timeout=10)
    assert [(path, b["name"], b["status"]) for path, b in hooks.bodies] == [
        ("/alerts", "depth-hook", "firing"),
        ("/alerts", "depth-hook", "resolved"),
    ]
    assert hooks.bodies[0][1]["value"] == 80.0 and hooks.bodies[0][1]["threshold"] == 50


def test_rules_are_evaluated_periodically(client: Any) -> None:
    before = states(client)["errors"]["last_evaluated"]
    wait_for(lambda: states(client)["errors"]["last_evaluated"] != before, timeout=25, interval=0.5)


def test_rollups_at_three_levels_from_sdk_metrics_and_red_figures(
    engine: EngineProcess, client: Any
) -> None:
    with telemetry_socket(engine.url) as ws:
        ws.send(frame(b"MTRC", metrics_body("test.rollup.gauge", 4.0)))
        ws.send(frame(b"MTRC", metrics_body("test.rollup.gauge", 10.0)))

    def rows(level: int) -> list[dict[str, Any]]:
        out = call(
            client, "engine::rollups::list", {"metric_name": "test.rollup.gauge", "level": level}
        )
        assert out["level"] == level and out["histogram_rollups"] == []
        return list(out["rollups"])

    wait_for(lambda: sum(r["count"] for r in rows(0)) == 2, timeout=10)
    for level, width in ((0, 60), (1, 300), (2, 3600)):
        got = rows(level)
        assert sum(r["count"] for r in got) == 2
        assert max(r["max"] for r in got) == 10.0 and min(r["min"] for r in got) == 4.0
        assert all(r["end_time"] - r["start_time"] == width * 1000 for r in got)
    call(client, "engine::alerts::evaluate", {})  # a RED reading now
    red = call(client, "engine::rollups::list", {"metric_name": "iii.invocations.total"})
    assert red["rollups"] and sum(r["sum"] for r in red["rollups"]) >= 4  # the calls made here
    everything = call(client, "engine::rollups::list", {})
    assert {"rollups", "histogram_rollups", "level", "source", "timestamp"} <= set(everything)


def _set(client: Any, value: dict[str, Any]) -> None:
    call(client, "configuration::set", {"id": "iii-observability", "value": value})


BASE = {"enabled": True, "exporter": "memory", "metrics_enabled": True}


def test_configuration_set_applies_alerts_and_log_settings_live(
    engine: EngineProcess, client: Any
) -> None:
    rule = {"name": "swapped", "metric": "iii.invocations.total", "threshold": 0}
    try:
        _set(client, {**BASE, "alerts": [rule], "level": "error"})  # swap tier
        wait_for(lambda: list(states(client)) == ["swapped"], timeout=15, interval=0.2)
        call(client, "engine::log::warn", {"message": "below-level-4711"})
        call(client, "engine::log::error", {"message": "at-level-4711"})
        wait_for(lambda: "at-level-4711" in engine.log_text(), timeout=10)
        assert "below-level-4711" not in engine.log_text()  # filtered from the console only
        stored = [r["body"] for r in call(client, "engine::logs::list", {})["logs"]]
        assert {"below-level-4711", "at-level-4711"} <= set(stored)

        value = {**BASE, "alerts": [rule], "logs_console_output": False, "service_name": "later"}
        _set(client, value)  # live tier, and a restart-tier field
        wait_for(lambda: "apply at the next start" in engine.log_text(), timeout=15)
        call(client, "engine::log::error", {"message": "quiet-line-4711"})
        stored = [r["body"] for r in call(client, "engine::logs::list", {})["logs"]]
        assert "quiet-line-4711" in stored  # stored, but not echoed
        assert "quiet-line-4711" not in engine.log_text()
        health = call(client, "engine::health::check", {})
        assert health["components"]["otel"]["details"]["service_name"] == "iii"  # not yet
        _set(client, {**value, "logs_sampling_ratio": 0.0})
        wait_for(lambda: _dropped(client), timeout=15, interval=0.2)
    finally:
        _set(client, {**BASE, "alerts": RULES})
        wait_for(lambda: list(states(client)) == NAMES, timeout=15, interval=0.2)


def test_a_restart_tier_change_applies_when_the_actor_starts_again(client: Any) -> None:
    def service_name() -> Any:
        try:
            health = call(client, "engine::health::check", {}, timeout_ms=2000)
        except Exception:
            return None
        return health["components"]["otel"]["details"]["service_name"]

    _set(client, {**BASE, "alerts": RULES, "service_name": "after-restart"})
    assert service_name() == "iii"
    pid = call(client, "engine::workers::info", {"name": "iii-observability"})["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)  # the supervisor starts it again; it reads the stored value
    wait_for(lambda: service_name() == "after-restart", timeout=30, interval=0.3)
    assert [r["name"] for r in call(client, "engine::alerts::list", {})["rules"]] == NAMES


def _dropped(client: Any) -> bool:
    marker = f"sampled-out-{time.monotonic_ns()}"
    call(client, "engine::log::info", {"message": marker})
    return marker not in [r["body"] for r in call(client, "engine::logs::list", {})["logs"]]


def _registered(client: Any, fid: str) -> bool:
    listed = call(client, "engine::functions::list", {})
    rows = listed.get("functions", []) if isinstance(listed, dict) else []
    return fid in {f.get("function_id") for f in rows}


def _evaluate_fired(client: Any, name: str) -> bool:
    out = call(client, "engine::alerts::evaluate", {})
    return name in {a["name"] for a in out.get("triggered_alerts", [])}


# The Python SDKs' own register_worker_gauges needs a newer opentelemetry-sdk than they pull
# in (Meter.add_batch_observable_callback), so the worker declares the same iii.worker.* gauges
# on the SDK's meter; the SDK's exporter sends them as MTRC frames, as the Node SDK does by itself.
GAUGES_WORKER = """
import os, resource, time
from iii import InitOptions, register_worker
from opentelemetry import metrics
from opentelemetry.metrics import Observation

worker = register_worker(
    os.environ["III_URL"],
    InitOptions(worker_name="gauges-worker",
                otel={"enabled": True, "metrics_export_interval_ms": 300}),
)
deadline = time.time() + 15
while not worker.worker_id and time.time() < deadline:
    time.sleep(0.05)
attrs = {"worker.id": worker.worker_id, "worker.name": "gauges-worker"}
started = time.time()
meter = metrics.get_meter("gauges-test")

def rss(options):
    yield Observation(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, attrs)

def uptime(options):
    yield Observation(time.time() - started, attrs)

meter.create_observable_gauge("iii.worker.memory.rss", [rss], unit="bytes")
meter.create_observable_gauge("iii.worker.uptime_seconds", [uptime], unit="s")
print("gauges registered", worker.worker_id, flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("sdk", ["0.23", "0.25"])
def test_workers_info_latest_metrics_come_from_the_sdks_worker_gauges(
    engine: EngineProcess, client: Any, tmp_path: Path, sdk: str
) -> None:
    python = sys.executable if sdk == "0.23" else require_sdk025()
    worker = WorkerProcess(GAUGES_WORKER, tmp_path, engine.url, python=python, OTEL_ENABLED="true")
    try:
        wait_for(lambda: "gauges registered" in worker.output(), timeout=20)

        def latest() -> Any:
            info = call(client, "engine::workers::info", {"name": "gauges-worker"})
            return info["worker"].get("latest_metrics")

        first = wait_for(latest, timeout=15, interval=0.2)
        assert first["memory_rss"] > 0 and first["uptime_seconds"] >= 0
        assert abs(first["timestamp_ms"] - time.time() * 1000) < 60_000
        # The next export moves it on: it is the latest sample, not the first.
        wait_for(lambda: latest()["uptime_seconds"] > first["uptime_seconds"], timeout=10)
    finally:
        worker.stop()
        print(worker.output()[-2000:])
