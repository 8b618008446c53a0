"""RFC 6455 data framing for the server side, sans I/O: bytes in, messages and events out.

wsproto does the opening handshake; once the connection is open, this parser takes over the
byte stream because it is the hot path of every call (wsproto spends ~17 µs per small
frame in pure-Python generators; this spends ~3). It accepts only what a server must accept
from a client: masked frames, no RSV bits (we negotiate no extensions), control frames of at
most 125 bytes that are not fragmented, continuation frames only inside a fragmented message.
Large messages (up to 64 MiB, fragmented or not) are assembled without extra copies, and one
over the limit can be refused without buffering it (``FrameParser``, ``transport.oversize``).
"""

from __future__ import annotations

import struct

import attrs

from transport.oversize import FRAGMENT, KEEP, MAX_SINGLE_FRAME, Oversized

__all__ = [
    "ProtocolError",
    "TooBig",
    "FrameParser",
    "Message",
    "Oversized",
    "message_frames",
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
    data: str | bytes | bytearray  # bytearray: text assembled with ``text_as_bytes``


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


STREAM_AT = 64 * 1024  # a longer data frame is unmasked piece by piece as it arrives


def _unmask_at(payload: bytes, mask: bytes, offset: int) -> bytes:
    """Unmask bytes that start ``offset`` bytes into a frame's payload."""
    turn = offset & 3
    return _unmask(payload, mask[turn:] + mask[:turn] if turn else mask)


class FrameParser:
    """Frames in, messages out; never holds more than one message (and a read's bytes).

    Small frames take one path: wait until the frame is whole, unmask it, emit it. A data frame
    over ``STREAM_AT`` bytes is unmasked as its bytes arrive, straight into the message being
    assembled, so a 30 MiB message costs its own size (plus one read) here.

    Limits: a frame over ``max_frame`` or a message over ``max_message`` is ``TooBig`` as soon
    as a frame header announces it, unless ``discard_limit`` is set: then the message is
    *refused* instead: the bytes received so far are freed, the rest is read and thrown away,
    only ``KEEP`` bytes at each end are kept, and when the message ends it comes out as an
    ``Oversized`` item (the connection lives on). A message that goes on past
    ``discard_limit`` bytes (an endless one, say) is ``TooBig`` after all.

    ``text_as_bytes``: a text message assembled from several frames or a big one comes out
    as the ``bytearray`` it was assembled in, its UTF-8 left for the JSON parser to check:
    decoding it to ``str`` would cost a copy, and the JSON parser another one.
    """

    def __init__(
        self,
        *,
        max_frame: int,
        max_message: int,
        masked: bool = True,
        discard_limit: int | None = None,
        text_as_bytes: bool = False,
    ) -> None:
        """``masked``: frames from a client (a server's view); False parses server frames."""
        self.masked = masked
        self.text_as_bytes = text_as_bytes
        self.max_frame = max_frame
        self.max_message = max_message
        self.discard_limit = discard_limit
        self._buf = bytearray()
        self._msg_op: int | None = None  # opcode of the message being assembled
        self._body = bytearray()
        self._size = 0  # bytes announced by the frame headers of that message
        self._rem = 0  # bytes still to come of the frame being streamed
        self._mask = b""
        self._fpos = 0  # bytes of it consumed so far
        self._ffin = False
        self._refused: int | None = None  # the limit the message broke, while refusing it
        self._head = bytearray()
        self._tail = b""

    @property
    def buffered(self) -> int:
        """Bytes held: unparsed input, the message being assembled, a refused one's ends."""
        return len(self._buf) + len(self._body) + len(self._head) + len(self._tail)

    def feed(self, data: bytes | bytearray) -> list[Message | Control | Oversized]:
        """Consume bytes; return the complete messages and control frames, in order."""
        buf = self._buf
        buf += data
        out: list[Message | Control | Oversized] = []
        pos = 0
        end = len(buf)
        while True:
            if self._rem:
                n = min(self._rem, end - pos)
                if not n:
                    break
                self._take(buf, pos, n)
                pos += n
                self._rem -= n
                if self._rem:
                    break
                if self._ffin:
                    self._finish(out)
                continue
            if end - pos < 2:
                break
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
            key = 4 if self.masked else 0
            total = head + key + length
            if opcode in _CONTROL:
                if length > 125 or not fin:
                    raise ProtocolError("control frames must be unfragmented and ≤ 125 bytes")
                if end - pos < total:
                    break
                payload = bytes(buf[pos + head + key : pos + total])
                if key:
                    payload = _unmask(payload, bytes(buf[pos + head : pos + head + 4]))
                pos += total
                out.append(Control(opcode, payload))
                continue
            if opcode == OP_CONT:
                if self._msg_op is None:
                    raise ProtocolError("continuation frame outside a fragmented message")
            elif opcode in _DATA:
                if self._msg_op is not None:
                    raise ProtocolError("new data frame inside a fragmented message")
            else:
                raise ProtocolError(f"unknown opcode {opcode:#x}")
            if self._refused is None and (
                length > self.max_frame or self._size + length > self.max_message
            ):
                self._refuse(length)
            if self._refused is None and length <= STREAM_AT:
                if end - pos < total:
                    break
                payload = bytes(buf[pos + head + key : pos + total])
                if key:
                    payload = _unmask(payload, bytes(buf[pos + head : pos + head + 4]))
                pos += total
                if fin and self._msg_op is None:  # the hot path: a whole small message
                    if opcode == OP_TEXT:
                        try:
                            out.append(Message(payload.decode()))
                        except UnicodeDecodeError:
                            raise ProtocolError("text message is not UTF-8", 1007) from None
                    else:
                        out.append(Message(payload))
                    continue
                if self._msg_op is None:
                    self._msg_op = opcode
                self._size += length
                self._body += payload
                if fin:
                    self._finish(out)
                continue
            # A big frame, or any frame of a refused message: its payload streams in.
            if self._refused is not None and self.discard_limit is not None:
                if self._size + length > self.discard_limit:
                    raise TooBig(
                        f"message exceeds {self.discard_limit} bytes while being refused: cut off"
                    )
            if end - pos < head + key:
                break
            self._mask = bytes(buf[pos + head : pos + head + key])
            pos += head + key
            if self._msg_op is None:
                self._msg_op = opcode
            self._size += length
            self._rem, self._fpos, self._ffin = length, 0, bool(fin)
            if not length and fin:
                self._finish(out)
        if pos:
            del buf[:pos]
        return out

    def _refuse(self, length: int) -> None:
        """The frame announced at this header breaks a limit: refuse its message (or raise)."""
        frame_too_big = length > self.max_frame
        limit = self.max_frame if frame_too_big else self.max_message
        what = "frame" if frame_too_big else "message"
        if self.discard_limit is None:
            raise TooBig(f"{what} exceeds {limit} bytes")
        body = self._body
        self._head = bytearray(body[:KEEP])
        self._tail = bytes(body[-KEEP:])
        self._body = bytearray()  # freed now: what arrives from here on is thrown away
        self._refused = limit

    def _take(self, buf: bytearray, pos: int, n: int) -> None:
        """Consume ``n`` payload bytes of the streamed frame from ``buf[pos:]``."""
        mask, offset = self._mask, self._fpos
        self._fpos += n
        if self._refused is None:
            with memoryview(buf) as view:
                chunk = view[pos : pos + n].tobytes()
            self._body += _unmask_at(chunk, mask, offset) if mask else chunk
            return
        # Refusing: unmask only what is kept, the first and last KEEP bytes.
        want = KEEP - len(self._head)
        if want > 0:
            first = bytes(buf[pos : pos + min(want, n)])
            self._head += _unmask_at(first, mask, offset) if mask else first
        cut = max(0, n - KEEP)
        last = bytes(buf[pos + cut : pos + n])
        if mask:
            last = _unmask_at(last, mask, offset + cut)
        self._tail = (self._tail + last)[-KEEP:]

    def _finish(self, out: list[Message | Control | Oversized]) -> None:
        """The message being assembled (or refused) is complete."""
        op, body = self._msg_op, self._body
        if self._refused is not None:
            out.append(
                Oversized(self._size, self._refused, bytes(self._head), self._tail, op == OP_BINARY)
            )
        elif op == OP_TEXT and self.text_as_bytes:
            out.append(Message(body))
        elif op == OP_TEXT:
            try:
                out.append(Message(body.decode()))
            except UnicodeDecodeError:
                raise ProtocolError("text message is not UTF-8", 1007) from None
        else:
            out.append(Message(bytes(body)))
        self._msg_op, self._size, self._refused = None, 0, None
        self._body, self._head, self._tail = bytearray(), bytearray(), b""


def message_frames(
    opcode: int,
    payload: bytes,
    *,
    single: int = MAX_SINGLE_FRAME,
    fragment: int = FRAGMENT,
) -> list[bytes | memoryview]:
    """One outbound message as server frames: headers and views of ``payload`` (no copy).

    Up to ``single`` bytes it is one frame; a longer one is fragmented as SDK 0.25 sends it:
    ``fragment``-byte pieces, text cut only between UTF-8 characters (each fragment decodes
    on its own, which some clients require of text fragments).
    """
    n = len(payload)
    if n <= single:
        return [_header(0x80 | opcode, n), payload]
    view = memoryview(payload)
    out: list[bytes | memoryview] = []
    start, op = 0, opcode
    while start < n:
        stop = min(start + fragment, n)
        if opcode == OP_TEXT:
            while stop < n and payload[stop] & 0xC0 == 0x80:
                stop -= 1
        out.append(_header((0x80 if stop == n else 0) | op, stop - start))
        out.append(view[start:stop])
        start, op = stop, OP_CONT
    return out


def _header(b0: int, n: int) -> bytes:
    if n < 126:
        return _H2.pack(b0, n)
    if n < 65536:
        return _H2.pack(b0, 126) + _U16.pack(n)
    return _H2.pack(b0, 127) + _U64.pack(n)


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    return _header(0x80 | opcode, len(payload)) + payload


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
