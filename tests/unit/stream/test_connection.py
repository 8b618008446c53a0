"""One stream client's outgoing side without sockets: frames for matching subscriptions, held
while a subscription's sync is pending, and a full send buffer drops the client (once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import orjson
import trio

from actors.stream.events import Subscription, change_frame
from actors.stream.server import StreamConnection, StreamServer


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


class Hooks:
    """The service side the server reads from; dispatch needs none of it."""

    def __init__(self) -> None:
        self.join_bindings: dict[str, Any] = {}
        self.leave_bindings: dict[str, Any] = {}
        self.clock: Callable[[], int] = lambda: 0

    async def read_item(self, stream: str, group: str, item: str) -> Any:
        return None

    async def read_group(self, stream: str, group: str) -> Any:
        return []


def test_dispatch_reaches_only_connections_subscribed_to_the_group() -> None:
    server = StreamServer(cast(Any, None), Hooks(), auth_function=None, send_buffer=8)
    a, b = StreamConnection(peer="a", send_buffer=8), StreamConnection(peer="b", send_buffer=8)
    server._subscribe(a, Subscription("1", "s", "g"))
    server._subscribe(a, Subscription("2", "s", "g", "i"))
    server._subscribe(b, Subscription("1", "s", "h"))
    f, payload = frame("i", 1)
    server.dispatch(f)
    assert queued(a) == [payload, payload] and queued(b) == []
    server._unsubscribe(a, "1")
    server.dispatch(f)
    assert queued(a) == [payload]
    server._subscribe(a, Subscription("2", "s", "h"))  # same id: replaces the item subscription
    server.dispatch(f)
    assert queued(a) == queued(b) == []  # both now watch group h only
    server._unsubscribe(a, "2")
    server._unsubscribe(b, "1")
    assert server._by_group == {}
    server.dispatch(f)
    server.dispatch({"not": "a frame"})
    assert queued(a) == queued(b) == []
