"""RFC 6455 server-side framing, checked against wsproto's client as the reference encoder."""

from __future__ import annotations

import os

import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

from transport.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    Control,
    FrameParser,
    Message,
    ProtocolError,
    TooBig,
    encode_close,
    encode_frame,
)


def client_frames() -> FrameProtocol:
    return FrameProtocol(client=True, extensions=[])  # masks, like every real client


def parser(**kw: int) -> FrameParser:
    return FrameParser(
        max_frame=kw.get("max_frame", 1 << 24), max_message=kw.get("max_message", 1 << 26)
    )


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_of_every_length_class(size: int) -> None:
    text = ("é" * size)[:size]
    wire = client_frames().send_data(text)
    assert parser().feed(wire) == [Message(text)]


def test_binary_and_unicode() -> None:
    blob = os.urandom(3000)
    wire = client_frames().send_data(blob) + client_frames().send_data("ünïcødé ✓")
    assert parser().feed(wire) == [Message(blob), Message("ünïcødé ✓")]


def test_split_at_every_byte_boundary() -> None:
    proto = client_frames()
    wire = proto.send_data("hello") + proto.ping(b"p1") + proto.send_data(b"\x00" * 200)
    expected = [Message("hello"), Control(OP_PING, b"p1"), Message(b"\x00" * 200)]
    for cut in range(len(wire) + 1):
        p = parser()
        assert p.feed(wire[:cut]) + p.feed(wire[cut:]) == expected


def test_fragmented_message_with_a_ping_in_the_middle() -> None:
    proto = client_frames()
    wire = (
        proto.send_data("abc", fin=False)
        + proto.ping(b"x")
        + proto.send_data("def", fin=False)
        + proto.send_data("ghi", fin=True)
    )
    assert parser().feed(wire) == [Control(OP_PING, b"x"), Message("abcdefghi")]


def test_close_frame_is_a_control_item() -> None:
    wire = client_frames().close(1000, "bye")
    (item,) = parser().feed(wire)
    assert isinstance(item, Control)
    assert item.opcode == OP_CLOSE and item.payload[:2] == (1000).to_bytes(2, "big")


def test_unmasked_client_frame_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="masked"):
        parser().feed(encode_frame(OP_TEXT, b"hi"))


def test_reserved_bits_are_a_protocol_error() -> None:
    wire = bytearray(client_frames().send_data("hi"))
    wire[0] |= 0x40
    with pytest.raises(ProtocolError, match="reserved"):
        parser().feed(bytes(wire))


def test_continuation_without_a_start_is_a_protocol_error() -> None:
    proto = client_frames()
    proto.send_data("a", fin=False)
    cont = proto.send_data("b", fin=True)  # a continuation frame on its own
    with pytest.raises(ProtocolError, match="continuation"):
        parser().feed(cont)


def test_invalid_utf8_text_is_1007() -> None:
    wire = bytearray(client_frames().send_data(b"\xff\xfe"))
    wire[0] = (wire[0] & 0xF0) | Opcode.TEXT  # claim text, carry bytes that are not UTF-8
    with pytest.raises(ProtocolError) as info:
        parser().feed(bytes(wire))
    assert info.value.code == 1007


def test_frame_over_the_limit_fails_on_its_header() -> None:
    wire = client_frames().send_data(b"x" * 2000)
    with pytest.raises(TooBig, match="frame exceeds 1000"):
        parser(max_frame=1000).feed(wire[:10])


def test_message_over_the_limit_across_fragments() -> None:
    proto = client_frames()
    wire = b"".join(proto.send_data(b"x" * 600, fin=False) for _ in range(2))
    with pytest.raises(TooBig, match="message exceeds 1000"):
        parser(max_frame=1000, max_message=1000).feed(wire)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_decode_with_wsproto(size: int) -> None:
    server = FrameProtocol(client=False, extensions=[])
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(encode_frame(OP_BINARY, b"y" * size) + encode_close(1012, "restart"))
    frames = list(client.received_frames())
    assert frames[0].opcode == Opcode.BINARY and len(frames[0].payload) == size
    assert frames[1].opcode == Opcode.CLOSE and frames[1].payload == (1012, "restart")
    del server


def test_client_side_round_trip_with_masking() -> None:
    from transport.wsframes import encode_masked_frame

    wire = encode_masked_frame(OP_TEXT, "héllo".encode(), b"\x01\x02\x03\x04")
    assert parser().feed(wire) == [Message("héllo")]  # a server parses what a client masks
    server_side = FrameParser(max_frame=1 << 20, max_message=1 << 20, masked=False)
    assert server_side.feed(encode_frame(OP_TEXT, b"back")) == [Message("back")]
    with pytest.raises(ProtocolError, match="unmasked"):
        server_side.feed(wire)
