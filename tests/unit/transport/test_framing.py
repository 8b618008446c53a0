"""Length-prefixed framing: split and merged at every byte boundary, limits enforced."""

from __future__ import annotations

import pytest

from transport.framing import FrameDecoder, FrameTooLarge, encode_frame
from transport.oversize import Oversized

FRAMES = [b'{"type":"ping"}', b"", b"x" * 300, b'{"type":"pong"}']
STREAM = b"".join(encode_frame(f) for f in FRAMES)


def test_whole_stream_at_once() -> None:
    assert FrameDecoder().feed(STREAM) == FRAMES


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_split_at_every_boundary(cut: int) -> None:
    dec = FrameDecoder()
    out = dec.feed(STREAM[:cut]) + dec.feed(STREAM[cut:])
    assert out == FRAMES
    assert dec.pending == 0


def test_one_byte_at_a_time() -> None:
    dec = FrameDecoder()
    out: list[bytes | Oversized] = []
    for i in range(len(STREAM)):
        out += dec.feed(STREAM[i : i + 1])
    assert out == FRAMES


def test_frame_over_the_limit_is_refused() -> None:
    dec = FrameDecoder(max_frame=10)
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 10 bytes"):
        dec.feed(encode_frame(b"x" * 11))


def test_frame_at_the_limit_is_accepted() -> None:
    assert FrameDecoder(max_frame=10).feed(encode_frame(b"x" * 10)) == [b"x" * 10]
