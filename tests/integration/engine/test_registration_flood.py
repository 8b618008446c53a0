"""A worker that floods registrations cannot starve the others (the linear control plane).

One raw client registers 20,000 functions in one burst and then disconnects, while another
keeps calling a third worker's function. Every call is answered, none waits for the flood
to finish (the bound is loose on purpose: the benchmark, tests/perf/bench_control_plane.py,
measures the real figures), and the flood's functions are all there, then all gone.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import EngineProcess

FLOOD = 20_000


def raw_worker(url: str, name: str) -> Any:
    ws = connect(url, max_size=None)
    assert json.loads(ws.recv(timeout=5))["type"] == "workerregistered"
    announce = {
        "type": "invokefunction",
        "function_id": "engine::workers::register",
        "action": {"type": "void"},
        "data": {"name": name, "pid": 1},
    }
    ws.send(json.dumps(announce))
    return ws


def call(ws: Any, function_id: str, data: Any, timeout: float = 10.0) -> dict[str, Any]:
    inv = str(uuid.uuid4())
    ws.send(
        json.dumps(
            {
                "type": "invokefunction",
                "function_id": function_id,
                "invocation_id": inv,
                "data": data,
            }
        )
    )
    while True:
        msg = json.loads(ws.recv(timeout=timeout))
        if msg.get("type") == "invocationresult" and msg.get("invocation_id") == inv:
            return msg


def test_a_registration_flood_does_not_starve_other_workers(engine: EngineProcess) -> None:
    callee = raw_worker(engine.url, "steady-callee")
    callee.send(json.dumps({"type": "registerfunction", "id": "steady::echo"}))
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                msg = json.loads(callee.recv(timeout=0.2))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            if msg.get("type") == "invokefunction" and msg.get("invocation_id"):
                callee.send(
                    json.dumps(
                        {
                            "type": "invocationresult",
                            "invocation_id": msg["invocation_id"],
                            "function_id": msg["function_id"],
                            "result": {"n": msg["data"]["n"]},
                        }
                    )
                )

    answering = threading.Thread(target=answer, daemon=True)
    answering.start()
    caller = raw_worker(engine.url, "steady-caller")
    time.sleep(0.5)  # the callee's registration is applied
    assert call(caller, "steady::echo", {"n": 0}).get("result") == {"n": 0}

    latencies: list[float] = []
    errors: list[Any] = []
    flooding = threading.Event()
    flooded = threading.Event()

    def steady() -> None:
        flooding.wait(10)
        n = 0
        while not flooded.is_set():
            n += 1
            t0 = time.monotonic()
            reply = call(caller, "steady::echo", {"n": n})
            latencies.append(time.monotonic() - t0)
            if reply.get("result") != {"n": n}:
                errors.append(reply)
            time.sleep(0.005)

    steady_thread = threading.Thread(target=steady, daemon=True)
    steady_thread.start()
    probe = raw_worker(engine.url, "probe")
    flood = raw_worker(engine.url, "flood")
    prefix = uuid.uuid4().hex[:8]
    try:
        flooding.set()
        started = time.monotonic()
        for i in range(FLOOD):
            flood.send(json.dumps({"type": "registerfunction", "id": f"flood{prefix}::f{i}"}))
        # A link's messages are handled in order: this answer comes after every registration.
        assert "result" in call(flood, "engine::channels::create", {}, timeout=60)
        applied = time.monotonic() - started
        last = call(
            probe, "engine::functions::info", {"function_id": f"flood{prefix}::f{FLOOD - 1}"}
        )
        assert last.get("error") is None, last
        flood.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gone = call(probe, "engine::functions::info", {"function_id": f"flood{prefix}::f0"})
            if gone.get("error"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the flood's functions outlived its connection")
    finally:
        flooded.set()
        steady_thread.join(20)
        stop.set()
        answering.join(5)
        for ws in (caller, callee, probe):
            ws.close()
    assert errors == []
    assert len(latencies) >= 10, (applied, latencies)
    assert max(latencies) < 1.0, f"a steady call waited {max(latencies):.3f}s during the flood"
