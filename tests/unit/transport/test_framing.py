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


LARGE = [b"a" * 5, bytes(range(256)) * 400, b"b" * 3, b"c" * 70_000, b"d"]  # two over STREAM_AT
LARGE_STREAM = b"".join(encode_frame(f) for f in LARGE)


@pytest.mark.parametrize("size", [5, 4096, 65_536, 102_400, 110_000, len(LARGE_STREAM)])
def test_large_frames_in_reads_of_any_size(size: int) -> None:
    """A large frame read from its first byte is collected from the reads themselves; what
    follows it in the same read is still decoded, and the decoder holds nothing after."""
    dec = FrameDecoder()
    out: list[bytes | Oversized] = []
    for i in range(0, len(LARGE_STREAM), size):
        out += dec.feed(LARGE_STREAM[i : i + size])
    assert out == LARGE and all(type(f) is bytes for f in out) and dec.pending == 0
    first = LARGE_STREAM[9:]  # a read starting with a large frame's length prefix
    dec = FrameDecoder()
    assert dec.feed(first[:size]) + dec.feed(first[size:]) == LARGE[1:] and dec.pending == 0
    skipped = FrameDecoder(1000, refuse=True).feed(encode_frame(LARGE[1]) + encode_frame(b"e"))
    assert isinstance(skipped[0], Oversized) and skipped[1:] == [b"e"]
