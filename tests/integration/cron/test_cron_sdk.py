"""iii-cron under a real ``iii-supervisor up`` with official SDK 0.23 workers (WORKERS.md §8):
an every-second cron fires about once a second with upstream's payload; a bad expression is
refused with upstream's message; a killed cron actor comes back without repeating a tick; the
adapter changes live through the configuration worker (§8.1); and two supervisors on one Redis,
each with its own SDK worker registering the same cron, fire each tick exactly once between
them, also while one of them stops (§14, §16 item 18)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import EngineProcess, find_process, require_service, sdk_client, wait_for

WORKER = """
import json, os, sys, time
from iii import InitOptions, register_worker

worker = register_worker(
    os.environ["III_URL"], InitOptions(worker_name="ticker", otel={"enabled": False})
)
fires = os.environ["FIRES"]

def tick(data):
    with open(fires, "a") as fh:
        fh.write(json.dumps({"engine": os.environ["ENGINE"], "at": time.time(), "data": data}) + "\\n")
    return None

worker.register_function(os.environ["FUNCTION"], tick)
worker.register_trigger(
    {"type": "cron", "function_id": os.environ["FUNCTION"],
     "config": {"expression": os.environ["EXPRESSION"]}}
)
print("registered", flush=True)
while True:
    time.sleep(1)
