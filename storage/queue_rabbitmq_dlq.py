"""The dead-letter queue of a RabbitMQ-backed queue (WORKERS.md §7.3): listing, redrive of all
messages or of one by id (any message, not only the head one), and discard by id.

AMQP has no "read the message with id X": a scan takes the DLQ's messages one by one with
``basic.get`` on a channel of its own, acks the ones it moved or discarded and then closes the
channel, which gives every other message back to the queue in its order. A redriven message is
published to the main queue and confirmed by the broker before its DLQ copy is acked, so a
crash in between duplicates it, never loses it.

The scan runs in the adapter's connection thread (``storage.queue_rabbitmq``), which passes in
the channel to scan with and a function that publishes and waits for the confirm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import orjson
import pika

from storage.errors import StorageUnavailableError
from storage.queue_broker import DeadMessage

__all__ = [
    "DLQ_SCAN_LIMIT",
    "dead_message",
    "first_with_id",
    "pick_all",
    "redriven",
    "scan_dlq",
]

DLQ_SCAN_LIMIT: Final = 10_000  # a DLQ listing reads at most this many messages

Channel = Any  # pika.adapters.blocking_connection.BlockingChannel (pika ships no types)
Seen = tuple[Any, Any, bytes]  # (method, properties, body) of one DLQ message
# (thread) Publish to the default exchange with this routing key and wait for the confirm:
# whether the message was routed.
PublishWait = Callable[[str, bytes, Any], bool]


def scan_dlq(
    channel: Channel,
    dlq: str,
    pick: Callable[[Any], bool] | None,
    action: Literal["list", "redrive", "discard"],
    *,
    main_queue: str,
    publish_wait: PublishWait,
) -> tuple[list[Seen], int]:
    """(thread) Every message of ``dlq`` (at most ``DLQ_SCAN_LIMIT``), oldest first, and how
    many of those ``pick`` chose were redriven to ``main_queue`` or discarded. ``channel`` is
    closed on the way out, so whatever was not acked goes back."""
    seen: list[Seen] = []
    moved = 0
    try:
        for _ in range(DLQ_SCAN_LIMIT):
            method, props, body = channel.basic_get(dlq, auto_ack=False)
            if method is None:
                break
            seen.append((method, props, body))
            if action == "list" or pick is None or not pick(props):
                continue
            if action == "redrive" and not publish_wait(main_queue, body, redriven(props)):
                raise StorageUnavailableError(f"could not route to {main_queue}")
            channel.basic_ack(method.delivery_tag)
            moved += 1
    finally:
        if channel.is_open:
            channel.close()  # everything not acked goes back, in order
    return seen, moved


def redriven(props: Any) -> Any:
    """The properties of a DLQ message sent back to its queue: attempts reset, error gone."""
    headers = {**(props.headers or {}), "x-attempt": 0}
    headers.pop("x-error", None)
    headers.pop("x-failed-at", None)
    return pika.BasicProperties(
        message_id=props.message_id,
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type="application/json",
        headers=headers,
    )


def dead_message(props: Any, body: bytes) -> DeadMessage:
    """A DLQ message as ``engine::queue::dlq_messages`` lists it."""
    headers = props.headers or {}
    failed = headers.get("x-failed-at")
    return DeadMessage(
        id=props.message_id or "",
        data=_loads(body),
        error=_text(headers.get("x-error")),
        failed_at=failed / 1000 if isinstance(failed, int) else None,
        attempts=int(headers.get("x-attempt") or 0),
        size_bytes=len(body),
    )


def pick_all(props: Any) -> bool:
    return True


def first_with_id(message_id: str) -> Callable[[Any], bool]:
    """A DLQ scan's picker: true for the first message with ``message_id``, then never."""
    picked: list[str] = []

    def pick(props: Any) -> bool:
        if not picked and props.message_id == message_id:
            picked.append(message_id)
            return True
        return False

    return pick


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None
