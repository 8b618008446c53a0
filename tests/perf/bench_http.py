"""HTTP through iii-http → worker → back, next to the same handler on a bare quart-trio app.

    python -m tests.perf.bench_http [--requests N] [--rounds R] [--no-sdk] [--own-process]

Every figure comes from one run on loopback: a bounded number of ``GET /orders/<n>`` requests
at concurrency 1, 8 and 64 (one keep-alive connection per concurrent client), against

* ``bare``: hypercorn + quart-trio serving the handler itself (the baseline);
* ``iii+fast``: engine + ``python -m actors.http`` + a worker written straight on the wire
  protocol (so the figure is the engine's and the actor's cost, not an SDK's);
* ``iii+sdk``: the same with the official Python SDK as the worker.

The load generator is a minimal HTTP/1.1 keep-alive client on trio sockets, so that on a small
machine the client takes as little CPU as possible away from the servers it measures.
Targets (issue 4): iii throughput ≥ 0.6× bare; 8 concurrent requests complete within 3× the
time of one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import trio

from tests.perf._procs import cpu_seconds
from tests.support import REPO, EngineProcess, find_process, free_port, wait_port

CONCURRENCY = (1, 8, 64)
BURSTS = 60


# -- the servers and workers (run as child processes of the benchmark) ---------------------------


def order_body(order_id: str) -> dict[str, Any]:
    return {"id": order_id, "status": "ok", "items": [1, 2, 3]}


def run_bare(port: int) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from quart import Response
    from quart_trio import QuartTrio

    app = QuartTrio("bare")

    @app.route("/orders/<order_id>")
    async def get_order(order_id: str) -> Response:
        return Response(
            json.dumps(order_body(order_id), separators=(",", ":")),
            status=200,
            content_type="application/json",
        )

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_max_requests = 1_000_000_000  # as the actor: no recycling mid-run
    trio.run(serve, app, config)


async def fast_worker(url: str) -> None:
    """A worker on the raw protocol: one function and its ``http`` trigger."""
    import orjson
    import trio_websocket

    async with trio_websocket.open_websocket_url(url, message_queue_size=256) as ws:
        await ws.get_message()  # workerregistered
        for msg in (
            {"type": "registerfunction", "id": "bench::order"},
            {
                "type": "registertrigger",
                "id": str(uuid.uuid4()),
                "trigger_type": "http",
                "function_id": "bench::order",
                "config": {"api_path": "orders/:id", "http_method": "GET"},
            },
        ):
            await ws.send_message(orjson.dumps(msg).decode())
        while True:
            msg = orjson.loads(await ws.get_message())
            if msg.get("type") == "invokefunction" and msg.get("invocation_id"):
                order_id = msg["data"]["path_params"]["id"]
                await ws.send_message(
                    orjson.dumps(
                        {
                            "type": "invocationresult",
                            "invocation_id": msg["invocation_id"],
                            "function_id": msg["function_id"],
                            "result": {"status_code": 200, "body": order_body(order_id)},
                        }
                    ).decode()
                )


def sdk_worker(url: str) -> None:
    """The official SDK as the worker, on ``sdk/orders/:id``."""
    from iii import InitOptions, register_worker

    worker = register_worker(url, InitOptions(worker_name="bench-sdk", otel={"enabled": False}))

    async def get_order(data: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": 200, "body": order_body(data["path_params"]["id"])}

    worker.register_function("bench::sdk-order", get_order)
    worker.register_trigger(
        {
            "type": "http",
            "function_id": "bench::sdk-order",
            "config": {"api_path": "sdk/orders/:id", "http_method": "GET"},
        }
    )
    while True:
        time.sleep(1)


# -- the load generator ----------------------------------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection that reads ``content-length`` framed responses."""

    def __init__(self, stream: trio.SocketStream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.buf = bytearray()

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), port)

    async def get(self, path: str) -> int:
        try:
            return await self._get(path)
        except (ConnectionError, trio.BrokenResourceError):
            # the server recycled the keep-alive connection: reconnect once
            await self.stream.aclose()
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buf.clear()
            return await self._get(path)

    async def _get(self, path: str) -> int:
        await self.stream.send_all(
            f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: */*\r\n\r\n".encode()
        )
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        while len(self.buf) < length:
            await self._fill()
        del self.buf[:length]
        return status

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    async def aclose(self) -> None:
        await self.stream.aclose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@attrs.define
class LoadResult:
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def row(self, label: str) -> str:
        return (
            f"{label:<10} c={self.concurrency:<3} {self.rps:>8.0f} req/s   "
            f"p50 {pct(self.latencies, 0.5) * 1000:>7.2f} ms   "
            f"p99 {pct(self.latencies, 0.99) * 1000:>7.2f} ms"
            + (f"   errors {self.errors}" if self.errors else "")
        )


async def load(port: int, prefix: str, concurrency: int, requests: int, warmup: int) -> LoadResult:
    conns = [await Conn.open(port) for _ in range(concurrency)]
    for c in conns:  # warm each connection (and the server's caches) before measuring
        for i in range(max(1, warmup // concurrency)):
            await c.get(f"{prefix}/{i}")
    latencies: list[float] = []
    errors = 0
    left = requests

    async def client(conn: Conn) -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            status = await conn.get(f"{prefix}/{left}")
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors += 1

    started = time.perf_counter()
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(client, conn)
    seconds = time.perf_counter() - started
    for c in conns:
        await c.aclose()
    return LoadResult(concurrency, requests, seconds, latencies, errors)


async def bursts(port: int, prefix: str, rounds: int) -> tuple[list[float], list[float]]:
    """Times of one lone request, and of 8 requests sent at the same instant."""
    conns = [await Conn.open(port) for _ in range(8)]
    for c in conns:
        await c.get(f"{prefix}/warm")
    singles: list[float] = []
    eights: list[float] = []
    with trio.fail_after(300):
        for i in range(rounds):
            t0 = time.perf_counter()
            await conns[0].get(f"{prefix}/{i}")
            singles.append(time.perf_counter() - t0)
            await trio.sleep(0.002)
            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for c in conns:
                    nursery.start_soon(c.get, f"{prefix}/{i}")
            eights.append(time.perf_counter() - t0)
            await trio.sleep(0.002)
    for c in conns:
        await c.aclose()
    return singles, eights


def spawn(*args: str, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.perf.bench_http", *args],
            cwd=REPO,
            env={**os.environ, "OTEL_ENABLED": "false", **(env or {})},
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def wait_route(port: int, prefix: str, timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                conn = await Conn.open(port)
                status = await conn.get(f"{prefix}/probe")
                await conn.aclose()
                if status == 200:
                    return
            except OSError:
                pass
            await trio.sleep(0.1)


@attrs.define
class Target:
    label: str
    port: int
    prefix: str
    pids: dict[str, int]
    runs: dict[int, list[LoadResult]] = attrs.Factory(dict)
    singles: list[float] = attrs.Factory(list)
    eights: list[float] = attrs.Factory(list)
    cpu: dict[str, float] = attrs.Factory(dict)  # process → CPU seconds spent in our runs
    requests: int = 0

    def rps(self, c: int) -> float:
        return statistics.median(r.rps for r in self.runs[c])

    def latencies(self, c: int) -> list[float]:
        return [x for r in self.runs[c] for x in r.latencies]

    @property
    def burst(self) -> float:
        return statistics.median(self.eights) / statistics.median(self.singles)


async def run_round(targets: list[Target], requests: int) -> None:
    for c in CONCURRENCY:
        for t in targets:
            before = {name: cpu_seconds(pid) for name, pid in t.pids.items()}
            res = await load(t.port, t.prefix, c, requests, warmup=min(100, requests // 5))
            for name, pid in t.pids.items():
                t.cpu[name] = t.cpu.get(name, 0.0) + cpu_seconds(pid) - before[name]
            t.requests += res.requests
            t.runs.setdefault(c, []).append(res)
            print("  " + res.row(t.label), flush=True)
    for t in targets:
        singles, eights = await bursts(t.port, t.prefix, BURSTS)
        t.singles += singles
        t.eights += eights


def report(targets: list[Target]) -> None:
    base = targets[0]
    print("\nmedian over rounds (latencies pooled):")
    for t in targets:
        for c in CONCURRENCY:
            lat = t.latencies(c)
            ratio = t.rps(c) / base.rps(c)
            print(
                f"  {t.label:<9} c={c:<3} {t.rps(c):>7.0f} req/s ({ratio:.2f}× bare)   "
                f"p50 {pct(lat, 0.5) * 1000:>7.2f} ms   p99 {pct(lat, 0.99) * 1000:>7.2f} ms"
            )
        cpu = ", ".join(f"{k} {v / t.requests * 1000:.2f}" for k, v in t.cpu.items())
        print(
            f"  {t.label:<9} one request {statistics.median(t.singles) * 1000:.2f} ms, "
            f"8 at once {statistics.median(t.eights) * 1000:.2f} ms ({t.burst:.2f}×)   "
            f"CPU ms/request: {cpu}"
        )
    print("\ntargets:")
    for t in targets[1:]:
        ratios = {c: t.rps(c) / base.rps(c) for c in CONCURRENCY}
        sat = ratios[CONCURRENCY[-1]]
        print(
            f"  {t.label}: throughput at c={CONCURRENCY[-1]} {sat:.2f}× bare "
            f"({'ok' if sat >= 0.6 else 'BELOW 0.6'}; c=1 {ratios[1]:.2f}×, c=8 {ratios[8]:.2f}×); "
            f"8 concurrent in {t.burst:.2f}× one ({'ok' if t.burst <= 3 else 'ABOVE 3'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="per level per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-sdk", action="store_true", help="skip the SDK worker")
    parser.add_argument(
        "--own-process",
        action="store_true",
        help="start the actor ourselves on a WebSocket bus link, instead of letting "
        "iii-supervisor spawn it (socketpair bus link, the real deployment)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    procs: list[subprocess.Popen[bytes]] = []
    engine: EngineProcess | None = None
    try:
        bare_port = free_port()
        bare = spawn("_bare", str(bare_port), log=tmp / "bare.log")
        procs.append(bare)

        http_port = free_port()
        http_config = {"host": "127.0.0.1", "port": http_port}
        actor: subprocess.Popen[bytes] | None = None
        if not args.own_process:  # the supervisor starts the actor (socketpair bus link)
            engine = EngineProcess(
                {"workers": [{"name": "iii-http", "config": http_config}]},
                tmp,
                env={"III_LOG_LEVEL": "info"},
            ).start()
        else:  # the actor as its own process, on a WebSocket to the engine
            engine = EngineProcess({"workers": []}, tmp, env={"III_LOG_LEVEL": "info"}).start()
            config = tmp / "iii-http.json"
            config.write_text(json.dumps(http_config))
            env = {"III_URL": engine.url, "III_ENGINE_URL": engine.url, "III_CONFIG": str(config)}
            with open(tmp / "actor.log", "ab") as fh:
                actor = subprocess.Popen(
                    [sys.executable, "-m", "actors.http"],
                    cwd=REPO,
                    env={**os.environ, **env},
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            procs.append(actor)
        assert engine.proc is not None
        wait_port(bare_port, 20, bare)
        wait_port(http_port, 30, actor or engine.proc)
        actor_pid = actor.pid if actor is not None else find_process(engine.proc.pid, "actors.http")
        fast = spawn("_fast", engine.url, log=tmp / "fast.log")
        procs.append(fast)
        iii_pids = {"engine": engine.proc.pid, "iii-http": actor_pid}
        targets = [
            Target("bare", bare_port, "/orders", {"server": bare.pid}),
            Target("iii+fast", http_port, "/orders", {**iii_pids, "worker": fast.pid}),
        ]
        if not args.no_sdk:
            sdk = spawn("_sdk", engine.url, log=tmp / "sdk.log")
            procs.append(sdk)
            targets.append(
                Target("iii+sdk", http_port, "/sdk/orders", {**iii_pids, "worker": sdk.pid})
            )
        for t in targets:
            trio.run(wait_route, t.port, t.prefix)
        mode = (
            "own process, WebSocket bus link" if args.own_process else "spawned by iii-supervisor"
        )
        print(f"iii-http actor: {mode}; {args.rounds} rounds × {args.requests} requests per level")
        for i in range(args.rounds):
            print(f"round {i + 1}:", flush=True)
            trio.run(run_round, targets, args.requests)
        report(targets)
    finally:
        for proc in reversed(procs):
            stop(proc)
        if engine is not None:
            engine.stop()
    print(f"logs: {tmp}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_bare":
        run_bare(int(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "_fast":
        trio.run(fast_worker, sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "_sdk":
        sdk_worker(sys.argv[2])
    else:
        main()
