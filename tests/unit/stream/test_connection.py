"""One stream client's outgoing side without sockets: frames for matching subscriptions, held
while a subscription's sync is pending, and a full send buffer drops the client (once)."""

from __future__ import annotations

import orjson
import trio

from actors.stream.events import Subscription, change_frame
from actors.stream.server import StreamConnection


def queued(conn: StreamConnection) -> list[bytes]:
    out: list[bytes] = []
    while True:
        try:
            out.append(conn.incoming.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


def frame(item: str, data: int) -> tuple[dict[str, object], bytes]:
    f = change_frame(1, "s", "g", item, "update", data)
    return f, orjson.dumps(f)


def test_each_matching_subscription_gets_the_frame() -> None:
    conn = StreamConnection(peer="p", send_buffer=8)
    conn.subs = {
        "a": Subscription("a", "s", "g"),
        "b": Subscription("b", "s", "g", "i"),
        "c": Subscription("c", "s", "g", "other"),
        "d": Subscription("d", "s", "h"),
    }
    f, payload = frame("i", 1)
    conn.deliver(f, payload)
    assert queued(conn) == [payload, payload]  # once per matching subscription (§6.3 quirk)


def test_frames_of_a_subscription_awaiting_its_sync_are_held() -> None:
    conn = StreamConnection(peer="p", send_buffer=8)
    conn.subs = {"a": Subscription("a", "s", "g")}
    conn.pending = {"a": []}
    f, payload = frame("i", 1)
    conn.deliver(f, payload)
    assert queued(conn) == []
    assert conn.pending["a"] == [payload]


def test_a_full_send_buffer_drops_the_client_once_and_others_are_unaffected() -> None:
    drops: list[str] = []
    slow = StreamConnection(peer="slow", send_buffer=2)
    fast = StreamConnection(peer="fast", send_buffer=2)
    for conn in (slow, fast):
        conn.subs = {"a": Subscription("a", "s", "g")}
    slow.on_drop = lambda: drops.append("slow")
    fast.on_drop = lambda: drops.append("fast")
    payloads = []
    for n in range(5):
        f, payload = frame("i", n)
        payloads.append(payload)
        slow.deliver(f, payload)
        fast.deliver(f, payload)
        assert queued(fast) == [payload]
    assert drops == ["slow"] and slow.dropped
    assert queued(slow) == payloads[:2]  # what fitted; nothing after the drop
