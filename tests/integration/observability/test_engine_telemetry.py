"""The engine's own telemetry through iii-observability: one HTTP request → function A →
function B (two SDK workers) is one trace with a linked span per hop in engine::traces::tree,
and after 1,000 calls of which 100 fail engine::metrics::list shows the count, the errors and
latency percentiles within 10 % of what the caller measured."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.observability.helpers import call, wait_ready
from tests.support import EngineProcess, WorkerProcess, free_port, sdk_client, wait_for

WORKER_A = """
import os, time
from iii import InitOptions, register_worker
c = register_worker(os.environ["III_URL"], InitOptions(worker_name="worker-a"))
def a(data):
    return {"status_code": 200, "body": {"a": True, "b": c.trigger({"function_id": "trip::b", "payload": {"n": 1}})}}
c.register_function("trip::a", a)
c.register_trigger({"type": "http", "function_id": "trip::a", "config": {"api_path": "trip", "http_method": "GET"}})
print("ready", flush=True)
while True:
    time.sleep(1)
"""

WORKER_B = """
import asyncio, os, time
from iii import InitOptions, register_worker
c = register_worker(os.environ["III_URL"], InitOptions(worker_name="worker-b"))
c.register_function("trip::b", lambda data: {"b": data["n"] + 1})
async def timed(data):
    await asyncio.sleep(data["ms"] / 1000)
    if data["fail"]:
        raise RuntimeError("planned failure")
    return {"ok": True}
c.register_function("red::timed", timed)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProcess, int, Any]]:
    tmp = tmp_path_factory.mktemp("engine-telemetry")
    port = free_port()
    config = {"workers": [{"name": "iii-http", "config": {"host": "127.0.0.1", "port": port}}]}
    engine = EngineProcess(config, tmp).start()
    a = WorkerProcess(WORKER_A, tmp, engine.url, "worker-a")
    b = WorkerProcess(WORKER_B, tmp, engine.url, "worker-b")
    client = sdk_client(engine.url, "telemetry-test")
    try:
        wait_ready(client)
        wait_for(lambda: "ready" in a.output() and "ready" in b.output(), timeout=20)
        yield engine, port, client
    finally:
        client.shutdown()
        a.stop()
        b.stop()
        engine.stop()


def flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(flatten(node["children"]))
    return out


def function_of(span: dict[str, Any]) -> str | None:
    return dict(span["attributes"]).get("iii.function.id")


def test_one_http_request_through_a_and_b_is_one_linked_trace(
    stack: tuple[EngineProcess, int, Any],
) -> None:
    _, port, client = stack
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        wait_for(lambda: http.get("/trip").status_code == 200, timeout=20, interval=0.2)
        began = time.time_ns()
        response = http.get("/trip")
    assert response.json() == {"a": True, "b": {"b": 2}}

    def trace_of_this_request() -> list[dict[str, Any]]:
        rows = call(client, "engine::traces::list", {"sort_order": "desc", "limit": 20})["spans"]
        for row in rows:
            if row["start_time_unix_nano"] < began:
                continue
            spans = flatten(
                call(client, "engine::traces::tree", {"trace_id": row["trace_id"]})["roots"]
            )
            if {"trip::a", "trip::b"} <= {function_of(s) for s in spans}:
                return spans
        return []

    spans = wait_for(trace_of_this_request, timeout=15, interval=0.3)
    by_function = {function_of(s): s for s in spans}
    a, b = by_function["trip::a"], by_function["trip::b"]
    assert len({s["trace_id"] for s in spans}) == 1
    assert b["parent_span_id"] == a["span_id"]  # the hop A → B is linked
    assert a["start_time_unix_nano"] <= b["start_time_unix_nano"]
    assert b["end_time_unix_nano"] <= a["end_time_unix_nano"]
    assert all(s["status"] == "ok" for s in spans)
    roots = call(client, "engine::traces::tree", {"trace_id": a["trace_id"]})["roots"]
    assert len(roots) == 1  # every hop hangs under one root


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def test_red_metrics_after_1000_calls_with_100_failures(
    stack: tuple[EngineProcess, int, Any],
) -> None:
    _, _, client = stack
    wait_for(lambda: "red::timed" in functions(client), timeout=10)

    def one(i: int) -> tuple[float, bool]:
        payload = {"ms": 200 + (i * 37) % 800, "fail": i % 10 == 0}  # 200..999 ms
        began = time.monotonic()
        try:
            call(client, "red::timed", payload)
            ok = True
        except Exception:
            ok = False
        return (time.monotonic() - began) * 1000, ok

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(1000)))
    assert sum(not ok for _, ok in results) == 100
    measured = [ms for ms, _ in results]

    def row() -> dict[str, Any] | None:
        engine = call(client, "engine::metrics::list", {})["engine_metrics"]
        found = [f for f in engine["functions"] if f["function_id"] == "red::timed"]
        if found and found[0]["count"] == 1000:
            assert engine["invocations"]["by_function"]["red::timed"] == 1000
            return found[0]
        return None

    stats = wait_for(row, timeout=10)
    assert (stats["count"], stats["errors"]) == (1000, 100)
    for key, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        theirs = quantile(measured, q)
        assert stats[key] == pytest.approx(theirs, rel=0.10), (key, stats[key], theirs)


def functions(client: Any) -> set[str]:
    return {f["function_id"] for f in call(client, "engine::functions::list", {})["functions"]}


def test_engine_spans_are_internal_plumbing_only_when_they_are(
    stack: tuple[EngineProcess, int, Any], tmp_path: Path
) -> None:
    """engine::* calls (the actor's own, the SDK's) are hidden unless include_internal."""
    _, _, client = stack
    call(client, "engine::functions::list", {})

    def internal_rows() -> list[Any]:  # the call's span arrives with the next flush
        query = {"limit": 1000, "include_internal": True}
        rows = call(client, "engine::traces::list", query)["spans"]
        return [r for r in rows if str(function_of(r) or "").startswith("engine::")]

    assert wait_for(internal_rows, timeout=10)
    rows = call(client, "engine::traces::list", {"limit": 1000})["spans"]
    assert all(not str(function_of(r) or "").startswith("engine::") for r in rows)
