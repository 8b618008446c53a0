"""Length-prefixed framing for local sockets (actor ↔ bus), sans I/O.

A frame is a 4-byte big-endian length followed by that many bytes of one JSON message.
``FrameDecoder.feed`` takes bytes as they arrive, in pieces of any size, and returns the
complete frames. A frame over ``STREAM_AT`` bytes is collected as it arrives (not left in the
input buffer to be copied out at the end). A declared length over the limit is a
``FrameTooLarge`` error, after which the link must be closed; or, with ``refuse=True``, the
frame is skipped as it arrives (the length prefix says where it ends) and comes out as an
``Oversized`` item holding only its two ends, so the bus can answer ``payload_too_large``.
"""

from __future__ import annotations

import struct

from transport.oversize import KEEP, MAX_MESSAGE, Oversized

__all__ = ["FrameDecoder", "FrameTooLarge", "encode_frame", "frame_header", "DEFAULT_MAX_FRAME"]

_HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = MAX_MESSAGE
STREAM_AT = 64 * 1024


class FrameTooLarge(ValueError):
    pass


def encode_frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def frame_header(size: int) -> bytes:
    """The length prefix alone (a large payload is written after it, uncopied)."""
    return _HEADER.pack(size)


class FrameDecoder:
    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, *, refuse: bool = False) -> None:
        self.max_frame = max_frame
        self.refuse = refuse
        self._buf = bytearray()
        self._need: int | None = None
        self._big: bytearray | None = None  # a large frame being collected
        self._skip: int | None = None  # bytes still to skip of a refused frame
        self._size = 0
        self._head = b""
        self._tail = b""

    def feed(self, data: bytes | bytearray) -> list[bytes | Oversized]:
        out: list[bytes | Oversized] = []
        if self._big is not None or self._skip is not None:
            data = self._continue(data, out)
            if not data:
                return out
        if len(data) > STREAM_AT and not self._buf and self._need is None:
            (need,) = _HEADER.unpack_from(data, 0)
            if STREAM_AT < need <= self.max_frame:
                # A large frame at the start of a read: collected from the read itself, not
                # copied into the input buffer and out of it again first (three copies less).
                self._big, self._need = bytearray(), need
                data = self._continue(memoryview(data)[4:], out)
                if not data:
                    return out
        self._buf += data
        buf = self._buf
        pos = 0
        while True:
            if self._need is None:
                if len(buf) - pos < 4:
                    break
                (need,) = _HEADER.unpack_from(buf, pos)
                pos += 4
                if need > self.max_frame:
                    if not self.refuse:
                        raise FrameTooLarge(
                            f"frame of {need} bytes exceeds the limit of {self.max_frame} bytes"
                        )
                    self._skip, self._size, self._head, self._tail = need, need, b"", b""
                elif need > STREAM_AT:
                    self._big, self._need = bytearray(), need
                else:
                    self._need = need
                if self._skip is not None or self._big is not None:
                    rest = bytes(buf[pos:])
                    del buf[:]
                    pos = 0
                    rest = self._continue(rest, out)
                    if not rest:
                        break
                    buf += rest
                    continue
            assert self._need is not None
            if len(buf) - pos < self._need:
                break
            out.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = None
        if pos:
            del buf[:pos]
        return out

    def _continue(
        self, data: bytes | bytearray | memoryview, out: list[bytes | Oversized]
    ) -> bytes:
        """Feed the frame being collected or skipped; return the bytes after it."""
        if self._skip is not None:
            n = min(self._skip, len(data))
            if len(self._head) < KEEP:
                self._head += bytes(data[: min(n, KEEP - len(self._head))])
            self._tail = (self._tail + bytes(data[max(0, n - KEEP) : n]))[-KEEP:]
            self._skip -= n
            if self._skip:
                return b""
            out.append(Oversized(self._size, self.max_frame, self._head, self._tail))
            self._skip, self._head, self._tail = None, b"", b""
            return bytes(data[n:])
        big, need = self._big, self._need
        assert big is not None and need is not None
        n = min(need - len(big), len(data))
        if not big and n == need:  # all of it in one read: copied out once
            out.append(bytes(data[:n]))
            self._big, self._need = None, None
            return bytes(data[n:])
        big += data[:n]
        if len(big) < need:
            return b""
        out.append(bytes(big))
        self._big, self._need = None, None
        return bytes(data[n:])

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf) + (len(self._big) if self._big is not None else 0)
