"""engine::calls::stats — the RED metrics the bus keeps (supervisor/engine/metrics.py).

``{}`` → ``{"functions": [{function_id, namespace, count, errors, p50_ms, p95_ms, p99_ms,
window_count, window_errors, window_seconds}], "workers": [{worker_id, name, count, errors,
p50_ms, p95_ms, p99_ms, window_count, window_errors}], "enabled": bool}``. ``count``/``errors``
are since the engine started; the percentiles (null before the first call) and the
``window_*`` figures cover the sliding window. The optional ``function_id`` keeps the rows of
that function only. With metrics switched off both lists are empty and ``enabled`` is false.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.engine.errors import InvocationFailed

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus, CallContext


def call_stats(bus: Bus) -> dict[str, Any]:
    if bus.metrics is None:
        return {"functions": [], "workers": [], "enabled": False}
    return {**bus.metrics.snapshot(bus.clock()), "enabled": True}


def calls_stats(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    function_id = data.get("function_id")
    if function_id is not None and not isinstance(function_id, str):
        raise InvocationFailed(
            "deserialization_error",
            "Failed to deserialize input for engine::calls::stats: `function_id` must be a string",
        )
    doc = call_stats(ctx.bus)
    if function_id is not None:
        doc["functions"] = [r for r in doc["functions"] if r["function_id"] == function_id]
    return doc
