"""RED metrics through a real engine: after 1,000 calls of which 100 fail, engine::calls::stats
and ``iii-supervisor status --json`` show count 1000, errors 100 and latency percentiles within
10 % of what the caller measured; ``status --functions`` shows the same row.

The handler sleeps a known, varied time (50–250 ms), so the percentiles mean something; the
caller (an SDK 0.23 worker process) keeps 25 calls in flight and times each one itself.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import BIN, EngineProcess, WorkerProcess, sdk_client, wait_for

CALLS = 1000
FAILING = 100

SERVER = """
import asyncio, os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="red-server"))
async def work(data):
    await asyncio.sleep(data["ms"] / 1000)
    if data["fail"]:
        raise RuntimeError("failing on purpose")
    return {"ok": True}
w.register_function("red::work", work)
print("ready", flush=True)
while True:
    time.sleep(1)
"""

CALLER = """
import asyncio, json, os, time
from iii import register_worker, InitOptions, InvocationError
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="red-caller"))
CALLS, FAILING = int(os.environ["CALLS"]), int(os.environ["FAILING"])

async def main():
    gate = asyncio.Semaphore(25)
    latencies, errors = [], 0
    async def one(i):
        nonlocal errors
        data = {"ms": 50 + (i * 37 % 101) * 2, "fail": i % (CALLS // FAILING) == 0}
        async with gate:
            t0 = time.perf_counter()
            try:
                await w.trigger_async({"function_id": "red::work", "payload": data})
            except InvocationError:
                errors += 1
            latencies.append(time.perf_counter() - t0)
    await asyncio.gather(*(one(i) for i in range(CALLS)))
    return latencies, errors

while True:  # until the server's function is there
    try:
        fns = w.trigger({"function_id": "engine::functions::list", "payload": {}})["functions"]
        if any(f["function_id"] == "red::work" for f in fns):
            break
    except Exception:
        pass
    time.sleep(0.1)
fut = asyncio.run_coroutine_threadsafe(main(), w._loop)
latencies, errors = fut.result(120)
with open(os.environ["OUT"] + ".tmp", "w") as fh:
    json.dump({"latencies": latencies, "errors": errors}, fh)
os.rename(os.environ["OUT"] + ".tmp", os.environ["OUT"])
while True:
    time.sleep(1)
"""


def exact(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProcess, dict]]:
    tmp = tmp_path_factory.mktemp("red")
    engine = EngineProcess({"workers": []}, tmp, env={"III_LOG_LEVEL": "info"}).start()
    out = tmp / "caller.json"
    server = WorkerProcess(SERVER, tmp, engine.url, "red-server")
    caller = WorkerProcess(
        CALLER, tmp, engine.url, "red-caller", OUT=str(out), CALLS=str(CALLS), FAILING=str(FAILING)
    )
    try:
        wait_for(out.exists, 90, interval=0.2)
        yield engine, json.loads(out.read_text())
    finally:
        caller.stop()
        server.stop()
        engine.stop()


def check_row(row: dict[str, Any], caller: dict[str, Any]) -> None:
    assert (row["count"], row["errors"]) == (CALLS, FAILING)
    assert caller["errors"] == FAILING and len(caller["latencies"]) == CALLS
    assert (row["window_count"], row["window_errors"]) == (CALLS, FAILING)
    for key, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        want = exact(caller["latencies"], q) * 1000
        assert abs(row[key] - want) <= 0.10 * want, (key, row[key], want)


def test_engine_calls_stats_match_what_the_caller_measured(measured: Any) -> None:
    engine, caller = measured
    client = sdk_client(engine.url, "red-probe")
    try:
        doc = client.trigger({"function_id": "engine::calls::stats", "payload": {}})
    finally:
        client.shutdown()
    assert doc["enabled"] is True
    (row,) = [r for r in doc["functions"] if r["function_id"] == "red::work"]
    assert row["namespace"] == "default" and row["window_seconds"] == 60
    check_row(row, caller)
    (worker,) = [w for w in doc["workers"] if w["name"] == "red-server"]
    check_row(worker, caller)


def status(engine: EngineProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "iii-supervisor"), "status", "--config", str(engine.config_path), *args],
        cwd=engine.tmp,
        env=engine.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_status_json_shows_the_same_figures(measured: Any) -> None:
    engine, caller = measured
    result = status(engine, "--json")
    assert result.stdout, result.stderr
    doc = json.loads(result.stdout)
    (row,) = [r for r in doc["calls"]["functions"] if r["function_id"] == "red::work"]
    check_row(row, caller)


def test_status_functions_prints_one_line_per_function(measured: Any) -> None:
    engine, caller = measured
    result = status(engine, "--functions")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FUNCTION") and "P99" in lines[0]
    line = next(x for x in lines if x.startswith("red::work "))
    assert line.split()[1:4] == [str(CALLS), str(FAILING), "10.0%"]
    assert any(x.startswith("WORKER") for x in lines)
    assert any(x.startswith("red-server ") for x in lines)


def test_observability_off_installs_neither_hook(tmp_path: Path) -> None:
    """``enabled: false`` and ``metrics_enabled: false``: no RED metrics, and a call without
    a traceparent reaches its handler without one (no span hook made one up)."""
    off = {"name": "iii-observability", "config": {"enabled": False, "metrics_enabled": False}}
    engine = EngineProcess({"workers": [off]}, tmp_path, env={"III_LOG_LEVEL": "info"}).start()
    client = sdk_client(engine.url, "off-probe")
    try:

        async def seen(data: Any) -> Any:
            from opentelemetry import propagate

            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            return {"traceparent": carrier.get("traceparent")}

        client.register_function("off::seen", seen)

        def called() -> Any:
            try:
                return client.trigger({"function_id": "off::seen", "payload": {}})
            except Exception:
                return None

        assert wait_for(called, 15) == {"traceparent": None}
        doc = client.trigger({"function_id": "engine::calls::stats", "payload": {}})
        assert doc == {"functions": [], "workers": [], "enabled": False}
        result = status(engine, "--functions")
        assert result.returncode == 0 and "metrics are off" in result.stdout
    finally:
        client.shutdown()
        engine.stop()
