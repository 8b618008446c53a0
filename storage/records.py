"""On-disk record framing of the file-based store: checksummed, length-prefixed records.

A record is ``<u32 length><u32 crc32(length bytes + payload)><payload>`` (little-endian); a scan
stops at the first record that is cut short or fails its checksum, so a torn tail is detected.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Final

import attrs
import orjson

__all__ = [
    "LOG_MAGIC",
    "MAX_RECORD",
    "SNAPSHOT_MAGIC",
    "ScanResult",
    "decode_entry",
    "delete_payload",
    "frame",
    "scan",
    "set_payload",
]

LOG_MAGIC: Final = b"IIIKVLG1"
SNAPSHOT_MAGIC: Final = b"IIIKVSN1"
MAX_RECORD: Final = 1 << 30
_HEADER: Final = struct.Struct("<II")
_LENGTH: Final = struct.Struct("<I")
_SEP: Final = b"\x00"  # never appears in JSON text, so it splits meta from the value bytes


def _crc(length_bytes: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(length_bytes))


def frame(payload: bytes) -> bytes:
    """One record around ``payload``."""
    if len(payload) > MAX_RECORD:
        raise ValueError(f"record of {len(payload)} bytes exceeds the limit of {MAX_RECORD}")
    length_bytes = _LENGTH.pack(len(payload))
    return length_bytes + _LENGTH.pack(_crc(length_bytes, payload)) + payload


def set_payload(scope: str, key: str, encoded: bytes) -> bytes:
    """Payload of a set entry: ``["s", scope, key]`` NUL, then the value's JSON bytes."""
    return orjson.dumps(["s", scope, key]) + _SEP + encoded


def delete_payload(scope: str, key: str) -> bytes:
    return orjson.dumps(["d", scope, key])


def decode_entry(payload: bytes) -> tuple[str, str, str, bytes | None]:
    """``(op, scope, key, value bytes or None)`` of a set/delete payload; ``ValueError`` if bad."""
    sep = payload.find(_SEP)
    meta: Any = orjson.loads(payload if sep < 0 else payload[:sep])
    if (
        not isinstance(meta, list)
        or len(meta) != 3
        or meta[0] not in ("s", "d")
        or not isinstance(meta[1], str)
        or not isinstance(meta[2], str)
        or (meta[0] == "s") == (sep < 0)
    ):
        raise ValueError("not a set/delete entry")
    return meta[0], meta[1], meta[2], None if sep < 0 else payload[sep + 1 :]


@attrs.frozen
class ScanResult:
    """Records found in a buffer: their payloads and start offsets, where the good data ends,
    and why the scan stopped early (``None`` when it reached a clean end)."""

    payloads: list[bytes]
    offsets: list[int]
    end: int
    problem: str | None


def scan(data: bytes | memoryview, start: int = 0) -> ScanResult:
    """Read consecutive records from ``data[start:]``."""
    view = memoryview(data)
    payloads: list[bytes] = []
    offsets: list[int] = []
    pos = start
    total = len(view)
    problem: str | None = None
    while pos < total:
        if total - pos < _HEADER.size:
            problem = f"truncated record header at offset {pos}"
            break
        length, crc = _HEADER.unpack_from(view, pos)
        if length > MAX_RECORD:
            problem = f"implausible record length {length} at offset {pos}"
            break
        body = pos + _HEADER.size
        if total - body < length:
            problem = f"truncated record at offset {pos} ({total - body} of {length} bytes)"
            break
        payload = bytes(view[body : body + length])
        if _crc(bytes(view[pos : pos + 4]), payload) != crc:
            problem = f"checksum mismatch in record at offset {pos}"
            break
        payloads.append(payload)
        offsets.append(pos)
        pos = body + length
    return ScanResult(payloads=payloads, offsets=offsets, end=pos, problem=problem)
