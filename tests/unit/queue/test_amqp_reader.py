"""``storage.queue_amqp_reader``: deliveries and confirms read from the bytes pika would have
read, in order with the frames it leaves to pika, whatever the read sizes."""

from __future__ import annotations

from typing import Any

import pika
import pika.frame
import pika.spec

from storage.queue_amqp_reader import FastReader


class _Channel:
    def __init__(self, number: int) -> None:
        self.channel_number = number
        self.is_open = True


class _Conn:
    """The fields of pika's ``Connection`` the reader uses; pika's reader records frames."""

    def __init__(self) -> None:
        self._frame_buffer = b""
        self.bytes_received = 0
        self.frames_received = 0
        self.to_pika: list[Any] = []

    def _on_data_available(self, data: bytes) -> None:
        self._frame_buffer += data
        while self._frame_buffer:
            used, value = pika.frame.decode_frame(self._frame_buffer)
            if value is None:
                return
            self._frame_buffer = self._frame_buffer[used:]
            self.bytes_received += used
            self.to_pika.append(value)


def _delivery(channel: int, tag: int, body: bytes, headers: dict[str, Any]) -> bytes:
    props = pika.BasicProperties(message_id=f"m{tag}", headers=headers)
    deliver = pika.spec.Basic.Deliver("ctag", tag, False, "ex", "key")
    frames = [
        pika.frame.Method(channel, deliver).marshal(),
        pika.frame.Header(channel, len(body), props).marshal(),
    ]
    frames += [
        pika.frame.Body(channel, body[i : i + 100]).marshal() for i in range(0, len(body), 100)
    ]
    return b"".join(frames)


def _stream() -> bytes:
    return b"".join(
        [
            _delivery(2, 1, b'{"a":1}', {"x-attempt": 0}),
            pika.frame.Method(1, pika.spec.Basic.Ack(7, multiple=True)).marshal(),
            pika.frame.Heartbeat().marshal(),
            pika.frame.Method(1, pika.spec.Basic.Nack(8)).marshal(),
            _delivery(2, 2, b"x" * 250, {"function_id": "f"}),  # three body frames
            _delivery(2, 3, b"", {}),
            _delivery(5, 4, b"{}", {}),  # a channel not consumed here: pika's
        ]
    )


def _read(chunk: int) -> tuple[_Conn, list[tuple[int, str, dict[str, Any], bytes]], list[Any]]:
    conn = _Conn()
    reader = FastReader(conn)
    got: list[tuple[int, str, dict[str, Any], bytes]] = []
    confirms: list[Any] = []
    reader.consume(
        _Channel(2), lambda _c, m, p, b: got.append((m.delivery_tag, p.message_id, p.headers, b))
    )
    reader.confirm(_Channel(1), lambda tag, multiple: confirms.append((tag, multiple)))
    data = _stream()
    for i in range(0, len(data), chunk):
        conn._on_data_available(data[i : i + chunk])  # the reader's, installed
    return conn, got, confirms


def test_hot_frames_are_read_here_and_the_rest_goes_to_pika_in_order() -> None:
    for chunk in (1, 7, 64, 1 << 20):
        conn, got, confirms = _read(chunk)
        assert got == [
            (1, "m1", {"x-attempt": 0}, b'{"a":1}'),
            (2, "m2", {"function_id": "f"}, b"x" * 250),
            (3, "m3", {}, b""),
        ], chunk
        assert confirms == [(7, True)]
        kinds = [type(f).__name__ for f in conn.to_pika]
        assert kinds == ["Heartbeat", "Method", "Method", "Header", "Body"], chunk
        assert isinstance(conn.to_pika[1].method, pika.spec.Basic.Nack)
        assert conn.bytes_received == len(_stream())
        assert conn._frame_buffer == b""


def test_a_closed_channel_s_deliveries_are_left_to_pika() -> None:
    conn = _Conn()
    reader = FastReader(conn)
    channel = _Channel(2)
    got: list[Any] = []
    reader.consume(channel, lambda *a: got.append(a))
    channel.is_open = False
    conn._on_data_available(_delivery(2, 1, b"{}", {}))
    assert got == []
    assert [type(f).__name__ for f in conn.to_pika] == ["Method", "Header", "Body"]
