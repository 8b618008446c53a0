"""The ``configuration::*`` functions, the ``configuration`` trigger type and TTL expiry
(WORKERS.md §2.2, §2.3) over the entries cache and its ``FsStore``."""

from __future__ import annotations

from typing import Any, Final

import structlog
import trio

from actors.configuration.expand import expand
from actors.configuration.schema import SchemaError, check_schema, violations
from actors.configuration.store import ID_PATTERN, Entry, FsStore, StoreError
from actors.runtime import EventFanout, Payload
from transport.client import BusClient, FunctionError, InvocationContext, TriggerBinding

__all__ = ["EVENT_TYPES", "ConfigurationService", "check_trigger_config"]

log = structlog.get_logger("configuration")

TRIGGER_TYPE: Final = "configuration"
REGISTERED: Final = "configuration:registered"
UPDATED: Final = "configuration:updated"
DELETED: Final = "configuration:deleted"
EVENT_TYPES: Final = (REGISTERED, UPDATED, DELETED)
SCHEMAS_MARKER: Final = ".schemas.json"


def _check_id(p: Payload) -> str:
    entry_id = p.str("id")
    if not ID_PATTERN.fullmatch(entry_id):
        raise FunctionError(
            "INVALID_ID", f"invalid configuration id {entry_id!r}: it must match [a-z0-9_-]{{1,64}}"
        )
    return entry_id


def _not_found(entry_id: str) -> FunctionError:
    return FunctionError("NOT_FOUND", f"configuration '{entry_id}' not found")


def _schema_invalid(problems: list[str]) -> FunctionError:
    return FunctionError("SCHEMA_INVALID", f"schema validation failed: {'; '.join(problems)}")


