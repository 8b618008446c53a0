"""iii-stream's functions through the official SDK, on each adapter: the exact result shapes of
WORKERS.md §6.2 (``delete`` → ``{old_value}``, ``list_groups`` a bare array), atomic
``stream::update`` (§1.9) under concurrent writers, ``stream`` triggers (§6.4), custom stream
implementations (``create_stream``), and file-based items surviving a restart."""

from __future__ import annotations

import builtins
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from iii import InvocationError
from iii.helpers import create_stream
from iii.stream import IStream
from iii_helpers.stream import (
    StreamDeleteInput,
    StreamDeleteResult,
    StreamGetInput,
    StreamListGroupsInput,
    StreamListInput,
    StreamSetInput,
    StreamSetResult,
    StreamUpdateInput,
    StreamUpdateResult,
)

from tests.integration.stream.conftest import ADAPTERS, StreamEngine, call, function_ids
from tests.support import require_service, wait_for


@pytest.fixture(params=list(ADAPTERS))
def engine(
    request: pytest.FixtureRequest, stream_engine: Callable[..., StreamEngine]
) -> StreamEngine:
    if request.param == "redis":
        require_service("redis", 6379)
    return stream_engine(adapter=ADAPTERS[request.param])


def name() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"  # Redis is shared between tests and runs: never reuse


def test_functions_have_upstreams_result_shapes(engine: StreamEngine) -> None:
    c, s = engine.client, name()
    item = {"stream_name": s, "group_id": "g1", "item_id": "a"}
    assert call(c, "stream::set", {**item, "data": {"n": 1}}) == {
        "old_value": None,
        "new_value": {"n": 1},
    }
    assert call(c, "stream::set", {**item, "data": {"n": 2}}) == {
        "old_value": {"n": 1},
        "new_value": {"n": 2},
    }
    assert call(c, "stream::get", item) == {"n": 2}
    assert call(c, "stream::get", {**item, "item_id": "missing"}) is None

    updated = call(
        c,
        "stream::update",
        {
            **item,
            "ops": [
                {"type": "increment", "path": "n", "by": 5},
                {"type": "append", "path": ["audit", "events"], "value": {"at": 1}},
                {"type": "merge", "value": {"__proto__": 1}},
            ],
        },
    )
    assert updated["old_value"] == {"n": 2}
    assert updated["new_value"] == {"n": 7, "audit": {"events": [{"at": 1}]}}
    assert [(e["op_index"], e["code"]) for e in updated["errors"]] == [
        (2, "merge.value.proto_polluted")
    ]
    other = {"stream_name": s, "group_id": "g2", "item_id": "b"}
    assert call(
        c, "stream::update", {**other, "ops": [{"type": "set", "path": "x", "value": 1}]}
    ) == {
        "old_value": None,
        "new_value": {"x": 1},
    }  # no `errors` key when there are none

    assert call(c, "stream::list", {"stream_name": s, "group_id": "g1"}) == [
        {"n": 7, "audit": {"events": [{"at": 1}]}}
    ]
    assert call(c, "stream::list", {"stream_name": s, "group_id": "nope"}) == []
    assert sorted(call(c, "stream::list_groups", {"stream_name": s})) == ["g1", "g2"]
    everything = call(c, "stream::list_all", {})
    assert set(everything) == {"stream", "count"}
    assert everything["count"] == len(everything["stream"])
    ids = [entry["id"] for entry in everything["stream"]]
    assert ids == sorted(ids)
    assert {"id": s, "groups": ["g1", "g2"]} in everything["stream"]

    assert call(c, "stream::delete", other) == {"old_value": {"x": 1}}
    assert call(c, "stream::delete", other) == {"old_value": None}
    assert call(c, "stream::list_groups", {"stream_name": s}) == ["g1"]
    assert (
        call(c, "stream::send", {"stream_name": s, "group_id": "g1", "type": "t", "data": 1})
        is None
    )


def test_bad_input_fails_before_anything_is_stored(engine: StreamEngine) -> None:
    c, s = engine.client, name()
    with pytest.raises(InvocationError) as missing:
        call(c, "stream::set", {"stream_name": s, "group_id": "g", "data": 1})
    assert missing.value.code == "deserialization_error"
    assert "Failed to deserialize input for stream::set: missing field `item_id`" in str(
        missing.value
    )
    with pytest.raises(InvocationError) as bad_ops:
        call(
            c,
            "stream::update",
            {"stream_name": s, "group_id": "g", "item_id": "i", "ops": [{"type": "explode"}]},
        )
    assert bad_ops.value.code == "deserialization_error"
    assert call(c, "stream::list_groups", {"stream_name": s}) == []


