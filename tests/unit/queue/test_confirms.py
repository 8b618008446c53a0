"""storage.queue_confirms: which pipelined publish each broker confirm settles."""

from __future__ import annotations

from storage.queue_confirms import ConfirmTracker


def sent(tracker: ConfirmTracker[str], *names: str) -> list[int]:
    return [tracker.sent(name, f"id-{name}", "q") for name in names]


def test_tags_count_from_one_in_send_order() -> None:
    tracker: ConfirmTracker[str] = ConfirmTracker()
    assert sent(tracker, "a", "b", "c") == [1, 2, 3]
    assert len(tracker) == 3


def test_a_multiple_ack_settles_every_publish_up_to_its_tag_oldest_first() -> None:
    tracker: ConfirmTracker[str] = ConfirmTracker()
    sent(tracker, "a", "b", "c", "d")
    assert tracker.confirmed(3, multiple=True) == [("a", True), ("b", True), ("c", True)]
    assert len(tracker) == 1
    assert tracker.confirmed(3, multiple=True) == []  # settled already


def test_a_single_ack_settles_only_its_own_tag_even_out_of_order() -> None:
    tracker: ConfirmTracker[str] = ConfirmTracker()
    sent(tracker, "a", "b", "c")
    assert tracker.confirmed(2, multiple=False) == [("b", True)]
    assert tracker.confirmed(2, multiple=False) == []
    assert tracker.confirmed(3, multiple=True) == [("a", True), ("c", True)]


def test_a_returned_publish_is_settled_as_not_routed() -> None:
    tracker: ConfirmTracker[str] = ConfirmTracker()
    tracker.sent("a", "same", "q1")
    tracker.sent("b", "same", "q2")
    tracker.sent("c", "same", "q2")
    assert tracker.returned("same", "q2")  # the oldest match: b
    assert not tracker.returned("other", "q2")
    assert tracker.confirmed(3, multiple=True) == [("a", True), ("b", False), ("c", True)]


def test_drain_gives_back_every_unconfirmed_publish_in_order_and_forgets_them() -> None:
    tracker: ConfirmTracker[str] = ConfirmTracker()
    sent(tracker, "a", "b", "c")
    tracker.confirmed(1, multiple=False)
    assert tracker.drain() == ["b", "c"]
    assert len(tracker) == 0
    assert tracker.sent("d", None, "q") == 4  # the channel's numbering goes on
