"""Publisher confirms pipelined on one AMQP channel (RabbitMQ's confirm mode), as a pure object.

In confirm mode the broker numbers a channel's publishes 1, 2, 3, ... and later settles them
with ``basic.ack`` or ``basic.nack`` carrying a delivery tag and a ``multiple`` flag (``multiple``
settles every publish up to the tag). A mandatory publish that no queue takes comes back first
as ``basic.return`` (which names no tag), then is acked like any other. The RabbitMQ adapter
sends many publishes before the first confirm arrives and feeds the frames it receives here;
this object says which publish each frame settles and whether it was routed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

import attrs

__all__ = ["ConfirmTracker"]

T = TypeVar("T")


@attrs.define(eq=False)
class _Sent(Generic[T]):
    item: T
    message_id: str | None
    routing_key: str
    returned: bool = False


class ConfirmTracker(Generic[T]):
    """The publishes of one channel not yet confirmed, in the order they were sent."""

    def __init__(self) -> None:
        self._next_tag = 1
        self._waiting: OrderedDict[int, _Sent[T]] = OrderedDict()

    def sent(self, item: T, message_id: str | None, routing_key: str) -> int:
        """Note a publish just written to the channel; its delivery tag."""
        tag = self._next_tag
        self._next_tag += 1
        self._waiting[tag] = _Sent(item, message_id, routing_key)
        return tag

    def returned(self, message_id: str | None, routing_key: str) -> bool:
        """A ``basic.return``: mark the oldest unconfirmed publish it matches as unroutable
        (``False``: it matches none)."""
        for sent in self._waiting.values():
            if not sent.returned and (sent.message_id, sent.routing_key) == (
                message_id,
                routing_key,
            ):
                sent.returned = True
                return True
        return False

    def confirmed(self, tag: int, multiple: bool) -> list[tuple[T, bool]]:
        """The publishes a confirm with this tag settles, oldest first, each with whether it
        was routed (not returned). A tag already settled or never sent settles nothing."""
        if not multiple:
            sent = self._waiting.pop(tag, None)
            return [] if sent is None else [(sent.item, not sent.returned)]
        out: list[tuple[T, bool]] = []
        while self._waiting:
            first = next(iter(self._waiting))
            if first > tag:
                break
            _, sent = self._waiting.popitem(last=False)
            out.append((sent.item, not sent.returned))
        return out

    def drain(self) -> list[T]:
        """Every publish still waiting, oldest first, forgotten (the channel is gone: nobody
        will confirm them)."""
        out = [sent.item for sent in self._waiting.values()]
        self._waiting.clear()
        return out

    def __len__(self) -> int:
        return len(self._waiting)
