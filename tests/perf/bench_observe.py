"""Invoke round trip and throughput with 0, 1 and 10 observers on the called function, with
filters that match every call and filters that match none, in the same run.

The set-up of bench_invoke (lean WebSocket callers, a raw callee answering ``bench::echo``)
plus a sink peer: an observe-capable raw worker that hosts ``bench::sink`` and creates the
observers of a phase on ``bench::echo`` (answering every activation). Phases alternate in
rounds (medians reported) so drift on a shared machine hits each alike. The 0-observer phase
runs with the observe hook installed, as every engine does.
Target (issue 10): observers that do not match cost <= 5 % of the round trip (1 caller, p50,
10 non-matching observers against none).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import trio

from tests.perf._leanws import LeanClient
from tests.perf._procs import cpu_seconds
from tests.perf.bench_invoke import (
    PAYLOAD,
    engine_msg,
    engine_reply,
    run_callers,
)
from tests.support import REPO, EngineProcess

ROUNDS = 3
MATCH = {"input.order": {"$eq": PAYLOAD["order"]}}


def filters(kind: str, i: int) -> dict[str, Any]:
    """Observer ``i``'s filter: ``match`` every call; ``eq`` a distinct ``$eq`` that never
    matches (the indexed case); ``range`` a ``$lt`` that never matches (evaluated each call)."""
    if kind == "match":
        return MATCH
    if kind == "eq":
        return {"input.order": {"$eq": -1 - i}}
    return {"input.order": {"$lt": -1 - i}}


FEATURES = ["observe.v1", "local-dispatch.v1", "large-messages.v1"]


async def sink(url: str, count: int, kind: str) -> None:
    """The observing worker of one phase: ``count`` observers, then answer activations."""
    ws = await LeanClient.connect(url)
    await ws.recv()  # workerregistered
    register = {
        "type": "invokefunction",
        "function_id": "engine::workers::register",
        "action": {"type": "void"},
        "data": {"name": f"bench-sink-{uuid.uuid4().hex[:6]}", "pid": 0, "features": FEATURES},
    }
    frames = [register, {"type": "registerfunction", "id": "bench::sink"}]
    for i in range(count):
        frames.append(
            {
                "type": "observe",
                "id": str(uuid.uuid4()),
                "source": {"function_id": "bench::echo", "filters": filters(kind, i)},
                "target": {"function_id": "bench::sink"},
                "max_in_flight": 10_000,
            }
        )
    await ws.send_many([orjson.dumps(f).decode() for f in frames])
    active = 0
    if count == 0:
        print("READY", flush=True)
    while True:
        batch = [await ws.recv()]
        while ws.ready:
            batch.append(ws.ready.popleft())
        replies = []
        for raw in batch:
            msg = orjson.loads(raw)
            kind = msg.get("type")
            if kind == "invokefunction" and msg.get("invocation_id"):
                reply = {
                    "type": "invocationresult",
                    "invocation_id": msg["invocation_id"],
                    "function_id": msg["function_id"],
                    "result": None,
                }
                replies.append(orjson.dumps(reply).decode())
            elif kind in ("observeresult", "observerstatechanged"):
                if msg.get("state") == "active":
                    active += 1
                    if active == count:
                        print("READY", flush=True)
                elif msg.get("state") == "error":
                    print(f"observer refused: {msg}", flush=True)
        if replies:
            await ws.send_many(replies)


def start_sink(url: str, count: int, kind: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.perf.bench_observe", "sink", url, str(count), kind],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    for line in proc.stdout:
        if line.strip() == "READY":
            return proc
        print(line, end="")
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"sink with {count} observers never became ready")


def core_us(count: int, kind: str, calls: int = 10_000) -> float:
    """The bus core alone (no sockets): microseconds per routed call, observers included —
    the engine's own cost, steady whatever else the machine runs."""
    import logging

    import structlog

    from supervisor.engine.connection import Connection
    from supervisor.engine.runner import build_bus
    from transport import messages as m

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    bus = build_bus()

    def link(name: str, features: list[str] | None = None) -> Connection:
        conn = Connection(kind="bench")
        bus.attach(conn)
        data = {"name": name, "features": features or []}
        void = m.TriggerAction("void")
        bus.handle(conn, m.InvokeFunction("engine::workers::register", data, action=void))
        return conn

    def drain(conn: Connection) -> list[Any]:
        out = []
        while True:
            try:
                out.append(conn._recv.receive_nowait())  # type: ignore[union-attr]
            except Exception:
                conn._queued = 0  # what a writer task would have done: the outbox is empty
                return out

    callee, caller, watcher = link("callee"), link("caller"), link("watcher", FEATURES)
    bus.handle(callee, m.RegisterFunction("bench::echo"))
    bus.handle(watcher, m.RegisterFunction("bench::sink"))
    for i in range(count):
        source = {"function_id": "bench::echo", "filters": filters(kind, i)}
        target = {"function_id": "bench::sink"}
        bus.handle(watcher, m.Observe(f"o{i}", source, target, max_in_flight=10_000))
    for conn in (callee, caller, watcher):
        drain(conn)
    t0 = time.perf_counter()
    for _ in range(calls):
        inv = str(uuid.uuid4())
        bus.handle(caller, m.InvokeFunction("bench::echo", PAYLOAD, inv))
        for fwd in drain(callee):
            assert fwd.invocation_id is not None
            bus.handle(callee, m.InvocationResult(fwd.invocation_id, "bench::echo", fwd.data))
        for act in drain(watcher):
            if isinstance(act, m.InvokeFunction) and act.invocation_id is not None:
                bus.handle(watcher, m.InvocationResult(act.invocation_id, "bench::sink"))
        drain(caller)
    return (time.perf_counter() - t0) / calls * 1e6


