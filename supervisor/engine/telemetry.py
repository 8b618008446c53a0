"""SDK telemetry frames (PROTOCOL.md §15) forwarded to the observability actor, bounded.

Binary frames prefixed ``OTLP`` / ``MTRC`` / ``LOGS`` (on ``/`` or on a ``/otel`` socket) carry
an OTLP/JSON export request. While ``iii-observability::ingest`` is registered each one becomes
a fire-and-forget call to it; otherwise the frame is dropped after one table look-up (nothing is
parsed). At most ``max_in_flight`` ingest calls are outstanding: a flood beyond that is dropped
and counted, so telemetry never queues ahead of invocations. Drops are logged at most once per
``REPORT_EVERY`` seconds, with the totals. A forwarded ``MTRC`` frame's ``iii.worker.*`` gauges
also update the worker's ``latest_metrics`` (``workermetrics``, for ``engine::workers::info``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog

from manifests.blocks.observability import INGEST_FUNCTION_ID
from supervisor.engine.errors import DEFAULT
from supervisor.engine.workermetrics import merge_into, worker_samples
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus

__all__ = ["MAX_IN_FLIGHT", "TelemetryForwarder"]

log = structlog.get_logger(__name__)

KINDS: Final = {b"OTLP": "OTLP", b"MTRC": "MTRC", b"LOGS": "LOGS"}
MAX_IN_FLIGHT: Final = 64
REPORT_EVERY: Final = 5.0


class TelemetryForwarder:
    def __init__(
        self,
        bus: Bus,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.in_flight = 0
        self.forwarded = 0
        self.dropped_busy = 0  # the actor is behind: more than max_in_flight outstanding
        self.dropped_invalid = 0  # not an OTLP/JSON object, or an unknown prefix
        self.dropped_unregistered = 0  # no observability actor to take it
        self._reported_at = -REPORT_EVERY
        self._reported_drops = 0

    @property
    def dropped(self) -> int:
        return self.dropped_busy + self.dropped_invalid + self.dropped_unregistered

    def offer(self, raw: bytes, worker_id: str | None) -> bool:
        """Forward one binary telemetry frame; False when it was dropped."""
        kind = KINDS.get(bytes(raw[:4]))
        if kind is None:
            self.dropped_invalid += 1
            return False
        if self.bus.functions.get((DEFAULT, INGEST_FUNCTION_ID)) is None:
            self.dropped_unregistered += 1
            return False
        if self.in_flight >= self.max_in_flight:
            self.dropped_busy += 1
            self._report()
            return False
        try:
            body = orjson.loads(raw[4:])
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self.dropped_invalid += 1
            self._report()
            return False
        if kind == "MTRC":
            merge_into(worker_samples(body, worker_id), self.bus.connections.get)
        self.in_flight += 1
        self.forwarded += 1
        data = {"kind": kind, "body": body, "source": "worker", "worker_id": worker_id}
        self.bus.internal_invoke(INGEST_FUNCTION_ID, data, on_done=self._done)
        return True

    def _done(self, result: Any, err: m.ErrorBody | None) -> None:
        self.in_flight -= 1
        if err is not None and err.code != "function_not_found":
            log.debug("telemetry ingest failed", code=err.code, message=err.message)

    def _report(self) -> None:
        now = self.clock()
        if now - self._reported_at < REPORT_EVERY:
            return
        self._reported_at = now
        log.warning(
            "telemetry frames dropped",
            dropped_busy=self.dropped_busy,
            dropped_invalid=self.dropped_invalid,
            since_last=self.dropped - self._reported_drops,
            forwarded=self.forwarded,
        )
        self._reported_drops = self.dropped
