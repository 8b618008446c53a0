"""engine::log::* (a worker's log lines in the engine's log) and engine::baggage::*."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from supervisor.engine.errors import InvocationFailed

if TYPE_CHECKING:
    from supervisor.engine.bus import CallContext

worker_log = structlog.get_logger("iii.worker")

LOG_LEVELS = ("info", "warn", "error", "debug", "trace")


def make_log(level: str) -> Any:
    method = {"warn": "warning", "trace": "debug"}.get(level, level)

    def log_fn(ctx: CallContext, data: dict[str, Any]) -> None:
        message = data.get("message")
        if not isinstance(message, str):
            raise InvocationFailed(
                "deserialization_error",
                f"Failed to deserialize input for engine::log::{level}: missing field `message`",
            )
        fields = {k: data[k] for k in ("data", "trace_id", "span_id", "service_name") if k in data}
        worker = ctx.caller.name if ctx.caller else None
        getattr(worker_log, method)(message, worker=worker, **fields)
        return None

    return log_fn


def baggage_get(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"value": None}


def baggage_set(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "note": "baggage is not propagated by the engine"}


def baggage_get_all(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"baggage": {}}
