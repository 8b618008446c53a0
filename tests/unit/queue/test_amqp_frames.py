"""``storage.queue_amqp_frames`` writes a ``basic.publish`` byte for byte as pika does."""

from __future__ import annotations

from typing import Any

import pika
import pika.frame
import pytest

from storage.queue_amqp_frames import publish_frames


def _pikas(channel: int, exchange: str, key: str, body: bytes, props: Any, body_max: int) -> bytes:
    method = pika.spec.Basic.Publish(exchange=exchange, routing_key=key, mandatory=True)
    out = [
        pika.frame.Method(channel, method).marshal(),
        pika.frame.Header(channel, len(body), props).marshal(),
    ]
    for start in range(0, len(body), body_max):
        out.append(pika.frame.Body(channel, body[start : start + body_max]).marshal())
    return b"".join(out)


@pytest.mark.parametrize(
    ("headers", "priority", "body"),
    [
        ({"function_id": "fn::x", "namespace": "ns", "x-attempt": 0}, None, b'{"a":1}'),
        ({"x-attempt": 3, "x-error": "boom é", "x-failed-at": 1_764_000_000_000}, 7, b"[]"),
        ({"flag": True, "off": False, "none": None, "neg": -5}, 0, b""),
        (None, None, b"x" * 10_000),  # split over body frames
    ],
)
def test_publish_frames_match_pikas_encoding(
    headers: dict[str, Any] | None, priority: int | None, body: bytes
) -> None:
    props = pika.BasicProperties(
        message_id="m-1",
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type="application/json",
        headers=headers,
        priority=priority,
    )
    frames = publish_frames(3, "iii.__fn_queue::q", "iii.__fn_queue::q.queue", body, props, 4088)
    assert frames is not None
    expected = _pikas(3, "iii.__fn_queue::q", "iii.__fn_queue::q.queue", body, props, 4088)
    assert b"".join(frames) == expected


@pytest.mark.parametrize(
    "props",
    [
        pika.BasicProperties(headers={"raw": b"bytes"}),  # a kind it does not write
        pika.BasicProperties(headers={"nested": {"a": 1}}),
        pika.BasicProperties(correlation_id="c"),  # a field it does not write
        pika.BasicProperties(message_id="m" * 300),  # too long for a short string
    ],
)
def test_publish_frames_leave_what_they_do_not_write_to_pika(props: Any) -> None:
    assert publish_frames(1, "", "q", b"{}", props, 4088) is None
