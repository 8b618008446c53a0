"""The engine's own ``engine::*`` functions and event trigger types (PROTOCOL.md §12).

Each built-in is a plain function ``(ctx, data) -> result`` registered on the bus in
``default`` with no lease; raising ``InvocationFailed`` gives the caller that error code.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import structlog
import trio

from supervisor.engine.bus import DEFAULT, Binding, CallContext, InvocationFailed
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus, FunctionRecord

log = structlog.get_logger("iii.engine")
worker_log = structlog.get_logger("iii.worker")

LOG_LEVELS = ("info", "warn", "error", "debug", "trace")
REGISTER_TRIGGER_ACK_TIMEOUT = 10.0


def _opt_str(data: dict[str, Any], key: str, fn: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvocationFailed(
            "deserialization_error",
            f"Failed to deserialize input for {fn}: `{key}` must be a string",
        )
    return value


def _visible(rec: FunctionRecord, include_internal: bool) -> bool:
    if include_internal or rec.function_id.startswith("engine::queue::"):
        return True
    if rec.function_id.startswith("engine::"):
        return False
    meta = rec.metadata
    return not (isinstance(meta, dict) and meta.get("internal") is True)


def functions_list(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    fn = "engine::functions::list"
    search = (_opt_str(data, "search", fn) or "").lower()
    prefix = _opt_str(data, "prefix", fn)
    workers = set(data.get("workers") or [])
    if data.get("worker"):
        workers.add(data["worker"])
    include_internal = bool(data.get("include_internal"))
    rows: list[tuple[int, str, FunctionRecord]] = []
    for rec in ctx.bus.functions.values():
        if not _visible(rec, include_internal):
            continue
        if prefix and not rec.function_id.startswith(prefix):
            continue
        if workers and rec.worker_name not in workers:
            continue
        tier = 0
        if search:
            fid = rec.function_id.lower()
            desc = (rec.description or "").lower()
            if fid.startswith(search) or search in fid.split("::"):
                tier = 0
            elif search in fid:
                tier = 1
            elif search in desc:
                tier = 2
            else:
                continue
        rows.append((tier, rec.function_id, rec))
    rows.sort(key=lambda r: (r[0], r[1], r[2].namespace))
    return {"functions": [r[2].summary() for r in rows]}


def _function_detail(bus: Bus, rec: FunctionRecord) -> dict[str, Any]:
    out = rec.summary()
    if rec.request_format is not None:
        out["request_schema"] = rec.request_format
    if rec.response_format is not None:
        out["response_schema"] = rec.response_format
    out["registered_triggers"] = [
        {"id": b.id, "trigger_type": b.trigger_type, "config": b.config}
        for b in bus.bindings.values()
        if b.function_id == rec.function_id and b.target_ns == rec.namespace
    ]
    return out


def _lookup_function(bus: Bus, function_id: str, namespace: str | None) -> FunctionRecord:
    if namespace is not None:
        rec = bus.functions.get((namespace, function_id))
        if rec is None:
            raise InvocationFailed("NOT_FOUND", f"Function '{function_id}' is not registered.")
        return rec
    rec = bus.functions.get((DEFAULT, function_id))
    if rec is not None:
        return rec
    candidates = sorted(ns for ns, fid in bus.functions if fid == function_id)
    if len(candidates) == 1:
        return bus.functions[(candidates[0], function_id)]
    if not candidates:
        raise InvocationFailed("NOT_FOUND", f"Function '{function_id}' is not registered.")
    raise InvocationFailed(
        "NOT_FOUND",
        f"Function '{function_id}' is ambiguous: it is registered in namespace(s): "
        f"{', '.join(candidates)}. Pass `namespace` to select one.",
    )


def functions_info(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    single = data.get("function_id")
    batch = data.get("function_ids")
    namespace = data.get("namespace")
    if single is not None and batch is not None:
        raise InvocationFailed(
            "INVALID_ARGUMENTS", "pass either `function_id` or `function_ids`, not both"
        )
    if single is None and batch is None:
        raise InvocationFailed(
            "INVALID_ARGUMENTS", "missing field `function_id` (or `function_ids` for a batch)"
        )
    if single is not None:
        return _function_detail(ctx.bus, _lookup_function(ctx.bus, single, namespace))
    if not isinstance(batch, list) or not batch:
        raise InvocationFailed(
            "INVALID_ARGUMENTS", "`function_ids` must be a non-empty array of function ids"
        )
    ids = list(dict.fromkeys(batch))
    if len(ids) > 32:
        raise InvocationFailed("INVALID_ARGUMENTS", "too many function_ids (max 32)")
    out: list[dict[str, Any]] = []
    for fid in ids:
        try:
            out.append(_function_detail(ctx.bus, _lookup_function(ctx.bus, fid, namespace)))
        except InvocationFailed:
            out.append({"function_id": fid, "error": "not_found"})
    return {"functions": out}


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
    return {
        "worker": worker,
        "functions": [bus.functions[k].summary() for k in sorted(conn.functions)],
        "trigger_types": [bus.providers[k].summary() for k in sorted(conn.trigger_types)],
        "registered_triggers": [
            bus.bindings[b].summary(conn.name or "") for b in sorted(conn.triggers)
        ],
    }


def triggers_list(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    search = (data.get("search") or "").lower()
    prefix = data.get("prefix")
    worker = data.get("worker")
    include_internal = bool(data.get("include_internal"))
    rows = []
    for provider in ctx.bus.providers.values():
        if not include_internal and provider.type_id.startswith("engine::"):
            continue
        if prefix and not provider.type_id.startswith(prefix):
            continue
        if worker and provider.worker_name != worker:
            continue
        if (
            search
            and search not in provider.type_id.lower()
            and search not in (provider.description or "").lower()
        ):
            continue
        rows.append(provider.summary())
    rows.sort(key=lambda r: (r["id"], r["namespace"]))
    return {"triggers": rows}


def _trigger_detail(bus: Bus, key: tuple[str, str]) -> dict[str, Any]:
    provider = bus.providers[key]
    out = provider.summary()
    if provider.trigger_request_format is not None:
        out["configuration_schema"] = provider.trigger_request_format
    if provider.call_request_format is not None:
        out["request_schema"] = provider.call_request_format
    out["instance_count"] = sum(1 for b in bus.bindings.values() if b.bound_to == key)
    return out


def triggers_info(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    type_id = data.get("id")
    namespace = data.get("namespace") or DEFAULT
    if not isinstance(type_id, str):
        raise InvocationFailed(
            "deserialization_error",
            "Failed to deserialize input for engine::triggers::info: missing field `id`",
        )
    if (namespace, type_id) not in ctx.bus.providers:
        raise InvocationFailed(
            "NOT_FOUND", f"Trigger type '{type_id}' is not registered in namespace '{namespace}'."
        )
    return _trigger_detail(ctx.bus, (namespace, type_id))


def _binding_worker_name(bus: Bus, binding: Binding) -> str:
    rec = bus.functions.get((binding.target_ns, binding.function_id))
    if rec is not None:
        return rec.worker_name
    if binding.owner is not None and binding.owner.name:
        return binding.owner.name
    return binding.function_id.split("::", 1)[0]


def registered_triggers_list(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    bus = ctx.bus
    search = (data.get("search") or "").lower()
    include_internal = bool(data.get("include_internal"))
    rows = []
    for binding in bus.bindings.values():
        if binding.bound_to is None:
            continue
        if not include_internal and binding.function_id.startswith("engine::"):
            continue
        if data.get("trigger_type") and binding.trigger_type != data["trigger_type"]:
            continue
        if data.get("function_id") and binding.function_id != data["function_id"]:
            continue
        worker_name = _binding_worker_name(bus, binding)
        if data.get("worker") and worker_name != data["worker"]:
            continue
        if search and not any(
            search in s.lower() for s in (binding.id, binding.trigger_type, binding.function_id)
        ):
            continue
        rows.append(binding.summary(worker_name))
    rows.sort(key=lambda r: r["id"])
    return {"registered_triggers": rows}


def registered_triggers_info(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    bus = ctx.bus
    binding = bus.bindings.get(data.get("id") or "")
    if binding is None:
        raise InvocationFailed("NOT_FOUND", f"Registered trigger '{data.get('id')}' was not found.")
    out = binding.summary(_binding_worker_name(bus, binding))
    del out["config_summary"]
    if binding.metadata is not None:
        out["metadata"] = binding.metadata
    out["trigger"] = _trigger_detail(bus, binding.bound_to) if binding.bound_to else None
    rec = bus.functions.get((binding.target_ns, binding.function_id))
    out["function"] = _function_detail(bus, rec) if rec else None
    return out


async def register_trigger(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    """engine::register_trigger: a durable binding owned by no connection (§9.6)."""
    trigger_type = data.get("trigger_type")
    function_id = data.get("function_id")
    if not isinstance(trigger_type, str) or not isinstance(function_id, str):
        raise InvocationFailed(
            "deserialization_error",
            "Failed to deserialize input for engine::register_trigger: `trigger_type` and "
            "`function_id` are required strings",
        )
    bus = ctx.bus
    binding = Binding(
        id=str(uuid.uuid4()),
        trigger_type=trigger_type,
        function_id=function_id,
        config=data.get("config"),
        metadata=data.get("metadata"),
        owner=None,
        target_ns=DEFAULT,
        trigger_namespace=data.get("trigger_namespace"),
        home=DEFAULT,
    )
    key = bus._resolve_provider(binding)
    provider = bus.providers.get(key) if key else None
    ack: list[m.TriggerRegistrationResult] = []
    got = trio.Event()
    if provider is not None and provider.conn is not None:

        def on_ack(msg: m.TriggerRegistrationResult) -> None:
            ack.append(msg)
            got.set()

        bus._ack_waiters[binding.id] = on_ack
    reason = bus.add_binding(binding)
    if reason is not None:
        raise InvocationFailed("trigger_registration_failed", reason)
    if provider is not None and provider.conn is not None:
        with trio.move_on_after(REGISTER_TRIGGER_ACK_TIMEOUT):
            await got.wait()
        bus._ack_waiters.pop(binding.id, None)
        if ack and ack[0].error is not None:
            bus.bindings.pop(binding.id, None)
            err = ack[0].error
            raise InvocationFailed("trigger_registration_failed", f"{err.code}: {err.message}")
    return {"id": binding.id}


def unregister_trigger(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"removed": ctx.bus.unregister_trigger(str(data.get("id") or ""))}


MAX_CHANNEL_BATCH = 256


def _non_negative(data: dict[str, Any], key: str, fn: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvocationFailed(
            "deserialization_error",
            f"Failed to deserialize input for {fn}: `{key}` must be a non-negative integer",
        )
    return value


def channels_create(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    """One channel (§11.1); with our extension ``count`` (1–256), a batch of them."""
    fn = "engine::channels::create"
    size = _non_negative(data, "buffer_size", fn)
    count = _non_negative(data, "count", fn)
    if count is None:
        return ctx.bus.channels.create(size).refs()
    if not 1 <= count <= MAX_CHANNEL_BATCH:
        raise InvocationFailed(
            "INVALID_ARGUMENTS", f"`count` must be between 1 and {MAX_CHANNEL_BATCH}"
        )
    return {"channels": [ctx.bus.channels.create(size).refs() for _ in range(count)]}


def channels_delete(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    """Our extension: forget channels their creator no longer needs (sockets already attached
    keep working). Each entry must carry the channel's access key."""
    items = data.get("channels")
    if not isinstance(items, list):
        raise InvocationFailed(
            "deserialization_error",
            "Failed to deserialize input for engine::channels::delete: `channels` must be an "
            "array of {channel_id, access_key}",
        )
    deleted = 0
    for item in items:
        if isinstance(item, dict) and ctx.bus.channels.forget(
            str(item.get("channel_id")), item.get("access_key")
        ):
            deleted += 1
    return {"deleted": deleted}


