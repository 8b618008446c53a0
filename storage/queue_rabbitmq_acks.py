"""Acknowledgements of one consuming AMQP channel, coalesced (``basic.ack`` with ``multiple``),
as a pure object.

The broker numbers a channel's deliveries 1, 2, 3, ...; ``basic.ack(tag, multiple=True)`` settles
every delivery up to ``tag`` that is still unacknowledged, and RabbitMQ closes the channel
(406, unknown delivery tag) when ``tag`` itself is not one. Deliveries finish in any order, so
a multiple ack may only cover a run of *finished* deliveries: :meth:`AckWindow.acks` gives one
multiple ack for the run of finished deliveries at the front of the window (its last tag not yet
acked, so the broker knows it) and single acks for finished ones behind an unfinished delivery
(sent at once, not held back: an unacked delivery keeps its prefetch slot, and holding it would
lower the consumer's concurrency).
"""

from __future__ import annotations

from collections import deque

__all__ = ["AckWindow"]


class AckWindow:
    """The deliveries of one channel not yet covered by a multiple ack, in delivery order."""

    def __init__(self) -> None:
        self._open: deque[int] = deque()  # delivered, not yet behind a multiple ack
        self._finished: set[int] = set()  # finished since the last ``acks``, not acked
        self._acked: set[int] = set()  # in ``_open`` but acked on their own

    def delivered(self, tag: int) -> None:
        self._open.append(tag)

    def finished(self, tag: int) -> None:
        """The delivery with ``tag`` is done with (acked at the next :meth:`acks`)."""
        self._finished.add(tag)

    def acks(self) -> list[tuple[int, bool]]:
        """The ``(tag, multiple)`` acks that settle every finished delivery, to send now."""
        if not self._finished:
            return []
        out: list[tuple[int, bool]] = []
        last, run = 0, 0
        while self._open:
            tag = self._open[0]
            if tag in self._finished:
                self._finished.discard(tag)
                last, run = tag, run + 1
            elif tag in self._acked:
                self._acked.discard(tag)  # settled already: no need to name it again
            else:
                break
            self._open.popleft()
        if run:
            out.append((last, run > 1))
        for tag in sorted(self._finished):
            out.append((tag, False))
            self._acked.add(tag)
        self._finished.clear()
        return out

    def __len__(self) -> int:
        """Deliveries neither acked nor finished."""
        return len(self._open) - len(self._acked) - len(self._finished)
