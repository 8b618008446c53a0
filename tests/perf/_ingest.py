"""The iii-observability actor's ingest path in process, for instruction counts: SPANS frames as
the engine sends them (``compact_spans``, encoded and framed), written one at a time over a real
socketpair to a ``BusClient`` serving an ``ObservabilityService`` whose store is prefilled, each
answered before the next is sent (as in bench_overhead, where batches come ~0.2 s apart).

    python -m tests.perf._ingest BATCHES [PREFILL_ROWS]

Under ``valgrind --tool=callgrind`` (with ``PYTHONHASHSEED=0``), run it for two batch counts
and take (I(b) - I(a)) / ((b - a) × BATCH_SIZE) as the instructions per span: the frames are
built alike whatever is sent, so only the ingestion differs. Without valgrind it prints the
process CPU per span, which the machine's other load disturbs.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from typing import Any

import trio

from actors.observability import tune_gc
from actors.observability.service import ObservabilityService
from actors.observability.settings import parse_config, resolve
from actors.observability.spanrows import engine_rows
from manifests.blocks.observability import DEFAULTS, ENGINE_SPANS_KIND, INGEST_FUNCTION_ID
from supervisor.engine.tracing import BATCH_SIZE, SpanRecord, compact_spans
from transport import codec
from transport import messages as m
from transport.carrier import StreamCarrier
from transport.client import BusClient
from transport.framing import FrameDecoder, encode_frame

CALLERS = 16  # bench_overhead's 16 callers: a shape each per batch
FRAMES = 16  # built in every run, whatever is sent


class Batches:
    """Span batches as the engine makes them for bench::echo calls from ``CALLERS`` callers."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.callee = str(uuid.UUID(int=self.rng.getrandbits(128)))
        self.callers = [str(uuid.UUID(int=self.rng.getrandbits(128))) for _ in range(CALLERS)]
        self.epoch = time.time_ns()
        self.clock = 0.0

    def body(self, spans: int = BATCH_SIZE) -> dict[str, Any]:
        records: list[SpanRecord] = []
        for i in range(spans):
            self.clock += 0.0002
            tp = f"00-{self.rng.getrandbits(128):032x}-{self.rng.getrandbits(64):016x}-01"
            key = ("bench::echo", "default", self.callee, self.callers[i % CALLERS])
            records.append((tp, None, key, self.clock, self.clock + 0.00015, None))
        return compact_spans(records, self.epoch, "iii", {})

    def frame(self) -> bytes:
        data = {"kind": ENGINE_SPANS_KIND, "body": self.body(), "source": "engine"}
        msg = m.InvokeFunction(
            INGEST_FUNCTION_ID, data, str(uuid.UUID(int=self.rng.getrandbits(128)))
        )
        return encode_frame(codec.encode(msg))


async def ingest(batches: int, prefill: int) -> ObservabilityService:
    """Prefill the store with ``prefill`` rows, then send ``batches`` frames one at a time."""
    tune_gc()
    source = Batches()
    ours, theirs = trio.socket.socketpair()
    client = BusClient(StreamCarrier(trio.SocketStream(ours), peer="bus"), name="iii-observability")
    settings = resolve(parse_config(DEFAULTS), {})
    service = ObservabilityService(client, settings, rng=random.Random(1))
    service.register_ingest()
    for _ in range(prefill // BATCH_SIZE):
        service.add_rows(engine_rows(source.body()))
    frames = [source.frame() for _ in range(max(FRAMES, batches))][:batches]
    engine = trio.SocketStream(theirs)
    decoder = FrameDecoder(1 << 26)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        for frame in frames:
            await engine.send_all(frame)
            answered = False
            while not answered:
                for raw in decoder.feed(await engine.receive_some(65536)):
                    answered = answered or (isinstance(raw, bytes) and b'"invocationresult"' in raw)
        nursery.cancel_scope.cancel()
    assert service.ingested[ENGINE_SPANS_KIND] == batches, service.ingested
    return service


def main() -> int:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else FRAMES
    prefill = int(sys.argv[2]) if len(sys.argv) > 2 else 300_000
    start = time.process_time()
    service = trio.run(ingest, batches, prefill)
    took = time.process_time() - start
    assert service.spans is not None
    print(
        f"{batches} batches of {BATCH_SIZE} spans after {prefill} rows: {len(service.spans)} "
        f"stored, {service.spans.bytes / 2**20:.0f} MiB; process CPU {took:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
