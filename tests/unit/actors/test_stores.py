"""From an adapter block to the storage backend an actor opens (``actors.runtime.stores``), and
what the adapter blocks refuse as the actors read them (WORKERS.md §1.8, §5.1, §9.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.pubsub import parse_config as parse_pubsub
from actors.runtime import ActorExit, kv_backend, pubsub_backend, resolve_path
from actors.state import parse_config as parse_state
from manifests.blocks import BlockError
from storage import FileBased, InMemory, RedisServer


def file_config(**config: Any) -> dict[str, Any]:
    return {"name": "kv", "config": {"store_method": "file_based", **config}}


def state_backend(adapter: Any, data_dir: Path) -> object:
    return kv_backend(parse_state({"adapter": adapter}).store_adapter(), data_dir)


def test_resolve_path(tmp_path: Path) -> None:
    assert resolve_path("data/x.db", tmp_path) == tmp_path / "data/x.db"
    assert resolve_path("/abs/x", tmp_path) == Path("/abs/x")
    assert resolve_path("~/x", tmp_path) == Path.home() / "x"


@pytest.mark.parametrize("adapter", [None, {"name": "kv"}, {"name": "kv", "config": None}])
def test_default_is_in_memory(tmp_path: Path, adapter: Any) -> None:
    assert state_backend(adapter, tmp_path) == InMemory()


def test_file_path_relative_to_data_dir_default_and_absolute(tmp_path: Path) -> None:
    relative = state_backend(file_config(file_path="./data/state_store.db"), tmp_path)
    assert relative == FileBased(tmp_path / "data" / "state_store.db")
    assert state_backend(file_config(), tmp_path) == FileBased(tmp_path / "kv_store_data.db")
    absolute = tmp_path / "elsewhere"
    assert state_backend(file_config(file_path=str(absolute)), Path("/nonexistent")) == (
        FileBased(absolute)
    )


def test_save_interval_and_fsync_reach_the_backend(tmp_path: Path) -> None:
    backend = state_backend(file_config(save_interval_ms=50, fsync="always"), tmp_path)
    assert backend == FileBased(tmp_path / "kv_store_data.db", "always", 50)
    # iii-state's top-level save_interval_ms overrides the adapter's own (§5.1).
    block = parse_state({"adapter": file_config(save_interval_ms=900), "save_interval_ms": 250})
    assert kv_backend(block.store_adapter(), tmp_path) == FileBased(
        tmp_path / "kv_store_data.db", save_interval_ms=250
    )


def test_redis_url_and_its_default(tmp_path: Path) -> None:
    url = "redis://r:6379"
    assert state_backend({"name": "redis", "config": {"redis_url": url}}, tmp_path) == (
        RedisServer(url)
    )
    assert state_backend({"name": "redis"}, tmp_path) == RedisServer("redis://localhost:6379")


def test_bridge_is_named_but_not_run(tmp_path: Path) -> None:
    with pytest.raises(ActorExit) as info:
        state_backend({"name": "bridge", "config": {"bridge_url": "ws://x"}}, tmp_path)
    assert info.value.code == 78
    assert info.value.fields["error"] == "adapter 'bridge' is not supported by iii-supervisor yet"


@pytest.mark.parametrize(
    "adapter, fragment",
    [
        ({"name": "kv", "config": {"store_method": "in_memory", "bogus": 1}}, "bogus"),
        (file_config(fsync="sometimes"), "fsync"),
        (file_config(file_path=3), "file_path"),
        (file_config(channel_size=256), "channel_size"),  # only a block that declares it
        ({"name": "redis", "config": {"url": "redis://x"}}, "url"),
        ({"name": "postgres"}, "unknown adapter"),
        ({"name": "kv", "extra": True}, "extra"),
        ({"name": "kv", "config": []}, "expected an object"),
        (["kv"], "expected an object"),
    ],
)
def test_bad_kv_adapters(adapter: Any, fragment: str) -> None:
    with pytest.raises(BlockError, match=fragment):
        parse_state({"adapter": adapter})


@pytest.mark.parametrize(
    "adapter",
    [None, {"name": "local"}, {"name": "local", "config": None}, {"name": "local", "config": {}}],
)
def test_pubsub_local_accepts_an_empty_config(adapter: Any) -> None:
    assert pubsub_backend(parse_pubsub({"adapter": adapter}).backend_adapter()) == InMemory()


def test_pubsub_redis() -> None:
    block = parse_pubsub({"adapter": {"name": "redis", "config": {"redis_url": "redis://r"}}})
    assert pubsub_backend(block.backend_adapter()) == RedisServer("redis://r")


@pytest.mark.parametrize(
    "adapter, fragment",
    [
        ({"name": "local", "config": {"x": 1}}, "takes no config"),
        ({"name": "redis", "config": {"url": "x"}}, "unknown field"),
        ({"name": "kafka"}, "unknown adapter"),
        ({"name": "local", "extra": 1}, "unknown field"),
        ("local", "expected an object"),
    ],
)
def test_bad_pubsub_adapters(adapter: Any, fragment: str) -> None:
    with pytest.raises(BlockError, match=fragment):
        parse_pubsub({"adapter": adapter})