"""

REDIS = {"name": "redis", "config": {"redis_url": "redis://127.0.0.1:6379"}}


class Cluster:
    """Engines (``iii-supervisor up``), each supervising iii-cron and one SDK worker."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.script = tmp / "ticker.py"
        self.script.write_text(WORKER)
        self.engines: dict[str, EngineProcess] = {}
        self.function = f"cron::tick-{uuid.uuid4().hex[:8]}"  # fresh job keys per test

    def start(
        self,
        name: str,
        cron: dict[str, Any] | None = None,
        expression: str = "* * * * * *",
    ) -> EngineProcess:
        home = self.tmp / name
        home.mkdir()
        ticker_env = {
            "FIRES": str(self.fires_path(name)),
            "ENGINE": name,
            "FUNCTION": self.function,
            "EXPRESSION": expression,
        }
        config = {
            "workers": [
                {"name": "iii-cron", "config": cron} if cron else {"name": "iii-cron"},
                {
                    "name": "ticker",
                    "supervise": {"command": [sys.executable, str(self.script)], "env": ticker_env},
                },
            ]
        }
        engine = EngineProcess(config, home).start()
        self.engines[name] = engine
        return engine

    def fires_path(self, name: str) -> Path:
        return self.tmp / f"{name}.fires.jsonl"

    def fires(self, *names: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name in names or tuple(self.engines):
            path = self.fires_path(name)
            if path.exists():
                out += [json.loads(line) for line in path.read_text().splitlines() if line]
        return out

    def wait_fires(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            for engine in self.engines.values():
                if engine.proc is not None and engine.proc.poll() is not None:
                    raise AssertionError(f"engine exited:\n{engine.log_text()[-3000:]}")
            got = self.fires()
            return got if len(got) >= count else None

        return wait_for(enough, timeout, interval=0.1)

    def stop(self) -> None:
        for engine in self.engines.values():
            engine.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def scheduled(fire: dict[str, Any]) -> int:
    return int(dt.datetime.fromisoformat(fire["data"]["scheduled_time"]).timestamp())


def delay(fire: dict[str, Any]) -> float:
    actual = dt.datetime.fromisoformat(fire["data"]["actual_time"]).timestamp()
    return actual - scheduled(fire)


def assert_each_tick_once(fires: list[dict[str, Any]]) -> list[int]:
    ticks = sorted(scheduled(f) for f in fires)
    duplicates = sorted({t for t in ticks if ticks.count(t) > 1})
    assert duplicates == [], f"ticks fired twice: {duplicates}"
    missing = sorted(set(range(ticks[0], ticks[-1] + 1)) - set(ticks))
    assert missing == [], f"ticks never fired: {missing}"
    return ticks


def test_an_every_second_cron_fires_about_once_per_second(cluster: Cluster) -> None:
    cluster.start("solo")
    cluster.wait_fires(1)
    started = time.monotonic()
    fires = cluster.wait_fires(7)
    elapsed = time.monotonic() - started
    ticks = assert_each_tick_once(fires)
    assert len(ticks) >= 7 and 5.0 <= elapsed <= 8.0
    assert all(0 <= delay(f) < 0.5 for f in fires), [delay(f) for f in fires]
    first = fires[0]["data"]
    assert set(first) == {"trigger", "job_id", "scheduled_time", "actual_time"}
    assert first["trigger"] == "cron"
    assert first["scheduled_time"].endswith("+00:00") and first["actual_time"].endswith("+00:00")
    assert len({f["data"]["job_id"] for f in fires}) == 1
    uuid.UUID(first["job_id"])  # the SDK's trigger id


def test_a_bad_expression_is_refused_with_upstreams_message(cluster: Cluster) -> None:
    engine = cluster.start("bad", expression="*/5 * * * *")
    expected = "Invalid cron expression '*/5 * * * *': expected 6 or 7 fields"
    wait_for(lambda: expected in engine.log_text(), 20)
    assert "Trigger registration failed" in engine.log_text()
    time.sleep(1.5)
    assert cluster.fires() == []


def test_a_killed_cron_actor_comes_back_without_repeating_a_tick(cluster: Cluster) -> None:
    # file_based: the last fired tick survives the actor; the bus re-delivers the binding.
    engine = cluster.start(
        "solo", {"adapter": {"name": "kv", "config": {"store_method": "file_based"}}}
    )
    cluster.wait_fires(3)
    assert engine.proc is not None
    actor = find_process(engine.proc.pid, "actors.cron")
    os.kill(actor, signal.SIGKILL)
    killed = time.time()
    wait_for(lambda: any(f["at"] > killed + 2 for f in cluster.fires()), 30, interval=0.2)
    fires = cluster.wait_fires(len(cluster.fires()) + 3)
    ticks = sorted(scheduled(f) for f in fires)
    assert len(ticks) == len(set(ticks)), "a tick fired twice across the restart"
    gap = [t for t in range(ticks[0], ticks[-1] + 1) if t not in ticks]
    # At most the ticks of the restart itself are missing: one catch-up fires the latest.
    assert len(gap) <= 3, gap
    assert find_process(engine.proc.pid, "actors.cron") != actor


@pytest.mark.redis
def test_two_supervisors_on_one_redis_fire_each_tick_once(cluster: Cluster) -> None:
    require_service("Redis", 6379)
    cluster.start("a", {"adapter": REDIS})
    cluster.start("b", {"adapter": REDIS})
    cluster.wait_fires(1)
    # Both workers registered the same cron on their own supervisor: ~10 s of ticks.
    wait_for(lambda: "registered" in (cluster.tmp / "b" / "engine.log").read_text(), 20)
    time.sleep(10)
    fires = cluster.fires()
    ticks = assert_each_tick_once(fires)
    assert len(ticks) >= 9
    assert len({f["data"]["job_id"] for f in fires}) == 2  # two trigger ids, one job

    # Stop one supervisor: the other goes on firing every tick, still once each.
    cluster.engines["a"].stop()
    stopped = time.time()
    wait_for(lambda: sum(f["at"] > stopped for f in cluster.fires("b")) >= 4, 20, interval=0.2)
    fires = cluster.fires()
    assert_each_tick_once(fires)
    late = [f for f in fires if f["at"] > stopped + 1]
    assert late and {f["engine"] for f in late} == {"b"}


@pytest.mark.redis
def test_the_adapter_changes_live_through_the_configuration_worker(cluster: Cluster) -> None:
    require_service("Redis", 6379)
    engine = cluster.start("solo")
    cluster.wait_fires(2)
    client = sdk_client(engine.url, "cron-admin")
    try:
        entry = client.trigger({"function_id": "configuration::get", "payload": {"id": "iii-cron"}})
        assert entry["value"] == {"adapter": {"name": "kv"}}
        value = {"adapter": REDIS}
        client.trigger(
            {"function_id": "configuration::set", "payload": {"id": "iii-cron", "value": value}}
        )
        wait_for(lambda: "iii-cron adapter changed" in engine.log_text(), 15)
        changed = time.time()
        wait_for(lambda: sum(f["at"] > changed for f in cluster.fires()) >= 3, 15, interval=0.2)
    finally:
        client.shutdown()
    assert_each_tick_once(cluster.fires())  # the job moved over without a gap or a repeat
