"""One HTTP request → function A → function B (two SDK workers) is one trace: iii-http
continues the request's traceparent (or starts one), the engine's span of each call is the
child of the caller's, A's call to B carries the context A's handler runs in, and every engine
and actor log line about the request carries the trace id.

A is an SDK 0.23 worker with OpenTelemetry enabled (its ``execute`` span sits between the
engine's span of A and the engine's span of B); B is an SDK 0.25 worker with it disabled (the
no-op tracer hands the received context on unchanged).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from manifests.blocks.observability import INGEST_FUNCTION_ID
from tests.support import (
    EngineProcess,
    WorkerProcess,
    free_port,
    require_sdk025,
    sdk_client,
    wait_for,
    wait_port,
)
from transport.tracecontext import parse_traceparent

WORKER = """
import os, time
from iii import register_worker, InitOptions
from opentelemetry import propagate

w = register_worker(os.environ["III_URL"], InitOptions(worker_name=os.environ["NAME"]))

def context_now():
    carrier = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")

async def a(data):
    mine = context_now()
    b = await w.trigger_async({"function_id": "trace::b", "payload": {}})
    return {"status_code": 200, "body": {"a": mine, "b": b["b"]}}

async def b(data):
    return {"b": context_now()}

def sync(data):  # SDK 0.23 runs it in a thread without the handler's context
    b = w.trigger({"function_id": "trace::b", "payload": {}})
    return {"status_code": 200, "body": {"a": context_now(), "b": b["b"]}}

if os.environ["NAME"] == "trace-a":
    w.register_function("trace::a", a)
    w.register_trigger({"type": "http", "function_id": "trace::a",
                        "config": {"api_path": "trace/a", "http_method": "POST"}})
elif os.environ["NAME"] == "trace-sync":
    w.register_function("trace::sync", sync)
    w.register_trigger({"type": "http", "function_id": "trace::sync",
                        "config": {"api_path": "trace/sync", "http_method": "POST"}})
else:
    w.register_function("trace::b", b)
print("ready", flush=True)
while True:
    time.sleep(1)
"""

FUNCTIONS = ("trace::a", "trace::b", "trace::sync")
INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Stack:
    def __init__(self, engine: EngineProcess, http_port: int) -> None:
        self.engine = engine
        self.base = f"http://127.0.0.1:{http_port}"

    def records(self) -> list[dict[str, Any]]:
        """The engine's JSON log lines, and the actors' records they carry, flattened."""
        out = []
        for line in self.engine.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "worker.output" and isinstance(rec.get("record"), dict):
                out.append({**rec["record"], "from_worker": rec.get("worker")})
            else:
                out.append(rec)
        return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    sdk025 = require_sdk025()
    tmp = tmp_path_factory.mktemp("tracing")
    http_port = free_port()
    config = {"workers": [{"name": "iii-http", "config": {"host": "127.0.0.1", "port": http_port}}]}
    engine = EngineProcess(config, tmp).start()
    workers = []
    try:
        wait_port(http_port, 30, engine.proc)
        workers.append(
            WorkerProcess(WORKER, tmp, engine.url, "trace-a", NAME="trace-a", OTEL_ENABLED="true")
        )
        workers.append(WorkerProcess(WORKER, tmp, engine.url, "trace-b", python=sdk025, NAME="b"))
        workers.append(WorkerProcess(WORKER, tmp, engine.url, "trace-sync", NAME="trace-sync"))
        client = sdk_client(engine.url, "trace-probe")
        try:

            def ready() -> bool:
                result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
                ids = {f["function_id"] for f in result["functions"]}
                return {"trace::a", "trace::b", "trace::sync"} <= ids

            wait_for(ready, 20)
        finally:
            client.shutdown()
        stack = Stack(engine, http_port)

        def routed() -> bool:
            return httpx.post(f"{stack.base}/trace/a", json={}, timeout=5).status_code == 200

        wait_for(routed, 20, interval=0.2)
        yield stack
    finally:
        for w in workers:
            w.stop()
        engine.stop()


def call_finished(records: list[dict[str, Any]], function_id: str, trace_id: str) -> dict[str, Any]:
    """The engine's "call finished" line of ``function_id`` in that trace."""
    found = [
        r
        for r in records
        if r.get("event") == "call finished"
        and r.get("function_id") == function_id
        and r.get("trace_id") == trace_id
    ]
    assert len(found) == 1, (function_id, trace_id, found)
    return found[0]


