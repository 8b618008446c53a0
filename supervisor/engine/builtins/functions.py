"""engine::functions::list and engine::functions::info (PROTOCOL.md §12.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.engine.builtins._args import opt_str
from supervisor.engine.errors import DEFAULT, InvocationFailed
from supervisor.engine.rbac import RbacSession

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus, CallContext
    from supervisor.engine.functions import FunctionEntry


def rbac_session(ctx: CallContext) -> RbacSession | None:
    """The caller's RBAC session, if it came through an RBAC listener (§12.1)."""
    session = ctx.caller.session if ctx.caller is not None else None
    return session if isinstance(session, RbacSession) else None


def _hidden(session: RbacSession | None, function_id: str, namespace: str, meta: Any) -> bool:
    return session is not None and (
        session.policy.denial(session, function_id, namespace, meta) is not None
    )


def _visible(rec: FunctionEntry, include_internal: bool) -> bool:
    if include_internal or rec.function_id.startswith("engine::queue::"):
        return True
    if rec.function_id.startswith("engine::"):
        return False
    meta = rec.metadata
    return not (isinstance(meta, dict) and meta.get("internal") is True)


def functions_list(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    fn = "engine::functions::list"
    search = (opt_str(data, "search", fn) or "").lower()
    prefix = opt_str(data, "prefix", fn)
    workers = set(data.get("workers") or [])
    if data.get("worker"):
        workers.add(data["worker"])
    include_internal = bool(data.get("include_internal"))
    session = rbac_session(ctx)
    rows: list[tuple[int, str, FunctionEntry]] = []
    for rec in ctx.bus.functions.values():
        if not _visible(rec, include_internal):
            continue
        if _hidden(session, rec.function_id, rec.namespace, rec.metadata):
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


def function_detail(bus: Bus, rec: FunctionEntry) -> dict[str, Any]:
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


def _lookup_function(bus: Bus, function_id: str, namespace: str | None) -> FunctionEntry:
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
    session = rbac_session(ctx)

    def lookup(function_id: Any) -> FunctionEntry:
        if session is not None and isinstance(function_id, str):
            ns = namespace if isinstance(namespace, str) else DEFAULT
            entry = ctx.bus.functions.get((ns, function_id))
            if _hidden(session, function_id, ns, entry.metadata if entry else None):
                raise InvocationFailed(
                    "FORBIDDEN", f"Function '{function_id}' is not visible to this session."
                )
        return _lookup_function(ctx.bus, function_id, namespace)

    if single is not None:
        return function_detail(ctx.bus, lookup(single))
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
            out.append(function_detail(ctx.bus, lookup(fid)))
        except InvocationFailed:
            out.append({"function_id": fid, "error": "not_found"})
    return {"functions": out}
