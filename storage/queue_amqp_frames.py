"""The frames of an AMQP 0-9-1 ``basic.publish`` (method, content header, body), encoded here
for the RabbitMQ adapter's hot path (``storage.queue_rabbitmq_link``): pika builds a method
object, a properties object and three frame objects per publish and encodes each field in
pure Python, a large share of the adapter's CPU per job. This encodes the properties the
adapter sets (``content_type``, ``headers``, ``delivery_mode``, ``priority``, ``message_id``)
with header values of the kinds it writes (str, int, bool, None); anything else answers
``None`` and the caller lets pika encode the publish.

Wire format (AMQP 0-9-1 §4.2.3, §4.2.6): a frame is type (octet), channel (short), payload
size (long), payload, 0xCE. The content header's property flags go from bit 15 down in the
order of the properties' fields, and only the flagged fields follow.
"""

from __future__ import annotations

import struct
from typing import Any, Final

__all__ = ["publish_frames"]

_FRAME_END: Final = b"\xce"
_METHOD: Final = 1
_HEADER: Final = 2
_BODY: Final = 3
_BASIC: Final = 60
_PUBLISH: Final = 40
_MANDATORY: Final = 1
# property flags (AMQP 0-9-1 basic class, in field order)
_CONTENT_TYPE: Final = 1 << 15
_HEADERS: Final = 1 << 13
_DELIVERY_MODE: Final = 1 << 12
_PRIORITY: Final = 1 << 11
_MESSAGE_ID: Final = 1 << 7
# the fields this encoder writes; a properties object with any other set is pika's to encode
_OTHER_FIELDS: Final = (
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)
_FRAME_HEAD: Final = struct.Struct(">BHI")
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
_U32: Final = struct.Struct(">I")
_HEADER_HEAD: Final = struct.Struct(">HHQH")


class _Unsupported(Exception):
    pass


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise _Unsupported
    return bytes((len(raw),)) + raw


def _value(value: Any) -> bytes:
    # the kinds pika's encoder gives these values, so a consumer sees the same either way
    if isinstance(value, str):
        raw = value.encode()
        return b"S" + _U32.pack(len(raw)) + raw
    if isinstance(value, bool):
        return b"t\x01" if value else b"t\x00"
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return b"I" + _I32.pack(value)
        if -(2**63) <= value < 2**63:
            return b"l" + _I64.pack(value)
        raise _Unsupported
    if value is None:
        return b"V"
    raise _Unsupported


def _table(headers: dict[str, Any]) -> bytes:
    body = b"".join(_shortstr(k) + _value(v) for k, v in headers.items())
    return _U32.pack(len(body)) + body


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HEAD.pack(kind, channel, len(payload)) + payload + _FRAME_END


def publish_frames(
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Any,
    body_max: int,
    *,
    mandatory: bool = True,
) -> list[bytes] | None:
    """The frames of one ``basic.publish`` on ``channel``, or ``None`` when ``properties``
    hold something this encoder does not write. Bodies are split in frames of at most
    ``body_max`` bytes (the connection's frame size less a frame's head and end)."""
    p = properties
    if any(getattr(p, name) is not None for name in _OTHER_FIELDS):
        return None
    try:
        flags = 0
        fields: list[bytes] = []
        if p.content_type is not None:
            flags |= _CONTENT_TYPE
            fields.append(_shortstr(p.content_type))
        if p.headers is not None:
            flags |= _HEADERS
            fields.append(_table(p.headers))
        if p.delivery_mode is not None:
            flags |= _DELIVERY_MODE
            fields.append(bytes((p.delivery_mode,)))
        if p.priority is not None:
            flags |= _PRIORITY
            fields.append(bytes((p.priority,)))
        if p.message_id is not None:
            flags |= _MESSAGE_ID
            fields.append(_shortstr(p.message_id))
        method = (
            struct.pack(">HHH", _BASIC, _PUBLISH, 0)
            + _shortstr(exchange)
            + _shortstr(routing_key)
            + bytes((_MANDATORY if mandatory else 0,))
        )
    except (_Unsupported, TypeError, ValueError, struct.error):
        return None
    header = _HEADER_HEAD.pack(_BASIC, 0, len(body), flags) + b"".join(fields)
    frames = [_frame(_METHOD, channel, method), _frame(_HEADER, channel, header)]
    for start in range(0, len(body), body_max):
        frames.append(_frame(_BODY, channel, body[start : start + body_max]))
    return frames
