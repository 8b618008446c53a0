"""From a config block's adapter (manifests.blocks) to the storage backend it names: where a
file-based store lives, which Redis server, and which adapters this engine cannot run."""

from __future__ import annotations

import os
from pathlib import Path

from actors.runtime.exits import EXIT_CONFIG, ActorExit
from manifests.blocks.adapters import BridgeAdapter, KvAdapter, LocalAdapter, RedisAdapter
from storage import FileBased, InMemory, KvBackend, PubSubBackend, RedisServer

__all__ = ["kv_backend", "pubsub_backend", "resolve_path"]


def resolve_path(raw: str, data_dir: Path) -> Path:
    """``~`` expanded; a relative path is taken relative to ``data_dir``."""
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else data_dir / path


def kv_backend(adapter: KvAdapter | RedisAdapter | BridgeAdapter, data_dir: Path) -> KvBackend:
    """The key/value backend of a kv, redis or bridge adapter block (§1.8, §5.1)."""
    if isinstance(adapter, KvAdapter):
        config = adapter.settings
        if config.store_method == "in_memory":
            return InMemory()
        return FileBased(
            resolve_path(config.file_path, data_dir),
            fsync=config.fsync,
            save_interval_ms=config.save_interval_ms,
        )
    if isinstance(adapter, RedisAdapter):
        return RedisServer(adapter.settings.redis_url)
    raise _bridge()


def pubsub_backend(adapter: LocalAdapter | RedisAdapter) -> PubSubBackend:
    """The pub/sub backend of a local or redis adapter block (§9.1)."""
    if isinstance(adapter, RedisAdapter):
        return RedisServer(adapter.settings.redis_url)
    return InMemory()


def _bridge() -> ActorExit:
    # Config files may name it (upstream does); running it needs a remote-engine client.
    return ActorExit(
        EXIT_CONFIG,
        "invalid configuration",
        error="adapter 'bridge' is not supported by iii-supervisor yet",
    )
