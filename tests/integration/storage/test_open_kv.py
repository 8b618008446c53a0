"""``open_kv``: the upstream adapter config shapes (§1.8, §5.1), defaults and their errors.

Also checks the in-memory production warning and where file stores put their files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from storage import StorageConfigError, StorageUnavailableError, open_kv
from storage.filelog import FileKV
from storage.kv import IN_MEMORY_WARNING
from storage.memory import MemoryKV


def no_files(directory: Path) -> bool:
    return not any(directory.iterdir())


def file_config(**config: Any) -> dict[str, Any]:
    return {"name": "kv", "config": {"store_method": "file_based", **config}}


@pytest.mark.parametrize(
    "adapter",
    [None, {"name": "kv"}, {"name": "kv", "config": None}, {"name": "builtin", "config": {}}],
)
async def test_default_is_in_memory_with_the_upstream_warning(tmp_path: Path, adapter: Any) -> None:
    with capture_logs() as logs:
        async with open_kv(adapter, data_dir=tmp_path, name="state") as store:
            assert isinstance(store, MemoryKV)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == [IN_MEMORY_WARNING]
    assert IN_MEMORY_WARNING == (
        "DO NOT USE IN_MEMORY STORE_METHOD IN PRODUCTION - DATA WILL BE LOST ON SHUTDOWN"
    )
    assert no_files(tmp_path)


async def test_unknown_store_method_warns_and_uses_memory(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with open_kv(
            {"name": "kv", "config": {"store_method": "rocksdb"}}, data_dir=tmp_path, name="s"
        ) as store:
            assert isinstance(store, MemoryKV)
    assert "kv.unknown_store_method" in [e["event"] for e in logs]


async def test_file_path_relative_to_data_dir(tmp_path: Path) -> None:
    async with open_kv(
        file_config(file_path="./data/state_store.db"), data_dir=tmp_path, name="state"
    ) as store:
        assert isinstance(store, FileKV)
        await store.set("s", "k", 1)
    directory = tmp_path / "data" / "state_store.db"
    assert directory.is_dir()
    assert (directory / "state.snapshot").exists()


async def test_file_path_default_and_absolute(tmp_path: Path) -> None:
    async with open_kv(file_config(), data_dir=tmp_path, name="state") as store:
        assert isinstance(store, FileKV)
        assert store.directory == tmp_path / "kv_store_data.db"
    absolute = tmp_path / "elsewhere"
    async with open_kv(
        file_config(file_path=str(absolute)), data_dir=Path("/nonexistent"), name="x"
    ) as store:
        assert isinstance(store, FileKV)
        assert store.directory == absolute


async def test_save_interval_and_fsync_are_applied(tmp_path: Path) -> None:
    async with open_kv(
        file_config(save_interval_ms=50, fsync="always"), data_dir=tmp_path, name="s"
    ) as store:
        assert isinstance(store, FileKV)
        assert store.save_interval == 0.1  # raised to the 100 ms floor
        assert store.fsync_mode == "always"
    async with open_kv(file_config(save_interval_ms=0), data_dir=tmp_path, name="s") as store:
        assert isinstance(store, FileKV)
        assert store.save_interval == 5.0
        assert store.fsync_mode == "interval"


async def test_extra_keys_are_accepted_only_when_declared(tmp_path: Path) -> None:
    adapter = file_config(channel_size=256)
    with pytest.raises(StorageConfigError, match="channel_size"):
        async with open_kv(adapter, data_dir=tmp_path, name="stream"):
            pass
    async with open_kv(adapter, data_dir=tmp_path, name="stream", extra_keys={"channel_size"}):
        pass


@pytest.mark.parametrize(
    "adapter, fragment",
    [
        ({"name": "kv", "config": {"store_method": "in_memory", "bogus": 1}}, "bogus"),
        (file_config(fsync="sometimes"), "fsync"),
        (file_config(file_path=3), "file_path"),
        ({"name": "redis", "config": {"url": "redis://x"}}, "url"),
        ({"name": "bridge", "config": {"bridge_url": "ws://x"}}, "bridge"),
        ({"name": "postgres"}, "unknown adapter"),
        ({"name": "kv", "extra": True}, "extra"),
        ({"name": "kv", "config": []}, "expected an object"),
        (["kv"], "expected an object"),
    ],
)
async def test_bad_configs(tmp_path: Path, adapter: Any, fragment: str) -> None:
    with pytest.raises(StorageConfigError, match=fragment):
        async with open_kv(adapter, data_dir=tmp_path, name="s"):
            pass


async def test_redis_unreachable_names_the_url(tmp_path: Path) -> None:
    url = "redis://127.0.0.1:1"
    with pytest.raises(StorageUnavailableError) as info:
        async with open_kv(
            {"name": "redis", "config": {"redis_url": url}}, data_dir=tmp_path, name="s"
        ):
            pass
    assert "Redis connection timed out after 5s. Please ensure Redis is running at: " + url in str(
        info.value
    )
