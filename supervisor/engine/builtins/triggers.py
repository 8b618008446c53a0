"""Trigger introspection and durable triggers: engine::triggers::*, engine::registered-triggers::*,
engine::register_trigger and engine::unregister_trigger (PROTOCOL.md §9.6, §12.2)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import trio

from supervisor.engine.builtins.functions import function_detail, rbac_session
from supervisor.engine.errors import DEFAULT, InvocationFailed
from supervisor.engine.triggers import Binding
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus, CallContext

REGISTER_TRIGGER_ACK_TIMEOUT = 10.0


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
    out["instance_count"] = bus.triggers.count_bound(key)
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
    out["function"] = function_detail(bus, rec) if rec else None
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
    session = rbac_session(ctx)
    if session is not None:
        # §13.2: allowed_trigger_types and the prefix; the target must also pass the allow
        # check, or a durable binding would be a way around expose_functions.
        allowed = session.allowed_trigger_types
        if allowed is not None and trigger_type not in allowed:
            raise InvocationFailed(
                "FORBIDDEN", f"Trigger type '{trigger_type}' is not allowed for this session."
            )
        function_id = session.prefixed(function_id)
        entry = bus.functions.get((DEFAULT, function_id))
        meta = entry.metadata if entry else None
        if session.policy.denial(session, function_id, DEFAULT, meta) is not None:
            raise InvocationFailed(
                "FORBIDDEN", f"function '{function_id}' not allowed in namespace '{DEFAULT}'"
            )
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
    key = bus.triggers.resolve_provider(binding)
    provider = bus.providers.get(key) if key else None
    ack: list[m.TriggerRegistrationResult] = []
    got = trio.Event()
    if provider is not None and provider.conn is not None:

        def on_ack(msg: m.TriggerRegistrationResult) -> None:
            ack.append(msg)
            got.set()

        bus.triggers.expect_ack(binding.id, on_ack)
    reason = bus.triggers.add_binding(binding)
    if reason is not None:
        raise InvocationFailed("trigger_registration_failed", reason)
    if provider is not None and provider.conn is not None:
        with trio.move_on_after(REGISTER_TRIGGER_ACK_TIMEOUT):
            await got.wait()
        bus.triggers.forget_ack(binding.id)
        if ack and ack[0].error is not None:
            bus.triggers.drop_refused(binding.id)
            err = ack[0].error
            raise InvocationFailed("trigger_registration_failed", f"{err.code}: {err.message}")
    return {"id": binding.id}


def unregister_trigger(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    return {"removed": ctx.bus.triggers.remove_binding(str(data.get("id") or ""))}
