"""The ``iii-state`` actor: scoped key/value state (``state::*``) with ``state`` triggers fired on
every change (WORKERS.md §5, PROTOCOL.md §18.3).

The storage adapter comes from the config block (``kv`` in-memory or file-based, or ``redis``)
and is fixed for the life of the process; ``triggers_enabled`` and ``max_value_bytes`` are live
settings. Result shapes are upstream's exactly, quirks included (§16 item 19): ``state::delete``
returns the bare old value, ``state::list_groups`` wraps its list in ``{"groups"}``, and
``state:deleted`` fires even when nothing was deleted (§16 item 20).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import orjson
import structlog
import trio

from actors.configuration.adoption import ConfigAdoption
from actors.state.fanout import EventFanout
from actors.state.payload import DESERIALIZATION_ERROR, Payload
from actors.state.settings import CONFIG_SCHEMA, SettingsError, StateSettings, parse_settings
from actors.state.shutdown import (
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    exit_now,
    leave_bus,
    wait_for_stop_signal,
)
from storage import (
    InvalidOpsError,
    KeyValueStore,
    StorageConfigError,
    StorageError,
    open_kv,
)
from transport.client import BusClient, FunctionError, InvocationContext, TriggerBinding

__all__ = ["StateService", "serve"]

log = structlog.get_logger("iii-state")

STORE_NAME: Final = "state"
TRIGGER_TYPE: Final = "state"
CREATED: Final = "state:created"
UPDATED: Final = "state:updated"
DELETED: Final = "state:deleted"
DEFAULT_SEED: Final = {
    "adapter": {"name": "kv", "config": {"store_method": "in_memory"}},
    "triggers_enabled": True,
}


class StateService:
    """The functions and the trigger type, over one open store."""

    def __init__(
        self, client: BusClient, store: KeyValueStore, settings: StateSettings, fanout: EventFanout
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.fanout = fanout
        self.bindings: dict[str, TriggerBinding] = {}
        self._boot_storage = _storage_key(settings.store_adapter())

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
            new = parse_settings(value)
        except SettingsError as exc:
            log.error("iii-state configuration rejected; settings unchanged", error=str(exc))
            return
        if (new.triggers_enabled, new.max_value_bytes) != (
            self.settings.triggers_enabled,
            self.settings.max_value_bytes,
        ):
            log.info(
                "iii-state settings applied",
                triggers_enabled=new.triggers_enabled,
                max_value_bytes=new.max_value_bytes,
            )
        self.settings.triggers_enabled = new.triggers_enabled
        self.settings.max_value_bytes = new.max_value_bytes
        if _storage_key(new.store_adapter()) != self._boot_storage:
            log.warning(
                "iii-state storage settings changed at runtime are not applied; the adapter "
                "comes from config.yaml when the worker starts",
                running=self._boot_storage,
                requested=new.store_adapter(),
            )

    # -- functions ---------------------------------------------------------------------

    async def set(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("state::set", data)
        scope, key = p.str("scope"), p.str("key")
        value = p.any("value", "data")
        limit = self.settings.max_value_bytes
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

    def matching(self, scope: str, key: str) -> list[TriggerBinding]:
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
        if not self.settings.triggers_enabled or not self.bindings:
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


async def serve(client: BusClient, config: dict[str, Any], data_dir: Path) -> None:
    try:
        settings = parse_settings(config)
    except SettingsError as exc:
        exit_now(EXIT_CONFIG, "invalid iii-state config", error=str(exc))
    if settings.adapter_name == "bridge":
        exit_now(
            EXIT_CONFIG,
            "invalid iii-state config",
            error="adapter 'bridge' is not supported by iii-supervisor yet",
        )
    try:
        async with open_kv(settings.store_adapter(), data_dir=data_dir, name=STORE_NAME) as store:
            async with trio.open_nursery() as nursery:
                service = StateService(
                    client, store, settings, EventFanout(client, nursery, trigger_type=TRIGGER_TYPE)
                )
                service.register()
                log.info("state store open", adapter=settings.adapter_name)
                adoption = ConfigAdoption(
                    client,
                    entry_id="iii-state",
                    name="State",
                    description="Key-value state: storage adapter, triggers and value limits",
                    schema=CONFIG_SCHEMA,
                    seed=config or DEFAULT_SEED,
                    apply=service.apply_settings,
                )
                nursery.start_soon(adoption.run)
                await wait_for_stop_signal()
                nursery.cancel_scope.cancel()
    except StorageConfigError as exc:
        exit_now(EXIT_CONFIG, "invalid iii-state adapter config", error=str(exc))
    except StorageError as exc:
        exit_now(EXIT_UNAVAILABLE, "cannot open the state store", error=str(exc))
    await leave_bus(client)


_KV_DEFAULTS = {
    "store_method": "in_memory",
    "file_path": "kv_store_data.db",
    "save_interval_ms": 5000,
    "fsync": "interval",
}


def _storage_key(adapter: dict[str, Any] | None) -> dict[str, Any]:
    """An adapter block with its defaults filled in: ``None`` and the explicit in-memory
    default are the same storage, so adopting the seed at boot is not a change."""
    name = (adapter or {}).get("name", "kv")
    config = dict((adapter or {}).get("config") or {})
    if name in ("kv", "builtin"):
        name = "kv"
        config = {**_KV_DEFAULTS, **config}
    return {"name": name, "config": config}
