"""The channel pool's batch creation and the releaser, against a fake bus client."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
import trio.lowlevel

from actors.http.channels import ChannelPool, ChannelReleaser, channel_url, engine_base_url
from transport.client import FunctionError

_ids = itertools.count()


def refs() -> dict[str, dict[str, str]]:
    n = next(_ids)
    ref = {"channel_id": f"c{n}", "access_key": f"k{n}"}
    return {"writer": {**ref, "direction": "write"}, "reader": {**ref, "direction": "read"}}


class FakeClient:
    def __init__(self, *, batches: bool, deletes: bool = True) -> None:
        self.batches = batches
        self.deletes = deletes
        self.calls: list[tuple[str, Any]] = []

    async def invoke(self, function_id: str, data: Any, **_: Any) -> Any:
        self.calls.append((function_id, data))
        await trio.lowlevel.checkpoint()
        if function_id == "engine::channels::create":
            count = data.get("count")
            if self.batches and count:
                return {"channels": [refs() for _ in range(count)]}
            return refs()  # an engine without batches ignores `count`
        if function_id == "engine::channels::delete":
            if not self.deletes:
                raise FunctionError("function_not_found", "no such function")
            return {"deleted": len(data["channels"])}
        raise AssertionError(function_id)


def creates(client: FakeClient) -> list[Any]:
    return [d for f, d in client.calls if f == "engine::channels::create"]


async def test_batches_when_the_engine_supports_them() -> None:
    client = FakeClient(batches=True)
    pool = ChannelPool(client, target=16)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.run)
        await trio.sleep(0.01)
        assert creates(client) == [{"buffer_size": 64, "count": 16}]
        (r1, w1), (r2, w2) = await pool.take()
        assert r1["channel_id"] == w1["channel_id"] != r2["channel_id"] == w2["channel_id"]
        assert (r1["direction"], w1["direction"]) == ("read", "write")
        nursery.cancel_scope.cancel()
    assert pool.batch_calls is True


async def test_falls_back_to_one_call_per_channel() -> None:
    client = FakeClient(batches=False)
    pool = ChannelPool(client, target=8, batch=4)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.run)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert pool.batch_calls is False
    made = creates(client)
    assert made[0] == {"buffer_size": 64, "count": 8}  # the probe still yields one channel
    assert all(d == {"buffer_size": 64} for d in made[1:])
    assert len(made) == 8


async def test_take_creates_on_the_spot_when_empty() -> None:
    client = FakeClient(batches=False)
    pool = ChannelPool(client)  # type: ignore[arg-type]
    (r1, _), (r2, _) = await pool.take()  # no run(): the pool is empty
    assert r1["channel_id"] != r2["channel_id"]


async def test_expired_channels_are_not_handed_out() -> None:
    client = FakeClient(batches=True)
    pool = ChannelPool(client, target=4, max_age=0.01)  # type: ignore[arg-type]
    pool._items.extend(await pool._create(4))
    await trio.sleep(0.02)
    before = len(creates(client))
    await pool.take()
    assert len(creates(client)) > before  # the stale ones were skipped


async def test_releaser_batches_and_turns_itself_off() -> None:
    client = FakeClient(batches=True)
    releaser = ChannelReleaser(client, every=0.01)  # type: ignore[arg-type]
    ref = refs()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(releaser.run)
        releaser.release(ref["reader"], ref["writer"])
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    [(fid, data)] = client.calls
    assert fid == "engine::channels::delete"
    assert data == {
        "channels": [
            {"channel_id": ref["reader"]["channel_id"], "access_key": ref["reader"]["access_key"]}
        ]
        * 2
    }

    missing = FakeClient(batches=True, deletes=False)
    off = ChannelReleaser(missing, every=0.01)  # type: ignore[arg-type]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(off.run)
            off.release(ref["reader"])
    assert off.enabled is False
    off.release(ref["reader"])  # a no-op now
    assert len(missing.calls) == 1


def test_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_ENGINE_URL", "ws://127.0.0.1:4000/?token=x")
    base = engine_base_url()
    assert base == "ws://127.0.0.1:4000"
    ref = {"channel_id": "abc", "access_key": "k/+="}
    assert (
        channel_url(base, ref, "read")
        == "ws://127.0.0.1:4000/ws/channels/abc?key=k%2F%2B%3D&dir=read"
    )