def workers_register(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    caller = ctx.caller
    if caller is None:
        wid = data.get("_caller_worker_id")
        caller = ctx.bus.connections.get(wid) if isinstance(wid, str) else None
    if caller is None:
        raise InvocationFailed("INVALID_ARGUMENTS", "engine::workers::register needs a worker")
    return ctx.bus.register_worker(caller, data)


def _make_log(level: str) -> Any:
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


def install(bus: Bus) -> None:
    table = {
        "engine::functions::list": functions_list,
        "engine::functions::info": functions_info,
        "engine::workers::list": workers_list,
        "engine::workers::info": workers_info,
        "engine::workers::register": workers_register,
        "engine::triggers::list": triggers_list,
        "engine::triggers::info": triggers_info,
        "engine::registered-triggers::list": registered_triggers_list,
        "engine::registered-triggers::info": registered_triggers_info,
        "engine::register_trigger": register_trigger,
        "engine::unregister_trigger": unregister_trigger,
        "engine::channels::create": channels_create,
        "engine::channels::delete": channels_delete,
    }
    for fid, fn in table.items():
        bus.add_builtin(fid, fn)
    for level in LOG_LEVELS:
        bus.add_builtin(f"engine::log::{level}", _make_log(level), component="iii-observability")
    bus.add_builtin("engine::baggage::get", baggage_get, component="iii-observability")
    bus.add_builtin("engine::baggage::set", baggage_set, component="iii-observability")
    bus.add_builtin("engine::baggage::get_all", baggage_get_all, component="iii-observability")
    bus.add_builtin_trigger_type(
        "engine::workers-available",
        "Fires when a worker connects, announces itself or disconnects",
        component="iii-engine-functions",
    )
    bus.add_builtin_trigger_type(
        "engine::functions-available",
        "Fires when the set of registered functions changes",
        component="iii-engine-functions",
    )
