"""The ``iii-state`` actor: scoped key/value state (``state::*``) with ``state`` triggers fired on
every change (WORKERS.md §5, PROTOCOL.md §18.3).

The storage adapter comes from the config block (``kv`` in-memory or file-based, or ``redis``)
and is fixed for the life of the process; ``triggers_enabled`` and ``max_value_bytes`` are live
settings. Result shapes are upstream's exactly, quirks included (§16 item 19): ``state::delete``
returns the bare old value, ``state::list_groups`` wraps its list in ``{"groups"}``, and
``state:deleted`` fires even when nothing was deleted (§16 item 20).
"""

from __future__ import annotations

import builtins
from typing import Any, Final

import attrs
import orjson
import structlog
import trio

from actors.runtime import DESERIALIZATION_ERROR, ActorContext, EventFanout, Payload
from actors.state.config import BLOCK, parse_config
from manifests.blocks import state
from manifests.blocks.state import StateBlock
from manifests.blocks.strict import BlockError
from storage import InvalidOpsError, KeyValueStore, StorageError
from transport.client import BusClient, FunctionError, InvocationContext, TriggerBinding

__all__ = ["BLOCK", "StateService", "parse_config", "serve"]

log = structlog.get_logger("iii-state")

STORE_NAME: Final = "state"
TRIGGER_TYPE: Final = "state"
CREATED: Final = "state:created"
UPDATED: Final = "state:updated"
DELETED: Final = "state:deleted"