PHASES: list[tuple[str, int, str]] = [
    ("0 observers", 0, "eq"),
    ("1 not matching", 1, "eq"),
    ("10 not matching", 10, "eq"),
    ("10 not m. ($lt)", 10, "range"),
    ("1 matching", 1, "match"),
    ("10 matching", 10, "match"),
]


def measure(engine: EngineProcess, callers: int) -> dict[str, Any]:
    assert engine.proc is not None
    c0 = cpu_seconds(engine.proc.pid)
    row: dict[str, Any] = trio.run(run_callers, engine.url, callers, engine_msg, engine_reply, True)
    row["cpu_us"] = (cpu_seconds(engine.proc.pid) - c0) / max(1, row["calls"]) * 1e6
    return row


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-observe-"))
    engine = EngineProcess({"workers": []}, tmp, env={"III_LOG_LEVEL": "warning"}).start()
    callee = subprocess.Popen(
        [sys.executable, "-m", "tests.perf._peers", "callee", engine.url], cwd=REPO
    )
    results: dict[str, dict[str, list[float]]] = {
        name: {"p50": [], "p99": [], "one_per_s": [], "per_s": [], "cpu": []}
        for name, _, _ in PHASES
    }
    try:
        time.sleep(1.0)  # callee registered
        for _ in range(ROUNDS):
            for name, count, kind in PHASES:
                peer = start_sink(engine.url, count, kind)
                try:
                    one = measure(engine, 1)
                    many = measure(engine, 16)
                finally:
                    peer.kill()
                    peer.wait(5)
                    time.sleep(0.3)  # its observers are suspended: no longer watched
                got = results[name]
                got["p50"].append(one["p50_ms"])
                got["p99"].append(one["p99_ms"])
                got["one_per_s"].append(one["per_s"])
                got["per_s"].append(many["per_s"])
                got["cpu"].append(many["cpu_us"])
        med = {
            name: {k: statistics.median(v) for k, v in got.items()} for name, got in results.items()
        }
        base = med["0 observers"]
        print(f"\ninvoke with observers on the called function (medians of {ROUNDS} rounds)")
        print(
            f"{'observers':>16} | {'p50 1 caller':>12} {'p99':>9} {'calls/s':>8} | "
            f"{'16 callers/s':>12} {'engine CPU/call':>15} | {'p50 vs 0':>8}"
        )
        for name, _, _ in PHASES:
            row = med[name]
            print(
                f"{name:>16} | {row['p50']:>10.3f}ms {row['p99']:>7.3f}ms "
                f"{row['one_per_s']:>8.0f} | {row['per_s']:>12.0f} {row['cpu']:>13.0f}us | "
                f"{(row['p50'] / base['p50'] - 1) * 100:>+7.1f}%"
            )
        core_us(0, "eq", 2_000)  # warm-up: first calls pay for imports and caches
        runs: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
        for _ in range(5):  # interleaved, best of 5: the least disturbed run of each
            for name, n, kind in PHASES:
                runs[name].append(core_us(n, kind))
        core = {name: min(v) for name, v in runs.items()}
        print("\nthe bus core alone (no sockets), microseconds per call (best of 5 x 10,000)")
        for name, _, _ in PHASES:
            extra = core[name] - core["0 observers"]
            share = extra / (base["p50"] * 1000) * 100
            print(
                f"{name:>16} | {core[name]:>6.1f} us | +{extra:>5.1f} us = {share:>4.1f} % of p50"
            )
        core_share = (core["10 not matching"] - core["0 observers"]) / (base["p50"] * 1000)
        print(
            f"10 non-matching observers add {core_share * 100:.1f} % of the 0-observer round trip "
            f"in engine-core time {'PASS' if core_share <= 0.05 else 'MISS'}"
        )
        range_share = (core["10 not m. ($lt)"] - core["0 observers"]) / (base["p50"] * 1000)
        print(
            f"10 non-matching $lt observers (not indexed: the range pre-check) add "
            f"{range_share * 100:.1f} % {'PASS' if range_share <= 0.05 else 'MISS'}"
        )
        cost = med["10 not matching"]["p50"] / base["p50"] - 1
        cpu = med["10 not matching"]["cpu"] / base["cpu"] - 1
        verdict = "PASS" if cost <= 0.05 else "MISS"
        print(
            f"target: 10 non-matching observers cost <= 5 % of the round trip: "
            f"{cost * 100:+.1f}% (engine CPU per call {cpu * 100:+.1f}%) {verdict}"
        )
        return 0
    finally:
        callee.terminate()
        engine.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sink":
        trio.run(sink, sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main())
