"""engine::workers::list, ::info and ::register (PROTOCOL.md §12.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.engine.errors import DEFAULT, InvocationFailed

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus, CallContext


def _worker_summary(bus: Bus, conn: Any) -> dict[str, Any]:
    meta = conn.metadata
    return {
        "id": conn.worker_id,
        "name": conn.name,
        "description": meta.get("description"),
        "version": meta.get("version"),
        "namespace": conn.ns,
        "runtime": meta.get("runtime") or ("unknown" if conn.registered else None),
        "os": meta.get("os"),
        "status": "connected",
        "function_count": len(conn.functions),
        "connected_at_ms": int(conn.connected_at * 1000),
        "active_invocations": len(conn.calls_in),
        "isolation": meta.get("isolation"),
        "ip_address": conn.peer if conn.kind == "websocket" else None,
    }


def _component_summaries(bus: Bus) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for rec in bus.functions.values():
        if rec.owner is None and rec.component:
            counts[rec.component] = counts.get(rec.component, 0) + 1
    return [
        {
            "id": name,
            "name": name,
            "description": None,
            "version": None,
            "namespace": DEFAULT,
            "runtime": "engine",
            "os": None,
            "status": "available",
            "function_count": count,
            "connected_at_ms": int(bus.started_at * 1000),
            "active_invocations": 0,
            "isolation": "in-process",
            "ip_address": None,
        }
        for name, count in counts.items()
    ]


def workers_list(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    search = (data.get("search") or "").lower()
    rows = [
        _worker_summary(ctx.bus, c)
        for c in ctx.bus.connections.values()
        if not c.closing and c.pid is not None
    ]
    rows += _component_summaries(ctx.bus)
    if search:
        rows = [r for r in rows if search in (r["name"] or "").lower()]
    if data.get("runtime"):
        rows = [r for r in rows if r["runtime"] == data["runtime"]]
    if data.get("status"):
        rows = [r for r in rows if r["status"] == data["status"]]
    rows.sort(key=lambda r: (r["name"] or r["id"], r["id"]))
    return {"workers": rows}


def workers_info(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    name = data.get("name")
    if not isinstance(name, str):
        raise InvocationFailed(
            "deserialization_error",
            "Failed to deserialize input for engine::workers::info: missing field `name`",
        )
    namespace = data.get("namespace")
    matches = [c for c in ctx.bus.connections.values() if c.name == name and not c.closing]
    if not matches:
        raise InvocationFailed("NOT_FOUND", f"Worker '{name}' is not connected.")
    if namespace is not None:
        chosen = [c for c in matches if c.ns == namespace]
        if not chosen:
            spaces = ", ".join(sorted(c.ns for c in matches))
            raise InvocationFailed(
                "NOT_FOUND",
                f"Worker '{name}' is not connected in the requested namespace; it is connected "
                f"in namespace(s): {spaces}",
            )
        matches = chosen
    elif len(matches) > 1:
        default = [c for c in matches if c.ns == DEFAULT]
        if len(default) != 1:
            spaces = ", ".join(sorted(c.ns for c in matches))
            raise InvocationFailed(
                "NOT_FOUND",
                f"Worker '{name}' is ambiguous: it is connected in namespace(s): {spaces}. "
                "Pass `namespace` to disambiguate.",
            )
        matches = default
    conn = matches[0]
    bus = ctx.bus
    worker = _worker_summary(bus, conn)
    worker["pid"] = conn.pid
    worker["internal"] = False
    if conn.latest_metrics:  # derived from the worker's MTRC frames (workermetrics.py)
        worker["latest_metrics"] = dict(conn.latest_metrics)
    return {
        "worker": worker,
        "functions": [bus.functions[k].summary() for k in sorted(conn.functions)],
        "trigger_types": [bus.providers[k].summary() for k in sorted(conn.trigger_types)],
        "registered_triggers": [
            bus.bindings[b].summary(conn.name or "") for b in sorted(conn.triggers)
        ],
    }


def workers_register(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    caller = ctx.caller
    if caller is None:
        wid = data.get("_caller_worker_id")
        caller = ctx.bus.connections.get(wid) if isinstance(wid, str) else None
    if caller is None:
        raise InvocationFailed("INVALID_ARGUMENTS", "engine::workers::register needs a worker")
    return ctx.bus.registrar.register_worker(caller, data)
