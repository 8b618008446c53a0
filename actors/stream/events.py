"""The stream wire shapes without I/O (WORKERS.md §6.3, §6.4): the frames pushed to clients and
to ``stream`` triggers, which subscriptions and triggers a frame reaches, the client messages,
and the auth function's input. Time comes in as ``now_ms``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import orjson

from transport.jsonshape import json_type

__all__ = [
    "CREATE",
    "DELETE",
    "EVENT",
    "UPDATE",
    "BadTriggerConfig",
    "ClientMessageError",
    "Join",
    "Leave",
    "Subscription",
    "auth_payload",
    "change_frame",
    "check_stream_trigger_config",
    "custom_frame",
    "item_frame",
    "parse_client_message",
    "query_params",
    "reaches",
    "split_scope",
    "trigger_matches",
]

CREATE: Final = "create"
UPDATE: Final = "update"
DELETE: Final = "delete"
EVENT: Final = "event"
SYNC: Final = "sync"
UNAUTHORIZED: Final = "unauthorized"


def item_frame(
    now_ms: int, stream_name: str, group_id: str, item_id: str | None, event: dict[str, Any]
) -> dict[str, Any]:
    """The server→client frame around ``event`` (§6.3)."""
    return {
        "type": "stream",
        "timestamp": now_ms,
        "streamName": stream_name,
        "groupId": group_id,
        "id": item_id,
        "event": event,
    }


def change_frame(
    now_ms: int, stream_name: str, group_id: str, item_id: str | None, kind: str, data: Any
) -> dict[str, Any]:
    """A ``create`` / ``update`` / ``delete`` (data = old value) / ``sync`` frame."""
    return item_frame(now_ms, stream_name, group_id, item_id, {"type": kind, "data": data})


def custom_frame(
    now_ms: int, stream_name: str, group_id: str, item_id: str | None, label: str, data: Any
) -> dict[str, Any]:
    """The frame of ``stream::send``: ``event.event`` carries the send's own type and data."""
    event = {"type": EVENT, "event": {"type": label, "data": data}}
    return item_frame(now_ms, stream_name, group_id, item_id, event)


@attrs.frozen
class Subscription:
    """One join of one connection: a whole group (``item_id`` None) or one item."""

    id: str
    stream_name: str
    group_id: str
    item_id: str | None = None


def reaches(sub: Subscription, frame: dict[str, Any]) -> bool:
    """§6.3 matching: same stream and group, and the subscription covers the whole group or the
    frame's item (a frame with ``id: null`` reaches group subscriptions only)."""
    return (
        frame.get("streamName") == sub.stream_name
        and frame.get("groupId") == sub.group_id
        and (sub.item_id is None or frame.get("id") == sub.item_id)
    )


class BadTriggerConfig(ValueError):
    """A ``stream`` trigger config that cannot be registered (§6.4, §16 item 12)."""


def check_stream_trigger_config(config: Any) -> None:
    if not isinstance(config, dict):
        raise BadTriggerConfig(f"expected an object, got {json_type(config)}")
    if "stream_name" not in config or config["stream_name"] is None:
        raise BadTriggerConfig("missing field `stream_name`")
    for field in ("stream_name", "group_id", "item_id", "condition_function_id"):
        value = config.get(field)
        if value is not None and not isinstance(value, str):
            raise BadTriggerConfig(
                f"`{field}`: invalid type: {json_type(value)}, expected a string"
            )


def trigger_matches(config: Any, frame: dict[str, Any]) -> bool:
    """Whether a (checked) ``stream`` trigger config selects ``frame``: exact stream name, and
    exact group / item when given (a ``send`` without ``id`` never matches an ``item_id``)."""
    if not isinstance(config, dict) or config.get("stream_name") != frame.get("streamName"):
        return False
    group = config.get("group_id")
    if group is not None and group != frame.get("groupId"):
        return False
    item = config.get("item_id")
    return item is None or item == frame.get("id")


# -- client → server -------------------------------------------------------------------


class ClientMessageError(ValueError):
    """A frame from a stream client that is not a join or leave (ignored with a warning)."""


@attrs.frozen
class Join:
    subscription: Subscription


@attrs.frozen
class Leave:
    subscription_id: str
    stream_name: str
    group_id: str


def parse_client_message(raw: str | bytes) -> Join | Leave | None:
    """A client frame (text or binary JSON); ``None`` for a blank one."""
    if not raw.strip():
        return None
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ClientMessageError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ClientMessageError(f"expected an object, got {json_type(msg)}")
    kind = msg.get("type")
    data = msg.get("data")
    if kind not in ("join", "leave"):
        raise ClientMessageError(f"unknown message type {kind!r}")
    if not isinstance(data, dict):
        raise ClientMessageError(f"`data`: expected an object, got {json_type(data)}")
    fields = {}
    for key in ("subscriptionId", "streamName", "groupId"):
        value = data.get(key)
        if not isinstance(value, str):
            raise ClientMessageError(f"`data.{key}`: expected a string, got {json_type(value)}")
        fields[key] = value
    if kind == "leave":
        return Leave(fields["subscriptionId"], fields["streamName"], fields["groupId"])
    item = data.get("id")
    if item is not None and not isinstance(item, str):
        raise ClientMessageError(f"`data.id`: expected a string, got {json_type(item)}")
    return Join(
        Subscription(fields["subscriptionId"], fields["streamName"], fields["groupId"], item)
    )


# -- the auth function's input ---------------------------------------------------------


def query_params(query: str) -> dict[str, list[str]]:
    """Multi-valued, in order, not percent-decoded; ``c=`` → ``[""]``; pairs without a key are
    skipped (§6.3)."""
    out: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if key:
            out.setdefault(key, []).append(value)
    return out


def _visible_ascii(value: bytes) -> bool:
    return all(0x20 <= b < 0x7F or b == 0x09 for b in value)


def auth_payload(target: str, headers: Iterable[tuple[bytes, bytes]], addr: str) -> dict[str, Any]:
    """What the auth function is called with on each upgrade; header names lower-case, values
    that are not plain visible ASCII left out."""
    parts = urlsplit(target)
    return {
        "headers": {
            name.decode("latin-1").lower(): value.decode("ascii")
            for name, value in headers
            if _visible_ascii(value)
        },
        "path": parts.path or "/",
        "query_params": query_params(parts.query),
        "addr": addr,
    }


def split_scope(scope: str) -> tuple[str, str] | None:
    """``<stream_name>:<group_id>`` → its parts, split at the last ``:`` (stream names such as
    ``iii:devtools:trace-rows`` hold colons; group ids with one are mis-split, §6.2 [quirk])."""
    stream, sep, group = scope.rpartition(":")
    return (stream, group) if sep else None
