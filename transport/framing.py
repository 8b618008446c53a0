"""Length-prefixed framing for local sockets (actor ↔ bus), sans I/O.

A frame is a 4-byte big-endian length followed by that many bytes of one JSON message.
``FrameDecoder.feed`` takes bytes as they arrive, in pieces of any size, and returns the
complete frames; a declared length over the limit is a ``FrameTooLarge`` error, after which
the stream cannot be resynchronised and the link must be closed.
"""

from __future__ import annotations

import struct

__all__ = ["FrameDecoder", "FrameTooLarge", "encode_frame", "DEFAULT_MAX_FRAME"]

_HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 64 * 1024 * 1024


class FrameTooLarge(ValueError):
    pass


def encode_frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need: int | None = None

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        pos = 0
        while True:
            if self._need is None:
                if len(buf) - pos < 4:
                    break
                (need,) = _HEADER.unpack_from(buf, pos)
                if need > self.max_frame:
                    raise FrameTooLarge(
                        f"frame of {need} bytes exceeds the limit of {self.max_frame} bytes"
                    )
                self._need = need
                pos += 4
            if len(buf) - pos < self._need:
                break
            out.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = None
        if pos:
            del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)
