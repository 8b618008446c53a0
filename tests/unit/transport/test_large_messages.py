"""Large messages on both carriers, sans I/O: fragmentation as SDK 0.25 does it (UTF-8-safe
1 MiB fragments past 16 MiB), reassembly under a bound, refusing what is over the limit
without buffering it, and the ends kept to answer it."""

from __future__ import annotations

import os
import uuid

import orjson
import pytest
from wsproto.frame_protocol import FrameProtocol

from transport.framing import FrameDecoder, FrameTooLarge, encode_frame
from transport.oversize import FRAGMENT, KEEP, MAX_SINGLE_FRAME, Oversized, correlate
from transport.wsframes import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    Control,
    FrameParser,
    Message,
    TooBig,
    encode_masked_frame,
    message_frames,
)

MIB = 1024 * 1024
UNIT = "é€😀"  # 2, 3 and 4 bytes of UTF-8


def client() -> FrameProtocol:
    return FrameProtocol(client=True, extensions=[])


def masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame with a random mask (so every unmasking offset gets exercised)."""
    frame = bytearray(encode_masked_frame(opcode, payload, os.urandom(4)))
    if not fin:
        frame[0] &= 0x7F
    return bytes(frame)


def sdk_fragments(payload: bytes, size: int = FRAGMENT) -> list[bytes]:
    """What SDK 0.25 puts on the wire for a message over 16 MiB: UTF-8-safe pieces."""
    pieces, start = [], 0
    while start < len(payload):
        stop = min(start + size, len(payload))
        while stop < len(payload) and payload[stop] & 0xC0 == 0x80:
            stop -= 1
        pieces.append(payload[start:stop])
        start = stop
    return pieces


def fragmented(payload: bytes, size: int = FRAGMENT, opcode: int = OP_TEXT) -> bytes:
    pieces = sdk_fragments(payload, size) if opcode == OP_TEXT else None
    if pieces is None:
        pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    frames = [
        masked(opcode if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1)
        for i, p in enumerate(pieces)
    ]
    return b"".join(frames)


def feed_in_chunks(parser: FrameParser, wire: bytes, chunk: int) -> list[object]:
    out: list[object] = []
    for i in range(0, len(wire), chunk):
        out += parser.feed(wire[i : i + chunk])
    return out


def big_parser(**kw: int) -> FrameParser:
    return FrameParser(max_frame=kw.get("max_frame", 64 * MIB), max_message=64 * MIB)


# -- reassembly -------------------------------------------------------------------------------


def test_a_20_mib_non_ascii_message_in_sdk_fragments_reassembles() -> None:
    text = UNIT * (20 * MIB // 9)
    wire = fragmented(text.encode())
    parser = big_parser()
    assert feed_in_chunks(parser, wire, 256 * 1024) == [Message(text)]
    assert parser.buffered == 0


def test_fragments_cut_inside_a_character_still_reassemble() -> None:
    """RFC 6455 lets a text message split anywhere; only the whole must be UTF-8."""
    text = UNIT * 40_000
    raw = text.encode()
    pieces = [raw[i : i + 70_001] for i in range(0, len(raw), 70_001)]  # cuts mid-character
    assert any(p[0] & 0xC0 == 0x80 for p in pieces[1:])
    wire = b"".join(
        masked(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1)
        for i, p in enumerate(pieces)
    )
    assert feed_in_chunks(big_parser(), wire, 65_537) == [Message(text)]


@pytest.mark.parametrize("chunk", [1, 3, 4099])
def test_a_streamed_frame_unmasks_right_at_any_read_boundary(chunk: int) -> None:
    payload = os.urandom(70_000 if chunk > 1 else 66_000)  # over STREAM_AT: unmasked as it comes
    wire = masked(OP_BINARY, payload)
    assert feed_in_chunks(big_parser(), wire, chunk) == [Message(payload)]


def test_one_frame_of_60_mib_is_accepted_as_sdk_023_sends_it() -> None:
    text = "€" * (20 * MIB)  # 60 MiB of UTF-8 in one unfragmented frame
    out = feed_in_chunks(big_parser(), masked(OP_TEXT, text.encode()), 256 * 1024)
    assert out == [Message(text)]


def test_control_frames_between_fragments_of_a_large_message_come_out_first() -> None:
    raw = (UNIT * 100_000).encode()
    pieces = sdk_fragments(raw, 300_000)
    wire = b""
    for i, piece in enumerate(pieces):
        wire += masked(OP_TEXT if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
        if i < len(pieces) - 1:
            wire += client().ping(f"p{i}".encode())
    out = feed_in_chunks(big_parser(), wire, 100_000)
    pings = [Control(OP_PING, f"p{i}".encode()) for i in range(len(pieces) - 1)]
    assert out == [*pings, Message(raw.decode())]


def test_text_as_bytes_hands_out_the_assembled_buffer_small_text_stays_str() -> None:
    parser = big_parser()
    parser.text_as_bytes = True
    raw = (UNIT * 20_000).encode()
    (big,) = parser.feed(fragmented(raw, 50_000))
    (small,) = parser.feed(client().send_data("hi"))
    assert isinstance(big, Message) and type(big.data) is bytearray and big.data == raw
    assert small == Message("hi")
    assert orjson.loads(orjson.dumps({"t": raw.decode()})) == {"t": raw.decode()}


# -- fragmentation (engine → worker) ----------------------------------------------------------


def test_up_to_16_mib_is_one_frame_written_from_the_payload_itself() -> None:
    payload = b"x" * 1000
    head, body = message_frames(OP_TEXT, payload)
    assert body is payload
    assert head[0] == 0x80 | OP_TEXT


def test_over_16_mib_goes_out_in_utf8_safe_1_mib_fragments_the_sdk_reassembles() -> None:
    raw = (UNIT * (MAX_SINGLE_FRAME // 9 + 1000)).encode()
    assert len(raw) > MAX_SINGLE_FRAME
    pieces = message_frames(OP_TEXT, raw)
    payloads = [bytes(p) for p in pieces[1::2]]
    assert all(len(p) <= FRAGMENT for p in payloads)
    for p in payloads:
        p.decode()  # each fragment is valid UTF-8 on its own
    assert b"".join(payloads) == raw
    opcodes = [bytes(h)[0] for h in pieces[0::2]]
    assert opcodes[0] == OP_TEXT and opcodes[-1] == 0x80 | OP_CONT
    assert set(opcodes[1:-1]) == {OP_CONT}
    reader = FrameParser(max_frame=64 * MIB, max_message=64 * MIB, masked=False)
    wire = b"".join(bytes(p) for p in pieces)
    assert feed_in_chunks(reader, wire, 1 << 20) == [Message(raw.decode())]


def test_fragments_are_what_a_websocket_client_library_reassembles() -> None:
    raw = (UNIT * 3000).encode()
    wire = b"".join(bytes(p) for p in message_frames(OP_TEXT, raw, single=1000, fragment=1000))
    proto = FrameProtocol(client=True, extensions=[])
    proto.receive_bytes(wire)
    frames = list(proto.received_frames())
    assert len(frames) > 20
    assert "".join(str(f.payload) for f in frames) == raw.decode()
    assert frames[-1].message_finished


# -- limits -----------------------------------------------------------------------------------


def test_without_refusing_a_message_over_the_limit_fails_on_the_header() -> None:
    parser = FrameParser(max_frame=1000, max_message=1000)
    wire = fragmented(b"x" * 1500, 600, OP_BINARY)
    with pytest.raises(TooBig, match="message exceeds 1000"):
        parser.feed(wire[:700])  # the second header announces it: not a byte more is needed


def invoke(function_id: str, text: str, invocation_id: str) -> bytes:
    msg = {"type": "invokefunction", "function_id": function_id, "data": {"t": text}}
    return orjson.dumps({**msg, "invocation_id": invocation_id})


def test_a_refused_message_keeps_only_its_ends_and_the_next_one_parses() -> None:
    parser = FrameParser(max_frame=10_000, max_message=10_000, discard_limit=100_000)
    inv = str(uuid.uuid4())
    payload = invoke("big::echo", "z" * 50_000, inv)
    held = []
    out: list[object] = []
    wire = fragmented(payload, 3000) + client().send_data('{"type":"ping"}')
    for i in range(0, len(wire), 2048):
        out += parser.feed(wire[i : i + 2048])
        held.append(parser.buffered)
    refused, after = out
    assert isinstance(refused, Oversized)
    assert (refused.size, refused.limit) == (len(payload), 10_000)
    assert refused.head == payload[:KEEP] and refused.tail == payload[-KEEP:]
    assert after == Message('{"type":"ping"}')
    assert max(held) <= 10_000 + 2 * KEEP + 2048  # never the message, only its ends
    found = correlate(refused)
    assert (found.tag, found.invocation_id, found.function_id) == (
        "invokefunction",
        inv,
        "big::echo",
    )


def test_a_single_frame_over_the_frame_limit_is_refused_as_it_streams() -> None:
    parser = FrameParser(max_frame=1000, max_message=10_000, discard_limit=100_000)
    payload = invoke("f", "q" * 5000, str(uuid.uuid4()))
    out = feed_in_chunks(parser, masked(OP_TEXT, payload), 777)
    (refused,) = out
    assert isinstance(refused, Oversized) and refused.limit == 1000
    assert refused.head == payload[:KEEP] and refused.tail == payload[-KEEP:]


def test_an_endless_message_is_cut_off_and_never_buffered() -> None:
    parser = FrameParser(max_frame=4000, max_message=4000, discard_limit=40_000)
    parser.feed(masked(OP_TEXT, b"[" + b"1," * 1000, fin=False))
    fragment = masked(OP_CONT, b"1," * 1000, fin=False)
    with pytest.raises(TooBig, match="cut off"):
        for _ in range(100):
            assert parser.feed(fragment) == []
            assert parser.buffered <= 4000 + 2 * KEEP
    assert parser.buffered <= 4000 + 2 * KEEP + len(fragment)


def test_correlate_ignores_keys_inside_strings() -> None:
    fake = b'{"data":"\\"invocation_id\\":\\"x\\"","type":"invocationresult"'
    tail = b',"invocation_id":"11111111-2222-3333-4444-555555555555","function_id":"a\\"b"}'
    found = correlate(Oversized(len(fake) + len(tail), 10, fake, tail))
    assert found.tag == "invocationresult"
    assert found.invocation_id == "11111111-2222-3333-4444-555555555555"
    assert found.function_id == 'a\\"b'


# -- local links (length-prefixed) ------------------------------------------------------------


def test_a_30_mib_local_frame_arrives_whole_from_reads_of_any_size() -> None:
    payload = (UNIT * (30 * MIB // 9)).encode()
    wire = encode_frame(payload) + encode_frame(b'{"type":"ping"}')
    dec = FrameDecoder()
    out: list[bytes | Oversized] = []
    for i in range(0, len(wire), 256 * 1024 + 3):
        out += dec.feed(wire[i : i + 256 * 1024 + 3])
    assert out == [payload, b'{"type":"ping"}']
    assert dec.pending == 0


def test_a_local_frame_over_the_limit_is_skipped_and_reported_when_refusing() -> None:
    inv = str(uuid.uuid4())
    payload = invoke("f", "w" * 20_000, inv)
    wire = encode_frame(payload) + encode_frame(b"next")
    dec = FrameDecoder(10_000, refuse=True)
    out: list[bytes | Oversized] = []
    for i in range(0, len(wire), 1500):
        out += dec.feed(wire[i : i + 1500])
        assert dec.pending <= 1500 + 8
    refused, after = out
    assert isinstance(refused, Oversized) and refused.size == len(payload)
    assert correlate(refused).invocation_id == inv
    assert after == b"next"
    with pytest.raises(FrameTooLarge):
        FrameDecoder(10_000).feed(wire[:4])


# -- the actor client (what our actors send the bus) ------------------------------------------


def test_the_actor_client_sends_an_error_instead_of_a_result_over_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from transport import client as client_module
    from transport import codec
    from transport import messages as m

    monkeypatch.setattr(client_module, "MAX_MESSAGE", 1000)
    ID1, ID2 = str(uuid.uuid4()), str(uuid.uuid4())
    bus_client = client_module.BusClient(None, name="t")  # type: ignore[arg-type]
    small = m.InvocationResult(ID1, "f", "ok")
    assert bus_client._encode(small) == codec.encode(small)
    big = m.InvocationResult(ID1, "f", "r" * 2000, None, "tp")
    sent = bus_client._encode(big)
    assert sent is not None
    answer = codec.decode(sent)
    assert (answer.invocation_id, answer.result, answer.traceparent) == (ID1, None, "tp")
    assert answer.error.code == "payload_too_large"
    size = len(codec.encode(big))
    assert answer.error.message.startswith(
        f"invocationresult of f is {size} bytes; the limit is 1000 bytes per message"
    )
    waiter = client_module._Waiter()
    bus_client._waiters[ID2] = waiter
    call = m.InvokeFunction("f", "c" * 2000, ID2)
    assert bus_client._encode(call) is None  # not sent; its caller gets the error at once
    assert waiter.done.is_set() and waiter.result is not None
    assert waiter.result.error is not None and waiter.result.error.code == "payload_too_large"
