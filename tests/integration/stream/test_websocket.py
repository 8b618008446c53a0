"""The stream WebSocket on its configured port (WORKERS.md §6.3) with raw clients (the
``websockets`` sync client): join → ``sync``, then every change an SDK worker makes, in order;
item subscriptions, ``stream::send`` events, leave; ``stream:join`` refusing with
``unauthorized``; the auth function's context; only ``/`` is served; and a client that never
reads is dropped while another keeps receiving everything."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from iii import InvocationError
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.integration.stream.conftest import (
    StreamEngine,
    call,
    events_until,
    join,
    receive_json,
)
from tests.support import wait_for


def name() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def event(frame: dict[str, Any]) -> tuple[str | None, Any]:
    return frame["id"], frame["event"]


def test_join_gets_sync_then_each_change_in_order(
    stream_engine: Callable[..., StreamEngine],
) -> None:
    engine = stream_engine()
    c, s = engine.client, name()
    item = {"stream_name": s, "group_id": "room", "item_id": "m1"}
    call(c, "stream::set", {**item, "item_id": "m0", "data": {"text": "before"}})
    with engine.ws() as group_ws, engine.ws() as item_ws:
        join(group_ws, "g", s, "room")
        sync = receive_json(group_ws)
        assert isinstance(sync.pop("timestamp"), int)
        assert sync == {
            "type": "stream",
            "streamName": s,
            "groupId": "room",
            "id": None,
            "event": {"type": "sync", "data": [{"text": "before"}]},
        }
        join(item_ws, "i", s, "room", "m1")
        assert event(receive_json(item_ws)) == ("m1", {"type": "sync", "data": None})

        call(c, "stream::set", {**item, "data": {"text": "hi"}})
        call(c, "stream::set", {**item, "data": {"text": "hi!"}})
        call(c, "stream::update", {**item, "ops": [{"type": "set", "path": "read", "value": 1}]})
        call(c, "stream::delete", item)
        call(c, "stream::delete", item)  # nothing deleted: nothing pushed
        call(c, "stream::set", {**item, "item_id": "m2", "data": 2})  # the group only
        call(c, "stream::send", {"stream_name": s, "group_id": "room", "type": "typing", "data": 1})
        call(c, "stream::set", {**item, "group_id": "hall", "data": 3})  # another group

        changes = [
            ("m1", {"type": "create", "data": {"text": "hi"}}),
            ("m1", {"type": "update", "data": {"text": "hi!"}}),
            ("m1", {"type": "update", "data": {"text": "hi!", "read": 1}}),
            ("m1", {"type": "delete", "data": {"text": "hi!", "read": 1}}),
        ]
        tail = [
            ("m2", {"type": "create", "data": 2}),
            (None, {"type": "event", "event": {"type": "typing", "data": 1}}),
        ]
        assert [event(f) for f in events_until(group_ws, 6)] == changes + tail
        assert [event(f) for f in events_until(item_ws, 4)] == changes

        leave = {"subscriptionId": "g", "streamName": s, "groupId": "room"}
        group_ws.send(json.dumps({"type": "leave", "data": leave}))
        group_ws.send("not json")  # ignored with a warning; the connection stays
        join(group_ws, "g2", s, "hall")
        assert event(receive_json(group_ws)) == (None, {"type": "sync", "data": [3]})
        call(c, "stream::set", {**item, "data": 4})
        assert event(receive_json(item_ws)) == ("m1", {"type": "create", "data": 4})
        call(c, "stream::set", {**item, "group_id": "hall", "data": 5})
        # After the leave, room's changes no longer reach it: the next frame is hall's.
        assert event(receive_json(group_ws)) == ("m1", {"type": "update", "data": 5})


def test_join_triggers_see_the_auth_context_and_can_refuse(
    stream_engine: Callable[..., StreamEngine],
) -> None:
    engine = stream_engine(auth_function="test::auth")
    c, s = engine.client, name()
    auths: list[Any] = []
    joins: list[Any] = []
    leaves: list[Any] = []

    def auth(data: Any) -> Any:
        auths.append(data)
        return {"context": {"user": data["query_params"].get("user", ["?"])[0]}}

    def on_join(data: Any) -> Any:
        joins.append(data)
        return {"unauthorized": data["group_id"] == "secret"}

    c.register_function("test::auth", auth)
    c.register_function("test::on_join", on_join)
    c.register_function("test::on_leave", lambda data: leaves.append(data))
    c.register_trigger({"type": "stream:join", "function_id": "test::on_join", "config": {}})
    c.register_trigger({"type": "stream:leave", "function_id": "test::on_leave", "config": {}})

    def joined_with_trigger() -> bool:
        with connect(engine.ws_url + "?user=probe", open_timeout=10) as probe:
            join(probe, "p", s, "probe")
            receive_json(probe)
        return bool(joins)

    wait_for(joined_with_trigger, 10.0, interval=0.2)
    wait_for(lambda: leaves)  # the probe's close left its subscription
    joins.clear()
    leaves.clear()
    with connect(engine.ws_url + "?user=ann&x=1&x=2", open_timeout=10) as ws:
        join(ws, "a", s, "secret")
        refused = receive_json(ws)
        assert (refused["groupId"], refused["event"]) == ("secret", {"type": "unauthorized"})
        join(ws, "b", s, "open", "item")
        assert event(receive_json(ws)) == ("item", {"type": "sync", "data": None})
        call(c, "stream::set", {"stream_name": s, "group_id": "secret", "item_id": "x", "data": 1})
        call(c, "stream::set", {"stream_name": s, "group_id": "open", "item_id": "item", "data": 2})
        assert event(receive_json(ws)) == ("item", {"type": "create", "data": 2})
    assert auths[-1]["query_params"] == {"user": ["ann"], "x": ["1", "2"]}
    assert auths[-1]["path"] == "/"
    assert auths[-1]["addr"].startswith("127.0.0.1:")
    # Every header of the upgrade, the ones wsproto consumes too (the client offers
    # permessage-deflate: sec-websocket-extensions).
    assert {"host", "sec-websocket-key", "sec-websocket-extensions"} <= set(auths[-1]["headers"])
    strip = [{k: v for k, v in j.items() if k != "_caller_worker_id"} for j in joins]
    assert strip == [
        {
            "subscription_id": "a",
            "stream_name": s,
            "group_id": "secret",
            "id": None,
            "context": {"user": "ann"},
        },
        {
            "subscription_id": "b",
            "stream_name": s,
            "group_id": "open",
            "id": "item",
            "context": {"user": "ann"},
        },
    ]
    wait_for(lambda: leaves)  # closing the socket leaves what it still held
    assert [(leave["subscription_id"], leave["context"]) for leave in leaves] == [
        ("b", {"user": "ann"})
    ]


def test_only_the_root_path_is_served(stream_engine: Callable[..., StreamEngine]) -> None:
    engine = stream_engine()
    with pytest.raises(InvalidStatus) as refused:
        connect(engine.ws_url + "stream/chat/room/", open_timeout=10)
    assert refused.value.response.status_code == 404


def test_a_client_that_never_reads_is_dropped_and_others_keep_receiving(
    stream_engine: Callable[..., StreamEngine],
) -> None:
    engine = stream_engine(adapter={"name": "kv", "config": {"channel_size": 4}})
    c, s = engine.client, name()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little for it
    raw.connect(("127.0.0.1", engine.stream_port))
    slow = connect(engine.ws_url, sock=raw, max_queue=1, open_timeout=10)
    fast = engine.ws(max_size=None)
    try:
        join(slow, "s", s, "g")
        join(fast, "f", s, "g")
        assert event(receive_json(fast)) == (None, {"type": "sync", "data": []})
        blob = "x" * 128 * 1024
        count = 80
        started = time.monotonic()
        got = []
        for n in range(count):
            call(
                c,
                "stream::set",
                {"stream_name": s, "group_id": "g", "item_id": str(n), "data": [n, blob]},
            )
            frame = receive_json(fast)  # the fast client keeps up
            got.append((frame["id"], frame["event"]["data"][0]))
        assert got == [(str(n), n) for n in range(count)]
        assert time.monotonic() - started < 30
        # The slow client gets what fitted, then the connection ends.
        with pytest.raises(ConnectionClosed):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                slow.recv(timeout=5)
            raise AssertionError("the slow client was never dropped")
        wait_for(lambda: "stream client too slow; dropped" in engine.engine.log_text())
        # The fast client is still served.
        call(c, "stream::set", {"stream_name": s, "group_id": "g", "item_id": "after", "data": [0]})
        assert event(receive_json(fast)) == ("after", {"type": "create", "data": [0]})
    finally:
        slow.close()
        fast.close()


def test_clients_are_told_when_the_server_stops(stream_engine: Callable[..., StreamEngine]) -> None:
    engine = stream_engine()
    ws = engine.ws()
    join(ws, "g", name(), "room")
    receive_json(ws)
    engine.engine.stop()
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


def test_the_auth_function_changes_live_through_the_configuration_worker(
    stream_engine: Callable[..., StreamEngine],
) -> None:
    engine = stream_engine()
    c, s = engine.client, name()
    contexts: list[Any] = []
    c.register_function("test::auth", lambda data: {"context": "from-auth"})
    c.register_function("test::on_join", lambda data: contexts.append(data["context"]))
    c.register_trigger({"type": "stream:join", "function_id": "test::on_join", "config": {}})

    def stored() -> Any:
        try:
            return call(c, "configuration::get", {"id": "iii-stream"})["value"]
        except InvocationError:
            return None

    value = wait_for(stored, 20.0, interval=0.2)
    live = {"id": "iii-stream", "value": {**value, "auth_function": "test::auth"}}

    def set_live() -> bool:  # refused until the actor has registered the entry's schema
        try:
            call(c, "configuration::set", live)
        except InvocationError as exc:
            assert exc.code == "SCHEMA_UNAVAILABLE", exc
            return False
        return True

    wait_for(set_live, 20.0, interval=0.2)

    def joined_with_context() -> bool:
        with engine.ws() as ws:
            join(ws, "g", s, "room")
            receive_json(ws)
        return "from-auth" in contexts

    wait_for(joined_with_context, 10.0, interval=0.2)
