"""A span per invocation, kept by a dispatch + completion hook (PROTOCOL.md §7.6).

Dispatch: a call that carries a valid ``traceparent`` is continued (the engine's span is its
child), one without (or with a malformed one) starts a new trace — unless it comes from a worker
serving exactly one call, which it then joins (``_inferred``). Either way the callee gets a
``traceparent`` whose parent is the engine's span, so whatever it calls next joins the same
trace. Completion: while ``iii-observability::ingest`` is registered, the span is kept as one
tuple; the tuples are turned into an OTLP/JSON ``ExportTraceServiceRequest`` only when a batch
is flushed (every ``FLUSH_INTERVAL`` seconds or ``BATCH_SIZE`` spans), and sent to the ingest
function fire-and-forget with ``source: "engine"``. While it is not registered nothing is kept
and nothing is serialised. Calls to the ingest function itself get no span (a flush would
otherwise make the spans of the next one).

At debug level every finished call is one log line carrying its ``trace_id``/``span_id``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import structlog
import trio

from manifests.blocks.observability import INGEST_FUNCTION_ID
from supervisor.engine.errors import DEFAULT
from transport.tracecontext import new_span_id, new_trace_id, parse_traceparent

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus
    from supervisor.engine.invocations import Pending
    from transport.messages import ErrorBody

__all__ = ["BATCH_SIZE", "FLUSH_INTERVAL", "Tracing", "otlp_spans"]

log = structlog.get_logger(__name__)

FLUSH_INTERVAL = 0.2
BATCH_SIZE = 256
SERVER = 2  # OTLP SpanKind
STATUS_OK, STATUS_ERROR = 1, 2
SCOPE = "iii-supervisor"

# traceparent (the engine span's), parent span id, function id, namespace, started, ended (bus
# clock seconds), error, callee worker id, caller worker id.
SpanRecord = tuple[
    str, str | None, str, str, float, float, "ErrorBody | None", str | None, str | None
]


class Tracing:
    def __init__(
        self,
        bus: Bus,
        *,
        service_name: str = "iii",
        flush_interval: float = FLUSH_INTERVAL,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.bus = bus
        self.service_name = service_name
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.spans: list[SpanRecord] = []
        self.flushes = 0
        # bus clock seconds → Unix nanoseconds
        self._epoch_ns = time.time_ns() - int(bus.clock() * 1e9)
        self._revision = -1
        self._live = False
        self._flush_due = False
        self._attr_cache: dict[Any, tuple[str, list[dict[str, Any]]]] = {}
        enabled = getattr(log, "is_enabled_for", None)
        self._debug = enabled is None or bool(enabled(logging.DEBUG))

    # -- hooks -----------------------------------------------------------------------------

    def on_dispatch(self, pending: Pending, data: Any) -> None:
        if pending.function_id == INGEST_FUNCTION_ID:
            return None
        parsed = parse_traceparent(pending.traceparent)
        if parsed is None:
            parsed = self._inferred(pending)
        if parsed is None:
            pending.traceparent = f"00-{new_trace_id()}-{new_span_id()}-01"
        else:
            trace_id, pending.parent_span_id, flags = parsed
            pending.traceparent = f"00-{trace_id}-{new_span_id()}-{flags}"
        return None

    def on_completion(
        self, pending: Pending, result: Any, err: ErrorBody | None, now: float
    ) -> None:
        tp = pending.traceparent
        if tp is None or pending.function_id == INGEST_FUNCTION_ID:
            return
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
        if not self.ingest_live():
            return
        callee = pending.callee
        caller = pending.caller
        self.spans.append(
            (
                tp,
                pending.parent_span_id,
                pending.function_id,
                pending.namespace,
                pending.started,
                now,
                err,
                callee.worker_id if callee is not None else None,
                caller.worker_id if caller is not None else None,
            )
        )
        if len(self.spans) >= self.batch_size:
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
        spans, self.spans = self.spans, []
        if not spans or not self.ingest_live():
            return
        self.flushes += 1
        body = otlp_spans(spans, self._epoch_ns, self.service_name, self._attr_cache)
        self.bus.internal_invoke(
            INGEST_FUNCTION_ID,
            {"kind": "OTLP", "body": body, "source": "engine", "worker_id": None},
        )


def _attr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def otlp_spans(
    spans: list[SpanRecord],
    epoch_ns: int,
    service_name: str,
    cache: dict[Any, tuple[str, list[dict[str, Any]]]] | None = None,
) -> dict[str, Any]:
    """An OTLP/JSON ExportTraceServiceRequest (lower-case hex ids, nanosecond strings), as the
    SDKs' telemetry frames carry it. ``cache`` keeps the name and attributes a (function,
    namespace, callee, caller) shares across spans, so they are built once."""
    shared = {} if cache is None else cache
    if len(shared) > 4096:
        shared.clear()
    out = []
    for tp, parent, function_id, namespace, started, ended, err, callee, caller in spans:
        key = (function_id, namespace, callee, caller)
        found = shared.get(key)
        if found is None:
            attributes = [_attr("iii.function.id", function_id), _attr("iii.namespace", namespace)]
            if callee is not None:
                attributes.append(_attr("iii.worker.id", callee))
            if caller is not None:
                attributes.append(_attr("iii.caller.worker_id", caller))
            found = shared[key] = (f"call {function_id}", attributes)
        name, attributes = found
        span: dict[str, Any] = {
            "traceId": tp[3:35],
            "spanId": tp[36:52],
            "name": name,
            "kind": SERVER,
            "startTimeUnixNano": str(epoch_ns + int(started * 1e9)),
            "endTimeUnixNano": str(epoch_ns + int(ended * 1e9)),
            "attributes": attributes,  # shared by the batch's spans of the same key
            "status": _OK,
        }
        if parent is not None:
            span["parentSpanId"] = parent
        if err is not None:
            span["attributes"] = [*attributes, _attr("iii.error.code", err.code)]
            span["status"] = {"code": STATUS_ERROR, "message": err.message}
        out.append(span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", service_name)]},
                "scopeSpans": [{"scope": {"name": SCOPE, "version": ""}, "spans": out}],
            }
        ]
    }


_OK = {"code": STATUS_OK, "message": ""}
