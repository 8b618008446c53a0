"""Invoke round trip through the engine vs a bare trio-websocket echo, in the same run.

Caller → engine → callee → engine → caller, over loopback, with 1 and 16 concurrent callers
(one WebSocket each), and 16 calls multiplexed on one WebSocket. The baseline is the same
client (tests/perf/_leanws.py) against a bare trio-websocket echo server doing nothing but
echo: the ratio is the engine's cost over the transport's.
Targets (architecture issue, replacing issue 2's 2.5x / 5,000/s): p50 ≤ 2.0× the echo round
trip with 1 caller; 16-caller throughput ≥ 0.85× the echo server's with 16 callers.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import trio

from tests.perf._leanws import LeanClient
from tests.perf._procs import cpu_of, cpu_seconds, descendants
from tests.support import REPO, EngineProcess, free_port, wait_port

PAYLOAD = {"order": 42, "items": ["a", "b", "c"], "note": "x" * 64}
DURATION = 3.0
WARMUP = 0.5


def actors_cpu(engine_pid: int) -> float:
    """CPU seconds of the processes the engine spawned (the default config's actors, whose
    work for each call — span ingestion — competes for the same cores)."""
    return cpu_of(descendants(engine_pid))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_callers(
    url: str, callers: int, make_msg: object, is_reply: object, engine: bool
) -> dict:
    latencies: list[float] = []
    count = 0
    stop_at = 0.0
    measure_from = 0.0

    async def one() -> None:
        nonlocal count
        ws = await LeanClient.connect(url)
        try:
            if engine:
                await ws.recv()  # workerregistered
            while True:
                frame, key = make_msg()  # type: ignore[operator]
                t0 = time.perf_counter()
                await ws.send(frame)
                while not is_reply(await ws.recv(), key):  # type: ignore[operator]
                    pass
                t1 = time.perf_counter()
                if t1 >= stop_at:
                    return
                if t0 >= measure_from:
                    latencies.append(t1 - t0)
                    count += 1
        finally:
            await ws.aclose()

    start = time.perf_counter()
    measure_from = start + WARMUP
    stop_at = measure_from + DURATION
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(one)
    return {
        "callers": callers,
        "calls": count,
        "per_s": count / DURATION,
        "p50_ms": pct(latencies, 0.50) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


async def run_multiplexed(url: str, callers: int, engine: bool) -> dict:
    """``callers`` concurrent calls over ONE connection, as an SDK worker makes them."""
    latencies: list[float] = []
    count = 0
    waiting: dict[str, trio.Event] = {}
    ws = await LeanClient.connect(url)
    try:
        if engine:
            await ws.recv()  # workerregistered

        async def reader() -> None:
            while True:
                msg = orjson.loads(await ws.recv())
                event = waiting.pop(msg.get("invocation_id"), None)
                if event is not None:
                    event.set()

        async def one(stop_at: float, measure_from: float) -> None:
            nonlocal count
            while True:
                frame, key = engine_msg()
                event = waiting[key] = trio.Event()
                t0 = time.perf_counter()
                await ws.send(frame)
                await event.wait()
                t1 = time.perf_counter()
                if t1 >= stop_at:
                    return
                if t0 >= measure_from:
                    latencies.append(t1 - t0)
                    count += 1

        start = time.perf_counter()
        async with trio.open_nursery() as outer:
            outer.start_soon(reader)
            async with trio.open_nursery() as nursery:
                for _ in range(callers):
                    nursery.start_soon(one, start + WARMUP + DURATION, start + WARMUP)
            outer.cancel_scope.cancel()
    finally:
        await ws.aclose()
    return {
        "callers": callers,
        "calls": count,
        "per_s": count / DURATION,
        "p50_ms": pct(latencies, 0.50) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def engine_msg() -> tuple[str, str]:
    inv = str(uuid.uuid4())
    frame = orjson.dumps(
        {
            "type": "invokefunction",
            "function_id": "bench::echo",
            "invocation_id": inv,
            "data": PAYLOAD,
        }
    ).decode()
    return frame, inv


def engine_reply(raw: str, key: str) -> bool:
    msg = orjson.loads(raw)
    return msg.get("type") == "invocationresult" and msg.get("invocation_id") == key


echo_msg = engine_msg  # the same frame: the echo server sends it straight back


def echo_reply(raw: str, key: str) -> bool:
    return orjson.loads(raw).get("invocation_id") == key


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-invoke-"))
    echo_port = free_port()
    echo = subprocess.Popen(
        [sys.executable, "-m", "tests.perf._peers", "echo", str(echo_port)], cwd=REPO
    )
    engine = EngineProcess({"workers": []}, tmp, env={"III_LOG_LEVEL": "warning"}).start()
    callee = subprocess.Popen(
        [sys.executable, "-m", "tests.perf._peers", "callee", engine.url], cwd=REPO
    )
    try:
        wait_port(echo_port)
        time.sleep(1.0)  # callee registered
        rows = []
        assert engine.proc is not None
        for callers in (1, 16):
            c0 = cpu_seconds(echo.pid)
            base = trio.run(
                run_callers, f"ws://127.0.0.1:{echo_port}", callers, echo_msg, echo_reply, False
            )
            base["cpu_us"] = (cpu_seconds(echo.pid) - c0) / max(1, base["calls"]) * 1e6
            c0 = cpu_seconds(engine.proc.pid)
            a0 = actors_cpu(engine.proc.pid)
            eng = trio.run(run_callers, engine.url, callers, engine_msg, engine_reply, True)
            eng["cpu_us"] = (cpu_seconds(engine.proc.pid) - c0) / max(1, eng["calls"]) * 1e6
            eng["actors_us"] = (actors_cpu(engine.proc.pid) - a0) / max(1, eng["calls"]) * 1e6
            rows.append((callers, base, eng))
        c0 = cpu_seconds(echo.pid)
        mbase = trio.run(run_multiplexed, f"ws://127.0.0.1:{echo_port}", 16, False)
        mbase["cpu_us"] = (cpu_seconds(echo.pid) - c0) / max(1, mbase["calls"]) * 1e6
        c0 = cpu_seconds(engine.proc.pid)
        meng = trio.run(run_multiplexed, engine.url, 16, True)
        meng["cpu_us"] = (cpu_seconds(engine.proc.pid) - c0) / max(1, meng["calls"]) * 1e6
        print("\ninvoke round trip (loopback, 1 WebSocket per caller)")
        print(
            f"{'callers':>7} | {'echo p50':>9} {'echo p99':>9} {'echo/s':>8} | "
            f"{'engine p50':>10} {'engine p99':>10} {'engine/s':>9} | {'p50 ratio':>9}"
        )
        for callers, base, eng in rows:
            print(
                f"{callers:>7} | {base['p50_ms']:>7.3f}ms {base['p99_ms']:>7.3f}ms "
                f"{base['per_s']:>8.0f} | {eng['p50_ms']:>8.3f}ms {eng['p99_ms']:>8.3f}ms "
                f"{eng['per_s']:>9.0f} | {eng['p50_ms'] / base['p50_ms']:>8.2f}x"
            )
        print(
            "server CPU per round trip (includes warm-up): "
            + "; ".join(
                f"{c} caller(s): echo {b['cpu_us']:.0f} us, engine {e['cpu_us']:.0f} us "
                f"(+ its actors {e['actors_us']:.0f} us)"
                for c, b, e in rows
            )
        )
        print("\n16 concurrent calls multiplexed on one WebSocket (how an SDK worker calls)")
        print(
            f"   echo: p50 {mbase['p50_ms']:.3f}ms p99 {mbase['p99_ms']:.3f}ms "
            f"{mbase['per_s']:.0f}/s, server CPU {mbase['cpu_us']:.0f} us/round trip"
        )
        print(
            f" engine: p50 {meng['p50_ms']:.3f}ms p99 {meng['p99_ms']:.3f}ms "
            f"{meng['per_s']:.0f}/s, server CPU {meng['cpu_us']:.0f} us/invocation"
        )
        one = rows[0]
        sixteen = rows[1]
        ratio = one[2]["p50_ms"] / one[1]["p50_ms"]
        share = sixteen[2]["per_s"] / sixteen[1]["per_s"]
        print(
            f"target p50 <= 2.0x echo (1 caller): {ratio:.2f}x {'PASS' if ratio <= 2.0 else 'MISS'}; "
            f"16-caller throughput >= 0.85x echo: {share:.2f}x {'PASS' if share >= 0.85 else 'MISS'}"
        )
        return 0
    finally:
        callee.terminate()
        echo.terminate()
        engine.stop()


if __name__ == "__main__":
    sys.exit(main())