def check_trigger_config(config: Any) -> None:
    """Refuse a ``configuration`` trigger config that does not parse (§2.3)."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise FunctionError(
            "invalid_trigger_config", "configuration trigger config: expected an object"
        )
    for field in ("configuration_id", "condition_function_id"):
        value = config.get(field)
        if value is not None and not isinstance(value, str):
            raise FunctionError(
                "invalid_trigger_config",
                f"configuration trigger config: `{field}` must be a string",
            )
    kinds = config.get("event_types")
    if kinds is not None and (
        not isinstance(kinds, list) or any(k not in EVENT_TYPES for k in kinds)
    ):
        raise FunctionError(
            "invalid_trigger_config",
            f"configuration trigger config: `event_types` must be a list of {', '.join(EVENT_TYPES)}",
        )


class ConfigurationService:
    def __init__(
        self,
        client: BusClient,
        store: FsStore,
        entries: dict[str, Entry],
        nursery: trio.Nursery,
        *,
        ttl_seconds: int = 0,
        engine_run: str | None = None,
    ) -> None:
        self.client = client
        self.engine_run = engine_run
        self.store = store
        self.entries = entries
        self.ttl_seconds = ttl_seconds
        self.bindings: dict[str, TriggerBinding] = {}
        self._nursery = nursery
        self._fanout = EventFanout(client, nursery, trigger_type=TRIGGER_TYPE)
        self._lock = trio.Lock()
        self._expiring: dict[str, trio.CancelScope] = {}

    def register(self) -> None:
        c = self.client
        c.register_trigger_type(
            TRIGGER_TYPE,
            "Fires when a configuration entry is registered, updated or deleted",
            on_register=self._on_register,
            on_unregister=self._on_unregister,
            trigger_request_format=TRIGGER_CONFIG_SCHEMA,
        )
        c.register_function(
            "configuration::register",
            self.register_entry,
            description="Declare or refresh a configuration entry and its schema",
        )
        c.register_function(
            "configuration::set",
            self.set,
            description="Replace the value of a registered configuration entry",
        )
        c.register_function(
            "configuration::get",
            self.get,
            description="Read a configuration value (expanded unless raw)",
        )
        c.register_function(
            "configuration::list",
            self.list,
            description="List the configuration entries (without values)",
        )
        c.register_function(
            "configuration::schema",
            self.schema,
            description="The schema of one configuration entry",
        )

    # -- functions ---------------------------------------------------------------------

    async def register_entry(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("configuration::register", data)
        entry_id = _check_id(p)
        name, description = p.str("name"), p.str("description")
        schema = p.any("schema")
        try:
            check_schema(schema)
        except SchemaError as exc:
            raise FunctionError("SCHEMA_INVALID", f"invalid JSON Schema: {exc}") from exc
        initial = p.data.get("initial_value")
        metadata = p.data.get("metadata")
        async with self._lock:
            old = self.entries.get(entry_id)
            if initial is not None:
                expanded = expand(initial)
                if not expanded.missing:  # otherwise validation waits for read time
                    problems = violations(schema, expanded.value)
                    if problems:
                        raise _schema_invalid(problems)
                value = initial
            else:
                value = old.value if old is not None else None
            new = Entry(entry_id, name, description, value, metadata, schema)
            if old is None or old.persisted() != new.persisted():
                await self._persist(new)
            self.entries[entry_id] = new
            if old is None or old.schema != schema:
                await self._remember_schemas()
        self._emit(
            UPDATED if old is not None else REGISTERED,
            new,
            old.value if old is not None else None,
            new.value,
        )
        out = new.summary()
        out["value"] = new.value
        return out

    async def set(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("configuration::set", data)
        entry_id = _check_id(p)
        value = p.any("value")
        async with self._lock:
            old = self.entries.get(entry_id)
            if old is None:
                raise FunctionError(
                    "NOT_REGISTERED", f"configuration '{entry_id}' is not registered"
                )
            if old.schema is None:
                raise FunctionError(
                    "SCHEMA_UNAVAILABLE",
                    f"configuration '{entry_id}' has no schema yet: its owner has not registered "
                    "it since the engine started",
                )
            problems = violations(old.schema, expand(value).value)
            if problems:
                raise _schema_invalid(problems)
            new = Entry(old.id, old.name, old.description, value, old.metadata, old.schema)
            await self._persist(new)
            self.entries[entry_id] = new
        self._emit(UPDATED, new, old.value, new.value)
        return {"old_value": old.value, "new_value": new.value}

    async def get(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("configuration::get", data)
        entry_id = p.str("id")
        raw = p.opt_bool("raw")
        entry = self.entries.get(entry_id)
        if entry is None:
            raise _not_found(entry_id)
        if raw:
            return {"id": entry_id, "value": entry.value}
        expanded = expand(entry.value)
        if expanded.missing:
            raise FunctionError(
                "EXPAND_FAILED",
                f"configuration '{entry_id}': environment variable(s) "
                f"{', '.join(expanded.missing)} not set and no default provided",
            )
        if entry.schema is not None:
            problems = violations(entry.schema, expanded.value)
            if problems:
                raise _schema_invalid(problems)
        return {"id": entry_id, "value": expanded.value}

    async def list(self, data: Any, ctx: InvocationContext) -> Any:
        Payload("configuration::list", data)
        return {"configurations": [self.entries[k].summary() for k in sorted(self.entries)]}

    async def schema(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("configuration::schema", data)
        entry_id = p.str("id")
        entry = self.entries.get(entry_id)
        if entry is None:
            raise _not_found(entry_id)
        return entry.summary()

    async def _persist(self, entry: Entry) -> None:
        try:
            await trio.to_thread.run_sync(self.store.write, entry)
        except StoreError as exc:
            raise FunctionError(
                "ADAPTER_ERROR", f"failed to persist configuration '{entry.id}': {exc}"
            ) from exc

    async def _remember_schemas(self) -> None:
        """Keep this run's schemas on disk, so a restart of this actor alone does not leave
        entries without schema until their owners happen to register again."""
        if self.engine_run is None:
            return
        record = {
            "engine_run": self.engine_run,
            "schemas": {k: e.schema for k, e in self.entries.items() if e.schema is not None},
        }
        try:
            await trio.to_thread.run_sync(self.store.write_marker, SCHEMAS_MARKER, record)
        except StoreError as exc:
            log.warning("cannot record schemas", error=str(exc))

    # -- the configuration trigger type ---------------------------------------------------

    async def _on_register(self, binding: TriggerBinding) -> None:
        check_trigger_config(binding.config)
        self.bindings[binding.id] = binding
        entry_id = _watched_id(binding)
        if entry_id is not None:
            scope = self._expiring.pop(entry_id, None)
            if scope is not None:
                scope.cancel()

    async def _on_unregister(self, binding: TriggerBinding) -> None:
        self.bindings.pop(binding.id, None)
        entry_id = _watched_id(binding)
        if entry_id is None or self.ttl_seconds <= 0 or entry_id in self._expiring:
            return
        if any(_watched_id(b) == entry_id for b in self.bindings.values()):
            return
        scope = trio.CancelScope()
        self._expiring[entry_id] = scope
        self._nursery.start_soon(self._expire, entry_id, scope)

    async def _expire(self, entry_id: str, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(self.ttl_seconds)
            async with self._lock:
                if self._expiring.get(entry_id) is not scope:
                    return
                del self._expiring[entry_id]
                entry = self.entries.get(entry_id)
                if entry is None:
                    return
                try:
                    await trio.to_thread.run_sync(self.store.remove, entry_id)
                except StoreError as exc:
                    log.error("configuration expiry failed", id=entry_id, error=str(exc))
                    return
                del self.entries[entry_id]
            log.info("configuration entry expired", id=entry_id, ttl_seconds=self.ttl_seconds)
            self._emit(DELETED, entry, entry.value, None)

    def _emit(self, event_type: str, entry: Entry, old: Any, new: Any) -> None:
        bindings = [b for b in self.bindings.values() if _wants(b, entry.id, event_type)]
        if not bindings:
            return
        payload: dict[str, Any] = {
            "type": TRIGGER_TYPE,
            "event_type": event_type,
            "id": entry.id,
            "name": entry.name,
            "description": entry.description,
            "schema": entry.schema,
            "old_value": expand(old).value,
            "new_value": expand(new).value,
        }
        if entry.metadata is not None:
            payload["metadata"] = entry.metadata
        self._fanout.emit(bindings, payload)


def _watched_id(binding: TriggerBinding) -> str | None:
    config = binding.config if isinstance(binding.config, dict) else {}
    value = config.get("configuration_id")
    return value if isinstance(value, str) else None


def _wants(binding: TriggerBinding, entry_id: str, event_type: str) -> bool:
    config = binding.config if isinstance(binding.config, dict) else {}
    wanted_id = config.get("configuration_id")
    if wanted_id is not None and wanted_id != entry_id:
        return False
    kinds = config.get("event_types")
    return kinds is None or event_type in kinds


TRIGGER_CONFIG_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "configuration_id": {"type": "string", "description": "Only events of this entry"},
        "event_types": {
            "type": "array",
            "items": {"type": "string", "enum": list(EVENT_TYPES)},
            "description": "Only these events (default: all)",
        },
        "condition_function_id": {
            "type": "string",
            "description": "Function called first with the event; `false` skips the handler",
        },
    },
}