def test_concurrent_updates_are_atomic(engine: StreamEngine) -> None:
    c, s = engine.client, name()
    item = {"stream_name": s, "group_id": "g", "item_id": "counter"}
    workers, each = 8, 10

    def bump() -> None:
        for _ in range(each):
            call(
                c, "stream::update", {**item, "ops": [{"type": "increment", "path": "n", "by": 1}]}
            )

    threads = [threading.Thread(target=bump) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert call(c, "stream::get", item) == {"n": workers * each}


def test_stream_trigger_gets_each_change_as_its_client_frame(engine: StreamEngine) -> None:
    c, s = engine.client, name()
    got: list[Any] = []
    c.register_function("test::on_stream", lambda data: got.append(data))
    c.register_trigger(
        {
            "type": "stream",
            "function_id": "test::on_stream",
            "config": {"stream_name": s, "group_id": "g"},
        }
    )
    item = {"stream_name": s, "group_id": "g", "item_id": "i"}

    def probe() -> bool:  # the binding reaches the actor asynchronously
        call(c, "stream::send", {"stream_name": s, "group_id": "g", "type": "probe", "data": None})
        return bool(got)

    wait_for(probe, 10.0, interval=0.1)
    got_probes = lambda f: f["event"].get("event", {}).get("type") == "probe"  # noqa: E731
    call(c, "stream::set", {**item, "data": 1})
    call(c, "stream::update", {**item, "ops": [{"type": "increment", "path": "", "by": 2}]})
    call(c, "stream::delete", item)
    call(c, "stream::delete", item)  # nothing deleted: nothing emitted
    call(c, "stream::set", {**item, "group_id": "other", "data": 1})  # filtered out
    call(c, "stream::send", {**item, "type": "typing", "data": {"who": "x"}, "id": "i"})
    wait_for(lambda: len([f for f in got if not got_probes(f)]) >= 4)
    frames = [
        {k: v for k, v in f.items() if k != "_caller_worker_id"} for f in got if not got_probes(f)
    ]
    for f in frames:
        assert isinstance(f.pop("timestamp"), int)
        assert (f.pop("type"), f.pop("streamName"), f.pop("groupId"), f.pop("id")) == (
            "stream",
            s,
            "g",
            "i",
        )
    # Each event fans out from its own task (§1.10): the order across events is not promised.
    assert sorted((f["event"] for f in frames), key=repr) == sorted(
        [
            {"type": "create", "data": 1},
            {"type": "update", "data": 3},
            {"type": "delete", "data": 3},
            {"type": "event", "event": {"type": "typing", "data": {"who": "x"}}},
        ],
        key=repr,
    )


class Board(IStream[Any]):
    """A custom stream implementation held by the SDK worker."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Any] = {}

    async def get(self, input: StreamGetInput) -> Any:
        return self.items.get((input.group_id, input.item_id))

    async def set(self, input: StreamSetInput) -> StreamSetResult[Any]:
        old = self.items.get((input.group_id, input.item_id))
        self.items[(input.group_id, input.item_id)] = input.data
        return StreamSetResult(old_value=old, new_value=input.data)

    async def delete(self, input: StreamDeleteInput) -> StreamDeleteResult:
        return StreamDeleteResult(old_value=self.items.pop((input.group_id, input.item_id), None))

    async def list(self, input: StreamListInput) -> builtins.list[Any]:
        return [v for (g, _), v in self.items.items() if g == input.group_id]

    async def list_groups(self, input: StreamListGroupsInput) -> builtins.list[str]:
        return sorted({g for g, _ in self.items})

    async def update(self, input: StreamUpdateInput) -> StreamUpdateResult[Any] | None:
        return None


def test_custom_stream_implementation_takes_precedence(
    stream_engine: Callable[..., StreamEngine],
) -> None:
    engine = stream_engine()
    c, s = engine.client, name()
    board = Board()
    create_stream(c, s, board)
    wait_for(lambda: f"stream::list_groups({s})" in function_ids(c))
    item = {"stream_name": s, "group_id": "g", "item_id": "i"}
    assert call(c, "stream::set", {**item, "data": {"v": 1}}) == {
        "old_value": None,
        "new_value": {"v": 1},
    }
    assert board.items == {("g", "i"): {"v": 1}}
    assert call(c, "stream::get", item) == {"v": 1}
    assert call(c, "stream::list", {"stream_name": s, "group_id": "g"}) == [{"v": 1}]
    assert call(c, "stream::list_groups", {"stream_name": s}) == ["g"]
    assert call(c, "stream::delete", item) == {"old_value": {"v": 1}}
    assert board.items == {}
    # The built-in store never saw the custom stream.
    assert all(e["id"] != s for e in call(c, "stream::list_all", {})["stream"])


class Broken(Board):
    """A custom implementation whose every operation fails."""

    async def get(self, input: StreamGetInput) -> Any | None:
        raise RuntimeError("board offline")

    async def set(self, input: StreamSetInput) -> StreamSetResult[Any]:
        raise RuntimeError("board offline")

    async def delete(self, input: StreamDeleteInput) -> StreamDeleteResult:
        raise RuntimeError("board offline")


def test_a_failing_custom_implementation_fails_writes_under_their_stream_error_code(
    stream_engine: Callable[..., StreamEngine],
) -> None:
    engine = stream_engine()
    c, s = engine.client, name()
    create_stream(c, s, Broken())
    wait_for(lambda: f"stream::list_groups({s})" in function_ids(c))
    item = {"stream_name": s, "group_id": "g", "item_id": "i"}
    for function_id, extra, code in (  # the SDK registers no custom update
        ("stream::set", {"data": 1}, "STREAM_SET_ERROR"),
        ("stream::delete", {}, "STREAM_DELETE_ERROR"),
    ):
        with pytest.raises(InvocationError) as failed:
            call(c, function_id, {**item, **extra})
        assert (failed.value.code, failed.value.message) == (code, "board offline")
    with pytest.raises(InvocationError) as read:  # a read passes the failure on as it came
        call(c, "stream::get", item)
    assert read.value.code != "STREAM_GET_ERROR" and "board offline" in read.value.message


def test_file_based_items_survive_a_restart(stream_engine: Callable[..., StreamEngine]) -> None:
    engine = stream_engine(adapter=ADAPTERS["file_based"])
    c, s = engine.client, name()
    call(
        c,
        "stream::set",
        {"stream_name": s, "group_id": "g", "item_id": "i", "data": {"kept": True}},
    )
    engine.client.shutdown()
    engine.engine.stop()
    engine.engine.start()
    again = StreamEngine(engine.engine, engine.stream_port)
    engine.client = again.client
    assert call(
        again.client, "stream::get", {"stream_name": s, "group_id": "g", "item_id": "i"}
    ) == {"kept": True}
