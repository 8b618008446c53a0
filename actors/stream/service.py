"""The ``stream::*`` functions and the ``stream`` / ``stream:join`` / ``stream:leave`` trigger
types (WORKERS.md §6.2, §6.4) over one open key/value store and one event pub/sub.

Items live in the store under scope ``<stream_name>:<group_id>`` of the store named ``stream``
(Redis hash ``stream:<stream_name>:<group_id>``, as upstream). Every change is published as its
client frame on the pub/sub topic ``stream::events`` (a Redis channel with the ``redis`` adapter,
so every instance's WebSocket clients see it) and fired to the local ``stream`` triggers.

A custom implementation registered by the SDK's ``create_stream`` (functions named
``stream::<op>(<stream_name>)`` in the default namespace) takes precedence over the store; the
engine calls it with exactly the op's fields. Result shapes are upstream's exactly: ``delete``
returns ``{old_value}``, ``list_groups`` a bare array (§16 item 19).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any, Final

import structlog

from actors.runtime import DESERIALIZATION_ERROR, EventFanout, Payload
from actors.stream.events import (
    CREATE,
    DELETE,
    UPDATE,
    BadTriggerConfig,
    change_frame,
    check_stream_trigger_config,
    custom_frame,
    split_scope,
    trigger_matches,
)
from storage import InvalidOpsError, KeyValueStore, PubSub, StorageError
from transport.client import BusClient, FunctionError, InvocationContext, TriggerBinding

__all__ = ["EVENTS_TOPIC", "JOIN", "LEAVE", "TRIGGER_TYPE", "StreamService", "epoch_ms"]

log = structlog.get_logger("iii-stream")

EVENTS_TOPIC: Final = "stream::events"
TRIGGER_TYPE: Final = "stream"
JOIN: Final = "stream:join"
LEAVE: Final = "stream:leave"
CUSTOM_TIMEOUT: Final = 30.0
_NOT_FOUND: Final = "function_not_found"
_MISSING: Final = object()


def epoch_ms() -> int:
    return time.time_ns() // 1_000_000


def scope_of(stream_name: str, group_id: str) -> str:
    return f"{stream_name}:{group_id}"


class StreamService:
    """The functions, the trigger types and the event emission."""

    def __init__(
        self,
        client: BusClient,
        store: KeyValueStore,
        events: PubSub,
        fanout: EventFanout,
        *,
        clock: Callable[[], int] = epoch_ms,
    ) -> None:
        self.client = client
        self.store = store
        self.events = events
        self.fanout = fanout
        self.clock = clock
        self.bindings: dict[str, TriggerBinding] = {}
        self.join_bindings: dict[str, TriggerBinding] = {}
        self.leave_bindings: dict[str, TriggerBinding] = {}

    def register(self) -> None:
        c = self.client
        c.register_trigger_type(
            TRIGGER_TYPE,
            "Fires on every stream change (create, update, delete, event)",
            on_register=self._on_register,
            on_unregister=self._on_unregister,
            trigger_request_format=TRIGGER_CONFIG_SCHEMA,
        )
        for type_id, table, what in (
            (JOIN, self.join_bindings, "joins"),
            (LEAVE, self.leave_bindings, "leaves"),
        ):
            c.register_trigger_type(
                type_id,
                f"Fires when a WebSocket client {what} a stream subscription",
                on_register=_keep(table),
                on_unregister=_forget(table),
                trigger_request_format=JOIN_LEAVE_SCHEMA,
            )
        for name, fn, text in (
            ("set", self.set, "Set an item of a stream group"),
            ("get", self.get, "Get an item of a stream group"),
            ("delete", self.delete, "Delete an item of a stream group"),
            ("update", self.update, "Apply atomic update operations to a stream item"),
            ("list", self.list, "List the items of a stream group"),
            ("list_groups", self.list_groups, "List the groups of a stream"),
            ("list_all", self.list_all, "List every stream with its groups"),
            ("send", self.send, "Push a custom event to a stream group's subscribers"),
        ):
            c.register_function(f"stream::{name}", fn, description=text)

    # -- custom implementations (create_stream) --------------------------------------------

    async def _custom(
        self, op: str, stream_name: str, payload: dict[str, Any], error_code: str | None = None
    ) -> Any:
        """The result of ``stream::<op>(<stream_name>)``, or ``_MISSING`` when none exists.
        With ``error_code``, the implementation's failure is raised under that code (the
        writing ops' ``STREAM_<OP>_ERROR``, its message kept); without, as it came."""
        try:
            return await self.client.invoke(
                f"stream::{op}({stream_name})", payload, timeout=CUSTOM_TIMEOUT
            )
        except FunctionError as exc:
            if exc.code == _NOT_FOUND:
                return _MISSING
            if error_code is None:
                raise
            raise FunctionError(error_code, exc.message) from exc

    # -- functions ---------------------------------------------------------------------

    async def set(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("stream::set", data)
        stream, group, item = p.str("stream_name"), p.str("group_id"), p.str("item_id")
        value = p.any("data")
        fields = {"stream_name": stream, "group_id": group, "item_id": item, "data": value}
        custom = await self._custom("set", stream, fields, "STREAM_SET_ERROR")
        if custom is not _MISSING:
            old, new = _decode_custom("stream::set", custom, "STREAM_SET_ERROR")
            existed = old is not None
        else:
            try:
                result = await self.store.set(scope_of(stream, group), item, value)
            except StorageError as exc:
                raise FunctionError("STREAM_SET_ERROR", f"Failed to set item: {exc}") from exc
            old, new, existed = result.old_value, result.new_value, not result.created
        await self._emit(change_frame(self.clock(), stream, group, item, _kind(existed), new))
        return {"old_value": old, "new_value": new}

    async def get(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("stream::get", data)
        stream, group, item = p.str("stream_name"), p.str("group_id"), p.str("item_id")
        return await self.read_item(stream, group, item)

    async def read_item(self, stream: str, group: str, item: str) -> Any:
        fields = {"stream_name": stream, "group_id": group, "item_id": item}
        custom = await self._custom("get", stream, fields)
        if custom is not _MISSING:
            return custom
        try:
            return await self.store.get(scope_of(stream, group), item)
        except StorageError as exc:
            raise FunctionError("STREAM_GET_ERROR", f"Failed to get item: {exc}") from exc

    async def delete(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("stream::delete", data)
        stream, group, item = p.str("stream_name"), p.str("group_id"), p.str("item_id")
        fields = {"stream_name": stream, "group_id": group, "item_id": item}
        custom = await self._custom("delete", stream, fields, "STREAM_DELETE_ERROR")
        if custom is not _MISSING:
            if not isinstance(custom, dict):
                raise _custom_shape("stream::delete", custom, "STREAM_DELETE_ERROR")
            old = custom.get("old_value")
        else:
            try:
                old = await self.store.delete(scope_of(stream, group), item)
            except StorageError as exc:
                raise FunctionError("STREAM_DELETE_ERROR", f"Failed to delete item: {exc}") from exc
        if old is not None:  # nothing is emitted when nothing was deleted (§16 item 20)
            await self._emit(change_frame(self.clock(), stream, group, item, DELETE, old))
        return {"old_value": old}

    async def update(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("stream::update", data)
        stream, group, item = p.str("stream_name"), p.str("group_id"), p.str("item_id")
        ops = p.any("ops")
        fields = {"stream_name": stream, "group_id": group, "item_id": item, "ops": ops}
        custom = await self._custom("update", stream, fields, "STREAM_UPDATE_ERROR")
        if custom is not _MISSING:
            old, new = _decode_custom("stream::update", custom, "STREAM_UPDATE_ERROR")
            out: dict[str, Any] = {"old_value": old, "new_value": new}
            errors = custom.get("errors") if isinstance(custom, dict) else None
            if errors:
                out["errors"] = errors
            existed = old is not None
        else:
            try:
                result = await self.store.update(scope_of(stream, group), item, ops)
            except InvalidOpsError as exc:
                raise FunctionError(
                    DESERIALIZATION_ERROR,
                    f"Failed to deserialize input for stream::update: {exc}",
                ) from exc
            except StorageError as exc:
                raise FunctionError("STREAM_UPDATE_ERROR", f"Failed to update item: {exc}") from exc
            out, new, existed = result.to_json(), result.new_value, not result.created
        await self._emit(change_frame(self.clock(), stream, group, item, _kind(existed), new))
        return out

    async def list(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("stream::list", data)
        return await self.read_group(p.str("stream_name"), p.str("group_id"))

    async def read_group(self, stream: str, group: str) -> Any:
        custom = await self._custom("list", stream, {"stream_name": stream, "group_id": group})
        if custom is not _MISSING:
            return custom
        try:
            return await self.store.list(scope_of(stream, group))
        except StorageError as exc:
            raise FunctionError("STREAM_GET_GROUP_ERROR", f"Failed to list items: {exc}") from exc

    async def list_groups(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("stream::list_groups", data)
        stream = p.str("stream_name")
        custom = await self._custom("list_groups", stream, {"stream_name": stream})
        if custom is not _MISSING:
            return custom
        return sorted((await self._groups()).get(stream, set()))

    async def list_all(self, data: Any, ctx: InvocationContext) -> Any:
        Payload("stream::list_all", data)
        try:
            groups = await self._groups()
        except FunctionError as exc:
            raise FunctionError("STREAM_LIST_ALL_ERROR", exc.message) from exc
        streams = [{"id": name, "groups": sorted(groups[name])} for name in sorted(groups)]
        return {"stream": streams, "count": len(streams)}

    async def _groups(self) -> dict[str, builtins.set[str]]:
        try:
            scopes = await self.store.list_groups()
        except StorageError as exc:
            raise FunctionError(
                "STREAM_LIST_GROUPS_ERROR", f"Failed to list groups: {exc}"
            ) from exc
        out: dict[str, builtins.set[str]] = {}
        for scope in scopes:
            parts = split_scope(scope)
            if parts is not None:
                out.setdefault(parts[0], set()).add(parts[1])
        return out

    async def send(self, data: Any, ctx: InvocationContext) -> Any:
        p = Payload("stream::send", data)
        stream, group, label = p.str("stream_name"), p.str("group_id"), p.str("type")
        item = p.opt_str("id")
        frame = custom_frame(self.clock(), stream, group, item, label, p.data.get("data"))
        try:
            await self._emit(frame)
        except FunctionError as exc:
            raise FunctionError("STREAM_SEND_ERROR", exc.message) from exc
        return None

    # -- events ------------------------------------------------------------------------

    async def _emit(self, frame: dict[str, Any]) -> None:
        """Publish to every instance's WebSocket clients and fire the local triggers. The
        write already happened: a failed publish is logged, not reported as the write's."""
        try:
            await self.events.publish(EVENTS_TOPIC, frame)
        except StorageError as exc:
            log.error("stream event not published", error=str(exc), stream=frame["streamName"])
        if self.bindings:
            matching = [b for b in self.bindings.values() if trigger_matches(b.config, frame)]
            self.fanout.emit(matching, frame)

    async def _on_register(self, binding: TriggerBinding) -> None:
        try:
            check_stream_trigger_config(binding.config)
        except BadTriggerConfig as exc:
            raise FunctionError("invalid_trigger_config", f"stream trigger config: {exc}") from exc
        self.bindings[binding.id] = binding

    async def _on_unregister(self, binding: TriggerBinding) -> None:
        self.bindings.pop(binding.id, None)


def _kind(existed: bool) -> str:
    return UPDATE if existed else CREATE


def _keep(table: dict[str, TriggerBinding]) -> Callable[[TriggerBinding], Any]:
    async def keep(binding: TriggerBinding) -> None:  # config accepted, not evaluated (§6.4)
        table[binding.id] = binding

    return keep


def _forget(table: dict[str, TriggerBinding]) -> Callable[[TriggerBinding], Any]:
    async def forget(binding: TriggerBinding) -> None:
        table.pop(binding.id, None)

    return forget


def _custom_shape(function_id: str, result: Any, null_code: str) -> FunctionError:
    if result is None:
        return FunctionError(null_code, f"custom {function_id} returned no result")
    return FunctionError("JSON_ERROR", f"custom {function_id} result has the wrong shape")


def _decode_custom(function_id: str, result: Any, null_code: str) -> tuple[Any, Any]:
    """``(old_value, new_value)`` of a custom set/update result (§6.2)."""
    if not isinstance(result, dict) or "new_value" not in result:
        raise _custom_shape(function_id, result, null_code)
    return result.get("old_value"), result["new_value"]


TRIGGER_CONFIG_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "stream_name": {"type": "string", "description": "The stream whose changes fire it"},
        "group_id": {"type": "string", "description": "Only changes in this group"},
        "item_id": {"type": "string", "description": "Only changes of this item"},
        "condition_function_id": {
            "type": "string",
            "description": "Function called first with the event; `false` skips the handler",
        },
    },
    "required": ["stream_name"],
}

JOIN_LEAVE_SCHEMA: Final = {
    "type": "object",
    "description": "Accepted and not evaluated: every trigger fires for every join/leave",
}
