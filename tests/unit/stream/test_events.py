"""The stream wire shapes without I/O (WORKERS.md §6.3, §6.4): frames, which subscriptions and
triggers a frame reaches, client messages, the auth function's input, and the block."""

from __future__ import annotations

from typing import Any

import pytest

from actors.stream.config import parse_config
from actors.stream.events import (
    BadTriggerConfig,
    ClientMessageError,
    Join,
    Leave,
    Subscription,
    auth_payload,
    change_frame,
    check_stream_trigger_config,
    custom_frame,
    parse_client_message,
    query_params,
    reaches,
    split_scope,
    trigger_matches,
)
from manifests.blocks import BlockError
from manifests.blocks.adapters import KvAdapter, KvStoreConfig, RedisAdapter


def test_change_and_custom_frames_have_the_wire_shape() -> None:
    assert change_frame(7, "chat", "room", "m1", "create", {"t": 1}) == {
        "type": "stream",
        "timestamp": 7,
        "streamName": "chat",
        "groupId": "room",
        "id": "m1",
        "event": {"type": "create", "data": {"t": 1}},
    }
    assert custom_frame(8, "chat", "room", None, "typing", {"who": "a"})["event"] == {
        "type": "event",
        "event": {"type": "typing", "data": {"who": "a"}},
    }


def test_a_frame_reaches_group_and_matching_item_subscriptions() -> None:
    frame = change_frame(1, "chat", "room", "m1", "update", 1)
    anonymous = custom_frame(1, "chat", "room", None, "typing", None)
    group = Subscription("s1", "chat", "room")
    item = Subscription("s2", "chat", "room", "m1")
    other_item = Subscription("s3", "chat", "room", "m2")
    assert reaches(group, frame) and reaches(item, frame) and not reaches(other_item, frame)
    assert reaches(group, anonymous) and not reaches(item, anonymous)
    assert not reaches(Subscription("s4", "chat", "hall"), frame)
    assert not reaches(Subscription("s5", "news", "room"), frame)


def test_stream_trigger_config_needs_a_stream_name_and_filters_exactly() -> None:
    bad_configs: tuple[Any, ...] = (
        None,
        [],
        {},
        {"stream_name": None},
        {"stream_name": 1},
        {"stream_name": "s", "item_id": 2},
    )
    for bad in bad_configs:
        with pytest.raises(BadTriggerConfig):
            check_stream_trigger_config(bad)
    check_stream_trigger_config({"stream_name": "s", "group_id": "g", "condition_function_id": "c"})
    frame = change_frame(1, "s", "g", "i", "create", 1)
    anonymous = custom_frame(1, "s", "g", None, "x", 1)
    assert trigger_matches({"stream_name": "s"}, frame)
    assert trigger_matches({"stream_name": "s", "group_id": "g", "item_id": "i"}, frame)
    assert not trigger_matches({"stream_name": "s", "group_id": "h"}, frame)
    assert not trigger_matches({"stream_name": "t"}, frame)
    assert not trigger_matches({"stream_name": "s", "item_id": "i"}, anonymous)
    assert trigger_matches({"stream_name": "s"}, anonymous)


def test_client_messages() -> None:
    join = parse_client_message(
        b'{"type":"join","data":{"subscriptionId":"a","streamName":"s","groupId":"g","id":"i"}}'
    )
    assert join == Join(Subscription("a", "s", "g", "i"))
    assert parse_client_message(
        '{"type":"join","data":{"subscriptionId":"a","streamName":"s","groupId":"g"}}'
    ) == Join(Subscription("a", "s", "g"))
    assert parse_client_message(
        '{"type":"leave","data":{"subscriptionId":"a","streamName":"s","groupId":"g"}}'
    ) == Leave("a", "s", "g")
    assert parse_client_message("  ") is None
    bad: list[Any] = [
        "{",
        "[]",
        '{"type":"dance","data":{}}',
        '{"type":"join"}',
        '{"type":"join","data":{"subscriptionId":"a","streamName":"s"}}',
        '{"type":"join","data":{"subscriptionId":"a","streamName":"s","groupId":"g","id":3}}',
    ]
    for raw in bad:
        with pytest.raises(ClientMessageError):
            parse_client_message(raw)


def test_auth_input_keeps_every_query_value_undecoded() -> None:
    assert query_params("token=abc&a=1&a=2&c=&=x&&d%20e=f%20g") == {
        "token": ["abc"],
        "a": ["1", "2"],
        "c": [""],
        "d%20e": ["f%20g"],
    }
    payload = auth_payload(
        "/?token=t", [(b"X-Token", b"abc"), (b"X-Odd", "é".encode())], "127.0.0.1:5000"
    )
    assert payload == {
        "headers": {"x-token": "abc"},
        "path": "/",
        "query_params": {"token": ["t"]},
        "addr": "127.0.0.1:5000",
    }


def test_scopes_split_at_the_last_colon() -> None:
    assert split_scope("chat:room") == ("chat", "room")
    assert split_scope("iii:devtools:trace-rows:g") == ("iii:devtools:trace-rows", "g")
    assert split_scope("plain") is None


def test_the_block_names_the_store_to_open_and_the_send_buffer() -> None:
    block = parse_config(None)
    assert (block.port, block.host, block.channel_size) == (3112, "0.0.0.0", 256)
    assert block.store_adapter() == KvAdapter(config=KvStoreConfig())
    kv = parse_config(
        {"adapter": {"name": "kv", "config": {"store_method": "file_based", "channel_size": 8}}}
    )
    assert kv.channel_size == 8
    opened = kv.store_adapter()
    assert isinstance(opened, KvAdapter) and opened.settings.store_method == "file_based"
    assert isinstance(parse_config({"adapter": {"name": "redis"}}).store_adapter(), RedisAdapter)
    with pytest.raises(BlockError, match="channel_size"):
        parse_config({"adapter": {"name": "kv", "config": {"channel_size": 0}}})
    with pytest.raises(BlockError, match="unknown adapter"):
        parse_config({"adapter": {"name": "s3"}})