class StateService:
    """The functions and the trigger type, over one open store."""

    def __init__(
        self, client: BusClient, store: KeyValueStore, block: StateBlock, fanout: EventFanout
    ) -> None:
        self.client = client
        self.store = store
        self.fanout = fanout
        self.bindings: dict[str, TriggerBinding] = {}
        # The live settings; the storage adapter is the boot block's for the life of the process.
        self.triggers_enabled = block.triggers_enabled
        self.value_limit = block.value_limit
        self._boot_storage = block.store_adapter()

    def register(self) -> None:
        c = self.client
        c.register_trigger_type(
            TRIGGER_TYPE,
            "Fires on every state change (state:created, state:updated, state:deleted)",
            on_register=self._on_register,
            on_unregister=self._on_unregister,
            trigger_request_format=TRIGGER_CONFIG_SCHEMA,
        )
        c.register_function("state::set", self.set, description="Set a value in a scope")
        c.register_function("state::get", self.get, description="Get a value from a scope")
        c.register_function("state::delete", self.delete, description="Delete a value")
        c.register_function(
            "state::update", self.update, description="Apply atomic update operations to a value"
        )
        c.register_function("state::list", self.list, description="List the values of a scope")
        c.register_function(
            "state::list_groups", self.list_groups, description="List the scopes holding values"
        )

    async def apply_settings(self, value: Any) -> None:
        """Adopt the configuration worker's value: live fields now; the storage adapter is
        fixed for the life of the process (it comes from config.yaml at start)."""
        try:
            new = parse_config(value)
        except BlockError as exc:
            log.error("iii-state configuration rejected; settings unchanged", error=str(exc))
            return
        if (new.triggers_enabled, new.value_limit) != (self.triggers_enabled, self.value_limit):
            log.info(
                "iii-state settings applied",
                triggers_enabled=new.triggers_enabled,
                max_value_bytes=new.value_limit,
            )
        self.triggers_enabled = new.triggers_enabled
        self.value_limit = new.value_limit
        if new.store_adapter() != self._boot_storage:
            log.warning(
                "iii-state storage settings changed at runtime are not applied; the adapter "
                "comes from config.yaml when the worker starts",
                running=attrs.asdict(self._boot_storage),
                requested=attrs.asdict(new.store_adapter()),
            )

    # -- functions ---------------------------------------------------------------------

    async def set(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("state::set", data)
        scope, key = p.str("scope"), p.str("key")
        value = p.any("value", "data")
        limit = self.value_limit
        if limit:
            size = len(orjson.dumps(value))
            if size > limit:
                raise FunctionError(
                    "VALUE_TOO_LARGE",
                    f"value of {size} bytes exceeds the configured max_value_bytes limit of {limit}",
                )
        try:
            result = await self.store.set(scope, key, value)
        except StorageError as exc:
            raise FunctionError("SET_ERROR", f"Failed to set value: {exc}") from exc
        self._changed(
            CREATED if result.created else UPDATED, scope, key, result.old_value, result.new_value
        )
        return {"old_value": result.old_value, "new_value": result.new_value}

    async def get(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("state::get", data)
        scope, key = p.str("scope"), p.str("key")
        try:
            return await self.store.get(scope, key)
        except StorageError as exc:
            raise FunctionError("GET_ERROR", f"Failed to get value: {exc}") from exc

    async def delete(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("state::delete", data)
        scope, key = p.str("scope"), p.str("key")
        try:
            old = await self.store.delete(scope, key)
        except StorageError as exc:
            raise FunctionError("DELETE_ERROR", f"Failed to delete value: {exc}") from exc
        self._changed(DELETED, scope, key, old, None)
        return old

    async def update(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("state::update", data)
        scope, key = p.str("scope"), p.str("key")
        ops = p.any("ops")
        try:
            result = await self.store.update(scope, key, ops)
        except InvalidOpsError as exc:
            raise FunctionError(
                DESERIALIZATION_ERROR, f"Failed to deserialize input for state::update: {exc}"
            ) from exc
        except StorageError as exc:
            raise FunctionError("UPDATE_ERROR", f"Failed to update value: {exc}") from exc
        self._changed(
            CREATED if result.created else UPDATED, scope, key, result.old_value, result.new_value
        )
        return result.to_json()

    async def list(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("state::list", data)
        scope = p.str("scope")
        try:
            return await self.store.list(scope)
        except StorageError as exc:
            raise FunctionError("LIST_ERROR", f"Failed to list values: {exc}") from exc

    async def list_groups(self, data: Any, ctx: InvocationContext) -> Any:
        Payload("state::list_groups", data)
        try:
            groups = await self.store.list_groups()
        except StorageError as exc:
            raise FunctionError("LIST_GROUPS_ERROR", f"Failed to list groups: {exc}") from exc
        return {"groups": sorted(set(groups))}

    # -- the state trigger type -----------------------------------------------------------

    async def _on_register(self, binding: TriggerBinding) -> None:
        check_trigger_config(binding.config)
        self.bindings[binding.id] = binding

    async def _on_unregister(self, binding: TriggerBinding) -> None:
        self.bindings.pop(binding.id, None)

    def matching(self, scope: str, key: str) -> builtins.list[TriggerBinding]:
        out = []
        for binding in self.bindings.values():
            config = binding.config if isinstance(binding.config, dict) else {}
            want_scope, want_key = config.get("scope"), config.get("key")
            if want_scope is not None and want_scope != scope:
                continue
            if want_key is not None and want_key != key:
                continue
            out.append(binding)
        return out

    def _changed(self, event_type: str, scope: str, key: str, old: Any, new: Any) -> None:
        if not self.triggers_enabled or not self.bindings:
            return
        bindings = self.matching(scope, key)
        if not bindings:
            return
        self.fanout.emit(
            bindings,
            {
                "type": TRIGGER_TYPE,
                "event_type": event_type,
                "scope": scope,
                "key": key,
                "old_value": old,
                "new_value": new,
            },
        )


TRIGGER_CONFIG_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "scope": {"type": "string", "description": "Only changes in this scope"},
        "key": {"type": "string", "description": "Only changes of this key"},
        "condition_function_id": {
            "type": "string",
            "description": "Function called first with the event; `false` skips the handler",
        },
    },
}


def check_trigger_config(config: Any) -> None:
    """Refuse a ``state`` trigger config that does not parse (§5.3)."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise FunctionError(
            "invalid_trigger_config",
            f"state trigger config: expected an object, got {type(config).__name__}",
        )
    for field in ("scope", "key", "condition_function_id"):
        value = config.get(field)
        if value is not None and not isinstance(value, str):
            raise FunctionError(
                "invalid_trigger_config", f"state trigger config: `{field}` must be a string"
            )


async def serve(ctx: ActorContext[StateBlock]) -> None:
    """Open the store the block names, serve ``state::*`` until asked to stop, then close the
    store (flushed) before the runtime leaves the bus."""
    adapter = ctx.block.store_adapter()
    async with ctx.open_kv(adapter, name=STORE_NAME) as store, trio.open_nursery() as nursery:
        fanout = EventFanout(ctx.client, nursery, trigger_type=TRIGGER_TYPE)
        service = StateService(ctx.client, store, ctx.block, fanout)
        service.register()
        log.info("state store open", adapter=adapter.name)
        ctx.adopt(
            nursery,
            entry_id="iii-state",
            name="State",
            description="Key-value state: storage adapter, triggers and value limits",
            defaults=state.DEFAULTS,
            apply=service.apply_settings,
        )
        await ctx.stopped()
        nursery.cancel_scope.cancel()
