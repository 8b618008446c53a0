"""The ``KeyValueStore`` contract, run against every adapter through ``open_kv``.

memory is the reference; file runs with each fsync mode; redis needs the server at 6379.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from storage import (
    FileBased,
    InMemory,
    InvalidOpsError,
    KeyValueStore,
    RedisServer,
    SetResult,
    StorageClosedError,
    StorageError,
    open_kv,
)
from storage.filelog import FsyncMode

FSYNC: dict[str, FsyncMode] = {
    "file-always": "always",
    "file-interval": "interval",
    "file-never": "never",
}


@attrs.frozen
class Backend:
    name: str
    open: Callable[[], AbstractAsyncContextManager[KeyValueStore]]
    persistent: bool
    ordered: bool


@pytest.fixture(
    params=[
        "memory",
        "file-always",
        "file-interval",
        "file-never",
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind: str = request.param
    if kind == "memory":
        return Backend(kind, lambda: open_kv(InMemory(), name="contract"), False, True)
    if kind.startswith("file-"):
        file_based = FileBased(tmp_path / "store", fsync=FSYNC[kind], save_interval_ms=100)
        return Backend(kind, lambda: open_kv(file_based, name="contract"), True, True)
    url = request.getfixturevalue("redis_url")
    namespace = request.getfixturevalue("redis_namespace")
    return Backend(kind, lambda: open_kv(RedisServer(url), name=namespace), True, False)


@pytest.fixture
async def kv(backend: Backend) -> AsyncIterator[KeyValueStore]:
    async with backend.open() as store:
        yield store


def maybe_sorted(backend: Backend, values: list[Any]) -> list[Any]:
    """Redis lists in hash order; compare those as sorted JSON text."""
    if backend.ordered:
        return values
    import orjson

    return sorted(values, key=orjson.dumps)


async def test_is_a_key_value_store(kv: KeyValueStore) -> None:
    assert isinstance(kv, KeyValueStore)


async def test_set_get_and_results(kv: KeyValueStore) -> None:
    assert await kv.get("users", "u1") is None
    assert await kv.set("users", "u1", {"n": 1}) == SetResult(None, {"n": 1}, True)
    assert await kv.get("users", "u1") == {"n": 1}
    result = await kv.set("users", "u1", {"n": 2})
    assert result == SetResult({"n": 1}, {"n": 2}, False)
    assert result.old_value == {"n": 1} and result.new_value == {"n": 2} and not result.created
    assert await kv.set("users", "u1", {"n": 2}) == SetResult({"n": 2}, {"n": 2}, False)


async def test_stored_null_is_a_value(kv: KeyValueStore) -> None:
    assert await kv.set("s", "k", None) == SetResult(None, None, True)
    assert await kv.set("s", "k", None) == SetResult(None, None, False)
    assert await kv.list("s") == [None]
    assert await kv.list_groups() == ["s"]


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        1.5,
        True,
        False,
        "",
        'héllo ☃ \u0000 "quoted"',
        [],
        {},
        [1, "a", None, {"b": [True]}],
        {"z": 1, "a": 2, "m": {"nested": [1, 2, {"deep": None}]}},
    ],
)
async def test_json_values_round_trip(kv: KeyValueStore, value: Any) -> None:
    await kv.set("types", "v", value)
    got = await kv.get("types", "v")
    assert got == value
    assert type(got) is type(value)
    if isinstance(value, dict):
        assert list(got) == list(value)  # key order kept


async def test_returned_values_are_private_copies(kv: KeyValueStore) -> None:
    value = {"list": [1]}
    result = await kv.set("s", "k", value)
    value["list"].append(2)
    result.new_value["list"].append(3)
    got = await kv.get("s", "k")
    assert got == {"list": [1]}
    got["list"].append(4)
    (await kv.list("s"))[0]["list"].append(5)
    assert await kv.get("s", "k") == {"list": [1]}


async def test_non_json_value_is_rejected_and_not_stored(kv: KeyValueStore) -> None:
    with pytest.raises(StorageError):
        await kv.set("s", "k", {"bad": object()})
    with pytest.raises(StorageError):
        await kv.set("s", "k", {1: "non-string key"})
    assert await kv.get("s", "k") is None
    assert await kv.list_groups() == []


async def test_delete(kv: KeyValueStore) -> None:
    assert await kv.delete("s", "missing") is None
    await kv.set("s", "a", [1])
    await kv.set("s", "b", 2)
    assert await kv.delete("s", "a") == [1]
    assert await kv.get("s", "a") is None
    assert await kv.delete("s", "a") is None
    assert await kv.list_groups() == ["s"]
    assert await kv.delete("s", "b") == 2
    assert await kv.list_groups() == []  # an emptied scope is gone at once
    assert await kv.list("s") == []


async def test_scopes_are_isolated(kv: KeyValueStore) -> None:
    await kv.set("a", "k", 1)
    await kv.set("b", "k", 2)
    await kv.delete("a", "k")
    assert await kv.get("b", "k") == 2
    assert await kv.list_groups() == ["b"]


async def test_list_and_list_keys(kv: KeyValueStore, backend: Backend) -> None:
    assert await kv.list("nothing") == []
    assert await kv.list_keys("nothing") == []
    for key, value in [("c", 3), ("a", 1), ("b", 2)]:
        await kv.set("s", key, value)
    await kv.set("s", "a", 10)  # overwrite keeps the position
    await kv.delete("s", "b")
    await kv.set("s", "b", 20)  # re-insert goes last
    assert maybe_sorted(backend, await kv.list("s")) == maybe_sorted(backend, [3, 10, 20])
    keys = await kv.list_keys("s")
    assert keys == ["c", "a", "b"] if backend.ordered else sorted(keys) == ["a", "b", "c"]


async def test_list_groups_sorted_unique_with_awkward_names(kv: KeyValueStore) -> None:
    scopes = ["zeta", "Alpha", "a:b:c", "with space", "100%", "ünïcode", "slash/x", "", "a*"]
    for scope in scopes:
        await kv.set(scope, "k1", 1)
        await kv.set(scope, "k2", 2)
    assert await kv.list_groups() == sorted(scopes)
    for scope in scopes:
        assert await kv.get(scope, "k2") == 2


async def test_awkward_keys(kv: KeyValueStore) -> None:
    keys = ["", "a.b", "a:b", "ключ", "x" * 1000, "\u0000nul", "*"]
    for index, key in enumerate(keys):
        await kv.set("s", key, index)
    for index, key in enumerate(keys):
        assert await kv.get("s", key) == index
    assert sorted(await kv.list_keys("s")) == sorted(keys)


async def test_update_spec_example(kv: KeyValueStore) -> None:
    result = await kv.update(
        "orders",
        "o-1",
        [
            {"type": "increment", "path": "count", "by": 1},
            {"type": "append", "path": ["audit", "events"], "value": {"at": 1}},
            {"type": "merge", "value": {"__proto__": 1}},
        ],
    )
    assert result.old_value is None
    assert result.created
    assert result.new_value == {"count": 1, "audit": {"events": [{"at": 1}]}}
    assert [(e["op_index"], e["code"]) for e in result.errors] == [
        (2, "merge.value.proto_polluted")
    ]
    wire = result.to_json()
    assert set(wire) == {"old_value", "new_value", "errors"}
    assert await kv.get("orders", "o-1") == result.new_value
    assert await kv.list_groups() == ["orders"]


async def test_update_existing_and_result_shape(kv: KeyValueStore) -> None:
    await kv.set("s", "k", {"n": 1})
    result = await kv.update("s", "k", [{"type": "increment", "path": "n", "by": 41}])
    assert (result.old_value, result.new_value, result.errors, result.created) == (
        {"n": 1},
        {"n": 42},
        [],
        False,
    )
    assert result.to_json() == {"old_value": {"n": 1}, "new_value": {"n": 42}}


async def test_update_with_no_ops_stores_empty_object(kv: KeyValueStore) -> None:
    result = await kv.update("s", "k", [])
    assert (result.old_value, result.new_value, result.created) == (None, {}, True)
    assert await kv.get("s", "k") == {}


async def test_update_failed_ops_still_persist_the_rest(kv: KeyValueStore) -> None:
    await kv.set("s", "k", {"n": "text"})
    result = await kv.update(
        "s",
        "k",
        [
            {"type": "increment", "path": "n", "by": 1},
            {"type": "set", "path": "ok", "value": True},
        ],
    )
    assert [e["code"] for e in result.errors] == ["increment.not_number"]
    assert await kv.get("s", "k") == {"n": "text", "ok": True}


async def test_update_stored_null_counts_as_existing(kv: KeyValueStore) -> None:
    await kv.set("s", "k", None)
    result = await kv.update("s", "k", [{"type": "append", "value": "x"}])
    assert (result.old_value, result.new_value, result.created) == (None, "x", False)


async def test_update_bad_shape_changes_nothing(kv: KeyValueStore) -> None:
    with pytest.raises(InvalidOpsError):
        await kv.update("s", "k", [{"type": "increment", "path": "n", "by": 1.5}])
    with pytest.raises(InvalidOpsError):
        await kv.update("s", "k", {"type": "set"})
    assert await kv.get("s", "k") is None
    assert await kv.list_groups() == []


async def test_concurrent_updates_are_atomic(kv: KeyValueStore) -> None:
    async def bump(key: str, times: int) -> None:
        for _ in range(times):
            await kv.update("counters", key, [{"type": "increment", "path": "n", "by": 1}])

    async with trio.open_nursery() as nursery:
        for worker in range(8):
            nursery.start_soon(bump, "shared", 10)
            nursery.start_soon(bump, f"own-{worker}", 3)
    assert await kv.get("counters", "shared") == {"n": 80}
    for worker in range(8):
        assert await kv.get("counters", f"own-{worker}") == {"n": 3}


async def test_concurrent_writers_keep_scope_set_consistent(kv: KeyValueStore) -> None:
    async def churn(scope: str) -> None:
        for i in range(10):
            await kv.set(scope, "k", i)
            await kv.delete(scope, "k")
        await kv.set(scope, "final", True)

    async with trio.open_nursery() as nursery:
        for scope in ("x", "y", "z"):
            nursery.start_soon(churn, scope)
    assert await kv.list_groups() == ["x", "y", "z"]
    assert await kv.list("x") == [True]


async def test_closed_store_refuses_calls(backend: Backend) -> None:
    async with backend.open() as store:
        await store.aclose()
        await store.aclose()  # idempotent
        with pytest.raises(StorageClosedError):
            await store.get("s", "k")
        with pytest.raises(StorageClosedError):
            await store.set("s", "k", 1)


async def test_reopen_keeps_data(backend: Backend) -> None:
    async with backend.open() as store:
        await store.set("a", "k1", {"v": 1})
        await store.set("a", "k2", [2])
        await store.set("b", "k", "three")
        await store.delete("a", "k2")
        await store.update("b", "n", [{"type": "increment", "path": "", "by": 5}])
    async with backend.open() as store:
        if not backend.persistent:
            assert await store.list_groups() == []
            return
        assert await store.list_groups() == ["a", "b"]
        assert await store.get("a", "k1") == {"v": 1}
        assert await store.get("a", "k2") is None
        assert await store.get("b", "k") == "three"
        assert await store.get("b", "n") == 5
