"""The control plane under a registration flood: is it linear, and does it stall others?

One worker registers N functions (N = 1k, 5k, 20k, 50k) and then disconnects, while a second
worker makes a steady 200 calls/s through the engine to a third. Printed per N: the time per
registration (N frames plus one cheap call answered after them, since a link's messages are
handled in order) and the steady caller's p99 and worst latency while the burst and the
disconnect clean-up run. The baseline, in the same run, is the steady caller with no burst.
Targets (architecture issue): per-registration time at 50k within 2x of 1k; during each
burst p99 <= 50 ms and no call slower than 250 ms.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import trio

from tests.perf._leanws import LeanClient
from tests.support import REPO, EngineProcess

SIZES = (1_000, 5_000, 20_000, 50_000)
RATE = 200.0
BATCH = 1_000
SETTLE = 0.5  # keep measuring this long after the disconnect


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def invoke(function_id: str, data: object) -> tuple[str, str]:
    inv = str(uuid.uuid4())
    frame = {
        "type": "invokefunction",
        "function_id": function_id,
        "invocation_id": inv,
        "data": data,
    }
    return orjson.dumps(frame).decode(), inv


async def wait_reply(ws: LeanClient, inv: str) -> dict:
    while True:
        msg = orjson.loads(await ws.recv())
        if msg.get("type") == "invocationresult" and msg.get("invocation_id") == inv:
            return msg


async def steady_calls(url: str, seconds: float) -> None:
    """Its own process (the flood's frame building must not delay it): call bench::echo at a
    fixed rate, then print (start time, latency) of every call as JSON. perf_counter is
    CLOCK_MONOTONIC, shared by every process on the machine."""
    ws = await LeanClient.connect(url)
    await ws.recv()  # workerregistered
    samples: list[tuple[float, float]] = []
    period = 1.0 / RATE
    next_at = time.perf_counter()
    stop_at = next_at + seconds
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_sigterm() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_sigterm)
            print("ready", flush=True)
            while next_at < stop_at:
                frame, inv = invoke("bench::echo", {"n": 1})
                t0 = time.perf_counter()
                await ws.send(frame)
                with trio.fail_after(10):
                    await wait_reply(ws, inv)
                samples.append((t0, time.perf_counter() - t0))
                next_at += period
                await trio.sleep(max(0.0, next_at - time.perf_counter()))
            nursery.cancel_scope.cancel()
    print(orjson.dumps(samples).decode(), flush=True)


def window(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [lat for t0, lat in samples if start <= t0 <= end]


async def burst(url: str, n: int) -> tuple[float, float]:
    """Register n functions on a fresh link; returns (seconds to apply them, to disconnect)."""
    ws = await LeanClient.connect(url)
    await ws.recv()
    prefix = uuid.uuid4().hex[:8]
    announce = {
        "type": "invokefunction",
        "function_id": "engine::workers::register",
        "action": {"type": "void"},
        "data": {"name": f"flood-{prefix}", "pid": 0},
    }
    await ws.send(orjson.dumps(announce).decode())
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        await ws.send_many(
            [
                orjson.dumps({"type": "registerfunction", "id": f"flood{prefix}::f{i}"}).decode()
                for i in range(start, min(n, start + BATCH))
            ]
        )
    frame, inv = invoke("engine::channels::create", {})
    await ws.send(frame)
    with trio.fail_after(120):
        await wait_reply(ws, inv)
    applied = time.perf_counter() - t0
    t1 = time.perf_counter()
    await ws.aclose()
    # The clean-up is done once a probe on another link no longer finds the last function.
    probe = await LeanClient.connect(url)
    await probe.recv()
    while True:
        frame, inv = invoke("engine::functions::info", {"function_id": f"flood{prefix}::f{n - 1}"})
        await probe.send(frame)
        reply = await wait_reply(probe, inv)
        if reply.get("error"):
            break
        await trio.sleep(0.01)
    await probe.aclose()
    return applied, time.perf_counter() - t1


Window = tuple[str, float, float, float, float]  # name, us/registration, disconnect, from, to


async def measure(url: str) -> list[Window]:
    windows: list[tuple[str, float, float, float, float]] = []
    await trio.sleep(1.0)
    t0 = time.perf_counter()
    await trio.sleep(2.0)
    windows.append(("idle", 0.0, 0.0, t0, time.perf_counter()))
    for n in SIZES:
        start = time.perf_counter()
        applied, gone = await burst(url, n)
        await trio.sleep(SETTLE)
        windows.append((f"{n:,}", applied / n * 1e6, gone, start, time.perf_counter()))
        await trio.sleep(0.5)
    return windows


def main() -> int:
    if sys.argv[1:2] == ["steady"]:
        trio.run(steady_calls, sys.argv[2], float(sys.argv[3]))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-control-"))
    engine = EngineProcess({"workers": []}, tmp, env={"III_LOG_LEVEL": "warning"}).start()
    callee = subprocess.Popen(
        [sys.executable, "-m", "tests.perf._peers", "callee", engine.url], cwd=REPO
    )
    try:
        time.sleep(1.0)  # callee registered
        steady = subprocess.Popen(
            [sys.executable, "-m", "tests.perf.bench_control_plane", "steady", engine.url, "120"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert steady.stdout is not None
        assert steady.stdout.readline().strip() == "ready"
        windows = trio.run(measure, engine.url)
        steady.terminate()  # SIGTERM ends the caller; it prints what it measured on the way out
        out, _ = steady.communicate(timeout=30)
    finally:
        callee.terminate()
        engine.stop()
    samples = [(float(a), float(b)) for a, b in orjson.loads(out.strip().splitlines()[-1])]
    rows = []
    for name, per, gone, start, end in windows:
        lat = window(samples, start, end)
        rows.append((name, per, gone, pct(lat, 0.99), max(lat, default=0.0), len(lat)))
    print("\nregistration flood vs a steady 200 calls/s caller")
    print(
        f"{'N':>7} | {'us/registration':>15} {'disconnect':>10} | "
        f"{'steady p99':>10} {'worst':>9} {'calls':>6}"
    )
    for name, per, gone, p99, worst, calls in rows:
        per_s = f"{per:>13.1f}us" if per else f"{'-':>15}"
        gone_s = f"{gone * 1000:>8.0f}ms" if gone else f"{'-':>10}"
        print(
            f"{name:>7} | {per_s} {gone_s} | {p99 * 1000:>8.1f}ms {worst * 1000:>7.1f}ms {calls:>6}"
        )
    per_1k = rows[1][1]
    per_50k = rows[-1][1]
    linear = per_50k <= 2 * per_1k
    p99_ok = all(r[3] <= 0.050 for r in rows[1:])
    worst_ok = all(r[4] <= 0.250 for r in rows[1:])
    print(
        f"targets: per-registration at 50k <= 2x 1k ({per_50k / per_1k:.2f}x): "
        f"{'PASS' if linear else 'MISS'}; steady p99 <= 50 ms: {'PASS' if p99_ok else 'MISS'}; "
        f"worst <= 250 ms: {'PASS' if worst_ok else 'MISS'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