def check_one_trace(stack: Stack, body: dict[str, Any], trace_id: str) -> None:
    a_tp, b_tp = parse_traceparent(body["a"]), parse_traceparent(body["b"])
    assert a_tp is not None and b_tp is not None, body
    assert a_tp[0] == trace_id and b_tp[0] == trace_id

    def logged() -> list[dict[str, Any]]:
        records = stack.records()
        ours = [
            r
            for r in records
            if r.get("event") in ("call finished", "request served")
            and r.get("trace_id") == trace_id
        ]
        return records if len(ours) >= 3 else []

    records = wait_for(logged, 10)
    span_a = call_finished(records, "trace::a", trace_id)
    span_b = call_finished(records, "trace::b", trace_id)
    # B's engine span hangs under what A's handler ran in: A's own execute span (OTel on in A),
    # whose parent is the engine's span of A.
    assert span_b["parent_span_id"] == a_tp[1]
    assert span_b["parent_span_id"] != span_a["span_id"]
    # B saw the engine's span of B as its parent (OTel off in B: the context unchanged).
    assert b_tp[1] == span_b["span_id"]
    # Every engine and actor line about this request carries its trace id (a route being
    # added names the function too, but is about a registration, not a call).
    about = [
        r
        for r in records
        if (r.get("function_id") in FUNCTIONS and r.get("event") != "route added")
        or (r.get("from_worker") == "iii-http" and r.get("event") == "request served")
    ]
    mine = [r for r in about if r.get("trace_id") == trace_id]
    assert {r.get("from_worker") for r in mine} >= {None, "iii-http"}, mine
    served = [r for r in mine if r.get("event") == "request served"]
    assert served and all(r.get("path") == "/trace/a" for r in served)
    # Lines about other requests carry their own trace ids, never none.
    untraced = [r for r in about if len(r.get("trace_id") or "") != 32]
    assert untraced == [], untraced


def test_an_incoming_traceparent_is_continued_through_both_hops(stack: Stack) -> None:
    resp = httpx.post(
        f"{stack.base}/trace/a",
        json={},
        headers={"traceparent": INCOMING, "baggage": "tenant=acme"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    check_one_trace(stack, resp.json(), INCOMING[3:35])
    records = stack.records()
    span_a = call_finished(records, "trace::a", INCOMING[3:35])
    assert span_a["parent_span_id"] == INCOMING[36:52]  # the HTTP client's span


def test_a_request_without_one_starts_a_trace_both_hops_share(stack: Stack) -> None:
    resp = httpx.post(f"{stack.base}/trace/a", json={}, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    a_tp = parse_traceparent(body["a"])
    assert a_tp is not None and a_tp[0] != INCOMING[3:35]
    check_one_trace(stack, body, a_tp[0])


def test_a_malformed_traceparent_header_starts_a_new_trace(stack: Stack, tmp_path: Path) -> None:
    resp = httpx.post(
        f"{stack.base}/trace/a", json={}, headers={"traceparent": "00-nope-nope-01"}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    a_tp = parse_traceparent(resp.json()["a"])
    assert a_tp is not None
    check_one_trace(stack, resp.json(), a_tp[0])


def test_a_sync_handler_s_call_joins_the_trace_of_the_call_it_serves(stack: Stack) -> None:
    """SDK 0.23 runs a sync handler in a fresh thread, so its own context is empty (``a`` is
    None) and its call to B carries no traceparent; the engine links it to the one call that
    worker is serving."""
    resp = httpx.post(
        f"{stack.base}/trace/sync", json={}, headers={"traceparent": INCOMING}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["a"] is None
    b_tp = parse_traceparent(body["b"])
    assert b_tp is not None and b_tp[0] == INCOMING[3:35]

    def logged() -> list[dict[str, Any]]:
        records = stack.records()
        done = [
            r
            for r in records
            if r.get("event") == "call finished"
            and r.get("function_id") == "trace::sync"
            and r.get("trace_id") == INCOMING[3:35]
        ]
        return records if done else []

    records = wait_for(logged, 10)
    outer = call_finished(records, "trace::sync", INCOMING[3:35])
    inner = [
        r
        for r in records
        if r.get("event") == "call finished"
        and r.get("function_id") == "trace::b"
        and r.get("parent_span_id") == outer["span_id"]
    ]
    assert len(inner) == 1 and inner[0]["trace_id"] == INCOMING[3:35]


def flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(flatten(node.get("children") or []))
    return out


def test_the_engine_spans_reach_iii_observability_linked_to_the_callers(stack: Stack) -> None:
    """The engine's spans of one request arrive through iii-observability::ingest (the real
    actor) and engine::traces::tree links them: call A under the HTTP client's span, call B
    under the span A's handler ran in."""
    trace_id = "1" * 32
    resp = httpx.post(
        f"{stack.base}/trace/a",
        json={},
        headers={"traceparent": f"00-{trace_id}-{'2' * 16}-01"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    a_tp = parse_traceparent(resp.json()["a"])
    assert a_tp is not None
    client = sdk_client(stack.engine.url, "trace-tree")
    try:

        def spans() -> dict[str, dict[str, Any]]:
            doc = client.trigger(
                {"function_id": "engine::traces::tree", "payload": {"trace_id": trace_id}}
            )
            found = {s["name"]: s for s in flatten(doc.get("roots") or [])}
            return found if {"call trace::a", "call trace::b"} <= set(found) else {}

        found = wait_for(spans, 15, interval=0.3)
    finally:
        client.shutdown()
    span_a, span_b = found["call trace::a"], found["call trace::b"]
    assert span_a["parent_span_id"] == "2" * 16
    assert span_b["parent_span_id"] == a_tp[1]  # A's execute span
    assert span_a["start_time_unix_nano"] <= span_b["start_time_unix_nano"]
    assert span_b["end_time_unix_nano"] <= span_a["end_time_unix_nano"]
    assert f"call {INGEST_FUNCTION_ID}" not in found
