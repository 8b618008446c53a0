"""storage.queue_rabbitmq_acks: coalesced acks settle exactly the finished deliveries, checked
against a model of RabbitMQ's rules for ``basic.ack``."""

from __future__ import annotations

import random

import pytest

from storage.queue_rabbitmq_acks import AckWindow


class ChannelModel:
    """RabbitMQ's side: the unacked deliveries of a channel. ``multiple`` settles every one up
    to the tag; a tag that is not unacked closes the channel (406 unknown delivery tag)."""

    def __init__(self) -> None:
        self.unacked: set[int] = set()
        self.frames = 0

    def ack(self, tag: int, multiple: bool) -> None:
        if tag not in self.unacked:
            raise AssertionError(f"PRECONDITION_FAILED - unknown delivery tag {tag}")
        self.frames += 1
        if multiple:
            self.unacked = {t for t in self.unacked if t > tag}
        else:
            self.unacked.discard(tag)


def deliver(window: AckWindow, channel: ChannelModel, tags: range) -> None:
    for tag in tags:
        window.delivered(tag)
        channel.unacked.add(tag)


def test_a_run_finished_in_order_is_one_multiple_ack() -> None:
    window, channel = AckWindow(), ChannelModel()
    deliver(window, channel, range(1, 6))
    for tag in (1, 2, 3):
        window.finished(tag)
    assert window.acks() == [(3, True)]
    assert len(window) == 2


def test_a_single_finished_delivery_is_a_plain_ack() -> None:
    window = AckWindow()
    window.delivered(1)
    window.delivered(2)
    window.finished(1)
    assert window.acks() == [(1, False)]
    assert window.acks() == []  # nothing new finished


def test_finished_behind_an_unfinished_delivery_are_acked_alone_at_once() -> None:
    window = AckWindow()
    for tag in (1, 2, 3, 4):
        window.delivered(tag)
    window.finished(3)
    window.finished(4)
    assert window.acks() == [(3, False), (4, False)]  # 1 is still running: no multiple
    window.finished(1)
    window.finished(2)
    # 3 and 4 are acked already: the multiple ack names 2, the last one still unacked
    assert window.acks() == [(2, True)]
    assert len(window) == 0


def test_the_last_tag_of_a_multiple_ack_is_never_one_acked_before() -> None:
    window, channel = AckWindow(), ChannelModel()
    deliver(window, channel, range(1, 4))
    window.finished(2)
    for tag, multiple in window.acks():
        channel.ack(tag, multiple)
    window.finished(1)
    acks = window.acks()
    assert acks == [(1, False)]
    for tag, multiple in acks:
        channel.ack(tag, multiple)
    assert channel.unacked == {3}


@pytest.mark.parametrize("seed", range(20))
def test_random_finishing_orders_settle_exactly_the_finished_deliveries(seed: int) -> None:
    rng = random.Random(seed)
    window, channel = AckWindow(), ChannelModel()
    next_tag, running, finished = 1, list[int](), set[int]()
    for _ in range(400):
        if rng.random() < 0.5 and len(running) < 50:  # the broker delivers (prefetch 50)
            deliver(window, channel, range(next_tag, next_tag + 1))
            running.append(next_tag)
            next_tag += 1
        elif running:  # some handlers finish, mostly in order
            count = rng.randint(1, min(5, len(running)))
            for _ in range(count):
                index = 0 if rng.random() < 0.7 else rng.randrange(len(running))
                tag = running.pop(index)
                window.finished(tag)
                finished.add(tag)
        if rng.random() < 0.4:  # one batch of acks reaches the thread
            for tag, multiple in window.acks():
                channel.ack(tag, multiple)
            assert channel.unacked == set(running)
            assert len(window) == len(running)
    for tag in running:
        window.finished(tag)
    for tag, multiple in window.acks():
        channel.ack(tag, multiple)
    assert channel.unacked == set()
    assert channel.frames < next_tag - 1  # coalescing sent fewer acks than deliveries
