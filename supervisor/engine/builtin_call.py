"""Running an ``engine::*`` built-in (or an owned HTTP function) for one dispatched call.

The bus hands over the call once its hooks passed; a synchronous handler's result finishes
the call at once, an awaitable one runs in the edge's nursery (``host.spawn``). It sees the
bus only through ``BuiltinHost`` (no import of the bus: the layering test forbids the cycle).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from supervisor.engine.errors import InvocationFailed, error
from supervisor.engine.functions import FunctionEntry
from supervisor.engine.invocations import Pending
from transport import messages as m
from transport.tracecontext import trace_fields

log = structlog.get_logger("supervisor.engine.bus")  # the bus's logger, as before the move


class BuiltinHost(Protocol):
    """What running a built-in needs of the bus."""

    spawn: Callable[..., None] | None

    def finish(self, pending: Pending, result: Any, err: m.ErrorBody | None) -> None: ...


def run_builtin(
    bus: BuiltinHost, entry: FunctionEntry, pending: Pending, data: Any, ctx: Any
) -> None:
    """Run ``entry``'s handler with ``ctx`` (the bus's ``CallContext``) and finish ``pending``."""
    assert entry.builtin is not None
    try:
        if data is not None and not isinstance(data, dict) and not entry.owners:
            raise InvocationFailed(
                "deserialization_error",
                f"Failed to deserialize input for {entry.function_id}: expected an object",
            )
        result = entry.builtin(ctx, data if entry.owners else data or {})  # owned: HTTP
    except InvocationFailed as exc:
        bus.finish(pending, None, error(exc.code, exc.message))
        return
    except Exception as exc:
        fields = trace_fields(pending.traceparent)
        log.exception("built-in function failed", function_id=entry.function_id, **fields)
        bus.finish(pending, None, error("invocation_failed", str(exc)))
        return
    if inspect.isawaitable(result):
        if bus.spawn is None:
            bus.finish(pending, None, error("invocation_failed", "the engine is not running"))
            return
        bus.spawn(await_builtin, bus, pending, result)
    else:
        bus.finish(pending, result, None)


async def await_builtin(bus: BuiltinHost, pending: Pending, awaitable: Awaitable[Any]) -> None:
    try:
        result = await awaitable
    except InvocationFailed as exc:
        bus.finish(pending, None, error(exc.code, exc.message))
    except Exception as exc:
        fields = trace_fields(pending.traceparent)
        log.exception("built-in function failed", function_id=pending.function_id, **fields)
        bus.finish(pending, None, error("invocation_failed", str(exc)))
    else:
        bus.finish(pending, result, None)
