"""``open_kv``: each backend description opens its adapter, with the upstream in-memory warning,
the §1.8 save-interval rule and the Redis error that names the URL.

How an adapter *block* becomes a backend (paths, defaults) is tested with the actors' runtime
(tests/unit/actors/test_stores.py); what a block may contain, with the blocks (tests/unit/config).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from storage import FileBased, InMemory, RedisServer, StorageUnavailableError, open_kv
from storage.factory import IN_MEMORY_WARNING
from storage.filelog import FileKV
from storage.memory import MemoryKV


def no_files(directory: Path) -> bool:
    return not any(directory.iterdir())


async def test_in_memory_with_the_upstream_warning(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with open_kv(InMemory(), name="state") as store:
            assert isinstance(store, MemoryKV)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == [IN_MEMORY_WARNING]
    assert IN_MEMORY_WARNING == (
        "DO NOT USE IN_MEMORY STORE_METHOD IN PRODUCTION - DATA WILL BE LOST ON SHUTDOWN"
    )
    assert no_files(tmp_path)


async def test_file_based_lives_in_its_directory(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "state_store.db"
    async with open_kv(FileBased(directory), name="state") as store:
        assert isinstance(store, FileKV)
        assert store.directory == directory
        await store.set("s", "k", 1)
    assert directory.is_dir()
    assert (directory / "state.snapshot").exists()


async def test_save_interval_and_fsync_are_applied(tmp_path: Path) -> None:
    backend = FileBased(tmp_path, fsync="always", save_interval_ms=50)
    async with open_kv(backend, name="s") as store:
        assert isinstance(store, FileKV)
        assert store.save_interval == 0.1  # raised to the 100 ms floor
        assert store.fsync_mode == "always"
    async with open_kv(FileBased(tmp_path, save_interval_ms=0), name="s") as store:
        assert isinstance(store, FileKV)
        assert store.save_interval == 5.0
        assert store.fsync_mode == "interval"


async def test_redis_unreachable_names_the_url() -> None:
    url = "redis://127.0.0.1:1"
    with pytest.raises(StorageUnavailableError) as info:
        async with open_kv(RedisServer(url), name="s"):
            pass
    assert "Redis connection timed out after 5s. Please ensure Redis is running at: " + url in str(
        info.value
    )
