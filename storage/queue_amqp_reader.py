"""The RabbitMQ adapter's hot inbound frames, read here instead of by pika: a delivery
(``basic.deliver``, its content header and body) on a consuming channel and a publisher
confirm (``basic.ack``) on the publishing channel. pika decodes every frame into objects and
routes it through its callback registry in pure Python, the largest part of the adapter
thread's CPU per job. Every other frame (heartbeats, replies to declarations, ``basic.nack``,
``basic.return`` and its content, closes) goes to pika's own reader, one frame at a time and
in the order the broker sent them, so pika's state stays its own.

``install`` replaces the connection's ``_on_data_available`` (the hook through which pika's
transport hands the protocol what it read). A frame is read here only on a channel pika has
open; the content header's properties are decoded by pika's ``BasicProperties``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

import attrs
import pika
import pika.spec

__all__ = ["Deliver", "FastReader"]

_HEAD: Final = struct.Struct(">BHI")
_CLASS_METHOD: Final = struct.Struct(">HH")
_U64: Final = struct.Struct(">Q")
_HEADER_SIZE: Final = struct.Struct(">HHQ")
_FRAME_END: Final = 0xCE
_METHOD: Final = 1
_HEADER: Final = 2
_BODY: Final = 3
_BASIC: Final = 60
_DELIVER: Final = 60
_ACK: Final = 80

OnDelivery = Callable[[Any, "Deliver", Any, bytes], None]  # (pika channel, method, props, body)
OnConfirm = Callable[[int, bool], None]  # (delivery tag, multiple)


@attrs.define(slots=True)
class Deliver:
    """What a ``basic.deliver`` says (the fields the adapter reads of pika's)."""

    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str


@attrs.define(slots=True)
class _Pending:
    method: Deliver
    props: Any = None
    size: int = 0
    parts: list[bytes] = attrs.Factory(list)
    got: int = 0


def _shortstr(buf: bytes, at: int) -> tuple[str, int]:
    n = buf[at]
    return buf[at + 1 : at + 1 + n].decode("utf-8", "replace"), at + 1 + n


class FastReader:
    """Installed on one pika connection (``impl``: its ``Connection``)."""

    def __init__(self, impl: Any) -> None:
        self._impl = impl
        self._pikas: Callable[[bytes], None] = impl._on_data_available
        self._consumers: dict[int, tuple[Any, OnDelivery]] = {}
        self._confirms: dict[int, tuple[Any, OnConfirm]] = {}
        self._pending: dict[int, _Pending] = {}
        impl._on_data_available = self._on_data

    def consume(self, channel: Any, on_delivery: OnDelivery) -> None:
        """Read the deliveries of ``channel`` (pika's ``Channel``) here."""
        self._consumers[channel.channel_number] = (channel, on_delivery)
        self._pending.pop(channel.channel_number, None)

    def confirm(self, channel: Any, on_confirm: OnConfirm) -> None:
        """Read the ``basic.ack`` confirms of ``channel`` here."""
        self._confirms[channel.channel_number] = (channel, on_confirm)

    def _on_data(self, data: bytes) -> None:
        impl = self._impl
        buf = impl._frame_buffer + data if impl._frame_buffer else data
        impl._frame_buffer = b""
        pos = 0
        size = len(buf)
        while size - pos >= 8:
            kind, channel, length = _HEAD.unpack_from(buf, pos)
            end = pos + 7 + length
            if end >= size:
                break  # the frame is not all here yet
            if buf[end] == _FRAME_END and self._read(kind, channel, buf, pos + 7, end):
                impl.bytes_received += end + 1 - pos
                impl.frames_received += 1
            else:  # pika's: handed over alone, so that it sees the frames in order
                self._pikas(buf[pos : end + 1])
                if impl._frame_buffer:  # pika could not read it: the rest is pika's too
                    self._pikas(buf[end + 1 :])
                    return
            pos = end + 1
        impl._frame_buffer = buf[pos:] if pos < size else b""

    def _read(self, kind: int, channel: int, buf: bytes, start: int, end: int) -> bool:
        """Read one frame here if it is a hot one: whether it was."""
        if kind == _BODY:
            pending = self._pending.get(channel)
            if pending is None or pending.props is None:
                return False
            part = buf[start:end]
            pending.parts.append(part)
            pending.got += len(part)
            if pending.got >= pending.size:
                self._deliver(channel, pending)
            return True
        if kind == _HEADER:
            pending = self._pending.get(channel)
            if pending is None or pending.props is not None:
                return False
            _cls, _weight, pending.size = _HEADER_SIZE.unpack_from(buf, start)
            props = pika.spec.BasicProperties()
            props.decode(buf[start + 12 : end])
            pending.props = props
            if pending.size == 0:
                self._deliver(channel, pending)
            return True
        if kind != _METHOD or end - start < 4:
            return False
        cls, method = _CLASS_METHOD.unpack_from(buf, start)
        if cls != _BASIC:
            return False
        if method == _DELIVER:
            consumer = self._consumers.get(channel)
            if consumer is None or not consumer[0].is_open or channel in self._pending:
                return False
            tag, at = _shortstr(buf, start + 4)
            (delivery_tag,) = _U64.unpack_from(buf, at)
            redelivered = bool(buf[at + 8] & 1)
            exchange, at = _shortstr(buf, at + 9)
            key, _ = _shortstr(buf, at)
            self._pending[channel] = _Pending(
                Deliver(tag, delivery_tag, redelivered, exchange, key)
            )
            return True
        if method == _ACK:
            confirm = self._confirms.get(channel)
            if confirm is None or not confirm[0].is_open:
                return False
            (delivery_tag,) = _U64.unpack_from(buf, start + 4)
            confirm[1](delivery_tag, bool(buf[start + 12] & 1))
            return True
        return False

    def _deliver(self, channel: int, pending: _Pending) -> None:
        del self._pending[channel]
        consumer = self._consumers.get(channel)
        if consumer is None:
            return
        parts = pending.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        consumer[1](consumer[0], pending.method, pending.props, body)
