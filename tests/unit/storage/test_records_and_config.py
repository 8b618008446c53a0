"""Record framing (``storage.records``), name encoding and config helpers of ``storage``.

Pure functions only.
"""

from __future__ import annotations

import struct

import pytest

from storage.factory import save_interval_seconds
from storage.filelog import encode_name
from storage.kv import UpdateResult
from storage.records import (
    decode_entry,
    delete_payload,
    frame,
    scan,
    set_payload,
)


def test_frames_round_trip() -> None:
    payloads = [b"", b"a", b"x" * 1000, set_payload("s", "k", b'{"a":1}')]
    data = b"".join(frame(p) for p in payloads)
    result = scan(data)
    assert result.payloads == payloads
    assert result.problem is None
    assert result.end == len(data)
    assert result.offsets[0] == 0


def test_scan_stops_at_every_kind_of_damage() -> None:
    good = frame(b"first")
    second = frame(b"second record")
    for cut in range(1, len(second)):
        result = scan(good + second[:cut])
        assert result.payloads == [b"first"]
        assert result.end == len(good)
        assert result.problem and "truncated" in result.problem
    flipped = bytearray(good + second)
    flipped[-1] ^= 1
    problem = scan(bytes(flipped)).problem
    assert problem is not None and problem.startswith("checksum mismatch")
    length_flipped = bytearray(good + second)
    length_flipped[len(good)] ^= 1  # length changed: the crc covers it
    assert scan(bytes(length_flipped)).payloads == [b"first"]
    huge = struct.pack("<II", 1 << 31, 0)
    assert "implausible" in (scan(good + huge).problem or "")


def test_entries() -> None:
    assert decode_entry(set_payload("a:b", "", b'"v\\u0000"')) == ("s", "a:b", "", b'"v\\u0000"')
    assert decode_entry(delete_payload("s", "k")) == ("d", "s", "k", None)
    for bad in (b'["x","s","k"]', b'["s","s","k"]', b'["d","s","k"]\x00{}', b"{}", b'["d",1,"k"]'):
        with pytest.raises(ValueError):
            decode_entry(bad)


def test_encode_name() -> None:
    assert encode_name("state") == "state"
    assert encode_name("A-z_0.9") == "A-z_0.9"
    assert encode_name("stream:chat/room 1") == "stream%3Achat%2Froom%201"
    assert encode_name("é") == "%C3%A9"


@pytest.mark.parametrize(
    "raw, seconds",
    [
        (None, 5.0),
        (0, 5.0),
        (-5, 5.0),
        ("100", 5.0),
        (True, 5.0),
        (1.5, 5.0),
        (50, 0.1),
        (100, 0.1),
        (2500, 2.5),
    ],
)
def test_save_interval(raw: object, seconds: float) -> None:
    assert save_interval_seconds(raw) == seconds


def test_update_result_wire_shape() -> None:
    assert UpdateResult(None, {}, []).to_json() == {"old_value": None, "new_value": {}}
    errors = [{"op_index": 0, "code": "c", "message": "m", "doc_url": "u"}]
    assert UpdateResult(1, 2, errors).to_json() == {
        "old_value": 1,
        "new_value": 2,
        "errors": errors,
    }
