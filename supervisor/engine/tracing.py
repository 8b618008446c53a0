"""A span per invocation, kept by a dispatch + completion hook (PROTOCOL.md §7.6).

Dispatch: a call that carries a valid ``traceparent`` is continued (the engine's span is its
child), one without (or with a malformed one) starts a new trace — unless it comes from a worker
serving exactly one call, which it then joins (``_inferred``). Either way the callee gets a
``traceparent`` whose parent is the engine's span, so whatever it calls next joins the same
trace. With a ``Sampler`` (sampling.py) the decision is made here and carried as the sampled
flag of that ``traceparent``; without one every span is kept and the flags pass on as they came.

Completion: while ``iii-observability::ingest`` is registered, a kept span is one tuple; the
tuples become a compact batch (``ENGINE_SPANS_KIND``: shared name/attribute shapes and one short
row per span) only when a batch is flushed (every ``FLUSH_INTERVAL`` seconds or ``BATCH_SIZE``
spans), sent to the ingest function fire-and-forget with ``source: "engine"``. While it is not
registered nothing is kept and nothing is serialised. At most ``MAX_BATCHES_IN_FLIGHT`` batches
are outstanding: while the actor is that far behind (starved of CPU, or stopped), a batch is
dropped and counted (``dropped_spans``, a warning every ``REPORT_EVERY``
seconds) instead of queueing without end in front of its socket. Calls to the ingest function itself get no
span (a flush would otherwise make the spans of the next one). With ``live_spans`` (WORKERS.md
§10.1), a call still in flight at a flush and older than ``flush_interval`` is sent once as a
pending span (end 0), which its finished span later replaces: calls shorter than that cost
nothing more.

At debug level every finished call is one log line carrying its ``trace_id``/``span_id``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import structlog
import trio

from manifests.blocks.observability import ENGINE_SPANS_KIND, INGEST_FUNCTION_ID, ObservabilityBlock
from manifests.blocks.strict import parse
from supervisor.engine.errors import DEFAULT
from supervisor.engine.sampling import SAMPLED_FLAGS, Sampler
from transport.tracecontext import new_span_ids, new_traceparents, parse_traceparent

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus
    from supervisor.engine.invocations import Pending
    from transport.messages import ErrorBody

__all__ = [
    "BATCH_SIZE",
    "FLUSH_INTERVAL",
    "SCOPE",
    "SpanBatch",
    "Tracing",
    "compact_spans",
    "live_spans_of",
]

log = structlog.get_logger(__name__)

FLUSH_INTERVAL = 0.2
# Spans per batch at most: ~100 kB of frame. A batch costs the engine an invocation and the
# actor a frame, a call and its answer whatever its size: 1024 rather than 256 took ~1.4k
# instructions per call off the engine's bus core and ~1.5k per span off the actor's ingestion.
# Below ~5,000 calls/s a batch is sent every FLUSH_INTERVAL before it is full, as before.
BATCH_SIZE = 1024
MAX_BATCHES_IN_FLIGHT = 16  # 16k spans at BATCH_SIZE: ~1 s of a busy engine's calls
REPORT_EVERY = 5.0
SCOPE = "iii-supervisor"
_SHAPES_MAX = 4096

# What a span's name and attributes are made of: (function id, namespace, callee worker id,
# caller worker id).
ShapeKey = tuple[str, str, "str | None", "str | None"]
# traceparent (the engine span's), parent span id, shape key, started, ended (bus clock
# seconds; None: still running, a live span), error.
SpanRecord = tuple[str, "str | None", ShapeKey, float, "float | None", "ErrorBody | None"]


class Tracing:
    def __init__(
        self,
        bus: Bus,
        *,
        service_name: str = "iii",
        flush_interval: float = FLUSH_INTERVAL,
        batch_size: int = BATCH_SIZE,
        sampler: Sampler | None = None,
        live: bool = False,
    ) -> None:
        self.bus = bus
        self.service_name = service_name
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.sampler = sampler
        self.live = live
        self._announced: set[str] = set()  # in-flight calls already sent as live spans
        self.flushes = 0
        self.max_in_flight = MAX_BATCHES_IN_FLIGHT
        self.in_flight = 0  # batches sent and not answered yet
        self.dropped_spans = 0  # in batches dropped while ``max_in_flight`` were outstanding
        self._reported_at = -REPORT_EVERY
        # bus clock seconds → Unix nanoseconds
        self._epoch_ns = time.time_ns() - int(bus.clock() * 1e9)
        self._revision = -1
        self._live = False
        self._flush_due = False
        # Ids made in bulk (tracecontext.new_traceparents): new traces' traceparents, span ids.
        # The engine forks no child that runs Python, so no child draws the same ids.
        self._fresh: Iterator[str] = iter(())
        self._span_ids: Iterator[str] = iter(())
        self._shapes: dict[ShapeKey, list[Any]] = {}  # [name, attributes] built once per key
        self.batch = SpanBatch(self._epoch_ns, self._shapes)  # the spans kept, as rows
        enabled = getattr(log, "is_enabled_for", None)
        self._debug = enabled is None or bool(enabled(logging.DEBUG))

    # -- hooks -----------------------------------------------------------------------------

    def on_dispatch(self, pending: Pending, data: Any) -> None:
        if pending.function_id == INGEST_FUNCTION_ID:
            return None
        tp = pending.traceparent
        parsed = None if tp is None else parse_traceparent(tp)
        if parsed is None:
            caller = pending.caller
            if caller is not None and len(caller.calls_in) == 1:
                parsed = self._inferred(pending)
        sampler = self.sampler
        if parsed is None:  # a new trace: both ids from the bulk-made list, sampled
            tp = next(self._fresh, None)
            if tp is None:
                self._fresh = iter(new_traceparents())
                tp = next(self._fresh)
            if sampler is not None and not sampler.sampled(
                tp[3:35], pending.function_id, _name(pending), None, pending.started
            ):
                tp = tp[:53] + "00"
        else:
            trace_id, pending.parent_span_id, flags = parsed
            if sampler is not None:
                sampled = flags[1] in SAMPLED_FLAGS
                keep = sampler.sampled(
                    trace_id, pending.function_id, _name(pending), sampled, pending.started
                )
                if keep != sampled:
                    flags = f"{int(flags, 16) ^ 1:02x}"
            span_id = next(self._span_ids, None)
            if span_id is None:
                self._span_ids = iter(new_span_ids())
                span_id = next(self._span_ids)
            tp = f"00-{trace_id}-{span_id}-{flags}"
        pending.traceparent = tp
        if self.live and not self._flush_due and self.bus.spawn is not None:
            self._flush_due = True  # so a long call is announced even if nothing else ends
            self.bus.spawn(self._flush_later)
        return None

    def on_completion(
        self, pending: Pending, result: Any, err: ErrorBody | None, now: float
    ) -> None:
        tp = pending.traceparent
        if tp is None or pending.function_id == INGEST_FUNCTION_ID:
            return
        if self._announced:
            self._announced.discard(pending.invocation_id)
        if self._debug:
            log.debug(
                "call finished",
                function_id=pending.function_id,
                invocation_id=pending.invocation_id,
                trace_id=tp[3:35],
                span_id=tp[36:52],
                parent_span_id=pending.parent_span_id,
                duration_ms=round((now - pending.started) * 1000, 3),
                error=err.code if err is not None else None,
            )
        if self.sampler is not None and tp[54:55] not in SAMPLED_FLAGS:
            return  # sampled out: the decision made at dispatch rides in the flags
        if self.bus.functions.revision != self._revision:
            self.ingest_live()
        if not self._live:
            return
        callee = pending.callee
        caller = pending.caller
        key = (
            pending.function_id,
            pending.namespace,
            None if callee is None else callee.worker_id,
            None if caller is None else caller.worker_id,
        )
        batch = self.batch
        at = batch.index.get(key)
        if at is None:
            at = batch.shape(key)
        epoch = batch.epoch_ns
        start, end = epoch + int(pending.started * 1e9), epoch + int(now * 1e9)
        row = [tp, pending.parent_span_id, at, start, end]
        if err is not None:
            row += (err.code, err.message)
        batch.rows.append(row)
        if len(batch.rows) >= self.batch_size:
            self.flush()
        elif not self._flush_due and self.bus.spawn is not None:
            self._flush_due = True
            self.bus.spawn(self._flush_later)

    def _inferred(self, pending: Pending) -> tuple[str, str, str] | None:
        """The context of a call that came without one from a worker serving exactly one call:
        that call's (an SDK 0.23 sync handler runs in a thread without the handler's context,
        so its calls carry none). With several calls in flight to it, nothing is guessed."""
        caller = pending.caller
        if caller is None or len(caller.calls_in) != 1:
            return None
        for inv_id in caller.calls_in:
            outer = self.bus.table.get(inv_id)
            if outer is not None:
                return parse_traceparent(outer.traceparent)
        return None

    # -- forwarding ------------------------------------------------------------------------

    def ingest_live(self) -> bool:
        """Whether the ingest function is registered (looked up again only when the function
        table changed)."""
        revision = self.bus.functions.revision
        if revision != self._revision:
            self._revision = revision
            self._live = self.bus.functions.get((DEFAULT, INGEST_FUNCTION_ID)) is not None
        return self._live

    async def _flush_later(self) -> None:
        try:
            await trio.sleep(self.flush_interval)
        finally:
            self._flush_due = False
        self.flush()

    def flush(self) -> None:
        """Send the kept spans to the ingest function (dropped when it has gone)."""
        batch = self.batch
        if len(self._shapes) > _SHAPES_MAX:
            self._shapes.clear()
        self.batch = SpanBatch(self._epoch_ns, self._shapes)
        if self.live and self.ingest_live():
            for record in self._still_running(self.bus.clock()):
                batch.add(*record)
        if not batch.rows or not self.ingest_live():
            return
        if self.in_flight >= self.max_in_flight:
            self._drop(len(batch.rows))
            return
        self.flushes += 1
        body = batch.body(self.service_name)
        self.in_flight += 1
        self.bus.internal_invoke(
            INGEST_FUNCTION_ID,
            {"kind": ENGINE_SPANS_KIND, "body": body, "source": "engine", "worker_id": None},
            on_done=self._answered,
        )

    def _answered(self, result: Any, err: ErrorBody | None) -> None:
        self.in_flight -= 1

    def _drop(self, count: int) -> None:
        self.dropped_spans += count
        now = self.bus.clock()
        if now - self._reported_at >= REPORT_EVERY:
            self._reported_at = now
            log.warning(
                "engine spans dropped: iii-observability is behind",
                batches_in_flight=self.in_flight,
                dropped_spans=self.dropped_spans,
            )

    def _still_running(self, now: float) -> list[SpanRecord]:
        """Live spans of the calls in flight for at least ``flush_interval``, once each."""
        cutoff = now - self.flush_interval
        announced = self._announced
        out: list[SpanRecord] = []
        for p in self.bus.table.in_flight():
            tp = p.traceparent
            if p.started > cutoff or tp is None or p.invocation_id in announced:
                continue
            if p.function_id == INGEST_FUNCTION_ID or (
                self.sampler is not None and tp[54:55] not in SAMPLED_FLAGS
            ):
                continue
            announced.add(p.invocation_id)
            callee, caller = p.callee, p.caller
            key = (
                p.function_id,
                p.namespace,
                callee.worker_id if callee is not None else None,
                caller.worker_id if caller is not None else None,
            )
            out.append((tp, p.parent_span_id, key, p.started, None, None))
        return out


def _name(pending: Pending) -> str | None:
    callee = pending.callee
    return None if callee is None else callee.name


def live_spans_of(raw: Any, env: Mapping[str, str] | None = None) -> bool:
    """``live_spans`` of an ``iii-observability`` block: the field, else ``OTEL_LIVE_SPANS``,
    else off. WORKERS.md §10.1 turns it on by default with the memory exporter (the default
    config); here it is opt-in: with it on by default, the RED-metrics integration test
    (caller-measured latency within 10 % of the engine's) failed whenever it ran beside the
    observability tests, and passed with it off, for a reason not found yet."""
    block = parse(ObservabilityBlock, raw)
    if block.live_spans is not None:
        return block.live_spans
    env = os.environ if env is None else env
    value = env.get("OTEL_LIVE_SPANS")
    return value is not None and value.strip().lower() in ("true", "1")


def shape_of(key: ShapeKey) -> list[Any]:
    """A span's [name, attribute pairs] (OTLP semantic names of ours, string values)."""
    function_id, namespace, callee, caller = key
    attributes = [["iii.function.id", function_id], ["iii.namespace", namespace]]
    if callee is not None:
        attributes.append(["iii.worker.id", callee])
    if caller is not None:
        attributes.append(["iii.caller.worker_id", caller])
    return [f"call {function_id}", attributes]


class SpanBatch:
    """The rows of one ``ENGINE_SPANS_KIND`` batch (manifests.blocks.observability), made as
    spans end: one shape per distinct key, one short row per span naming its shape by index.
    ``cache`` keeps shapes across batches. ``Tracing.on_completion`` appends its rows itself
    (the hot path), as ``add`` does."""

    __slots__ = ("cache", "epoch_ns", "index", "rows", "shapes")

    def __init__(self, epoch_ns: int, cache: dict[ShapeKey, list[Any]] | None = None) -> None:
        self.epoch_ns = epoch_ns  # bus clock seconds → Unix ns: epoch_ns + seconds * 1e9
        self.cache = {} if cache is None else cache
        self.index: dict[ShapeKey, int] = {}
        self.shapes: list[list[Any]] = []
        self.rows: list[list[Any]] = []

    def shape(self, key: ShapeKey) -> int:
        """The index of ``key``'s shape in this batch, added now."""
        shape = self.cache.get(key)
        if shape is None:
            shape = self.cache[key] = shape_of(key)
        at = self.index[key] = len(self.shapes)
        self.shapes.append(shape)
        return at

    def add(
        self,
        tp: str,
        parent: str | None,
        key: ShapeKey,
        started: float,
        ended: float | None,
        err: ErrorBody | None,
    ) -> None:
        at = self.index.get(key)
        if at is None:
            at = self.shape(key)
        start = self.epoch_ns + int(started * 1e9)
        end = 0 if ended is None else self.epoch_ns + int(ended * 1e9)
        if err is None:
            self.rows.append([tp, parent, at, start, end])
        else:
            self.rows.append([tp, parent, at, start, end, err.code, err.message])

    def body(self, service_name: str) -> dict[str, Any]:
        return {
            "service_name": service_name,
            "scope": SCOPE,
            "shapes": self.shapes,
            "spans": self.rows,
        }


def compact_spans(
    spans: list[SpanRecord],
    epoch_ns: int,
    service_name: str,
    cache: dict[ShapeKey, list[Any]] | None = None,
) -> dict[str, Any]:
    """The ``ENGINE_SPANS_KIND`` body of ``spans``, as the engine sends a batch of them."""
    batch = SpanBatch(epoch_ns, cache)
    for record in spans:
        batch.add(*record)
    return batch.body(service_name)
