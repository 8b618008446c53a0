"""The storage adapter blocks the built-ins share (WORKERS.md §1.8, §5.1, §9.1, §2.1).

An adapter is ``{name, config}``; its class is chosen by ``name`` (a tagged union), so an unknown
name is refused with the list of those the block accepts.
"""

from __future__ import annotations

from typing import Literal

import attrs

from manifests.blocks.strict import NonEmptyStr, NonNegativeInt

__all__ = [
    "BridgeAdapter",
    "BridgeConfig",
    "FsAdapter",
    "FsConfig",
    "KvAdapter",
    "KvStoreConfig",
    "LocalAdapter",
    "NoConfig",
    "RedisAdapter",
    "RedisConfig",
]

DEFAULT_REDIS_URL = "redis://localhost:6379"


@attrs.frozen
class KvStoreConfig:
    """The built-in key/value store (§1.8)."""

    store_method: Literal["in_memory", "file_based"] = "in_memory"
    file_path: str = "kv_store_data.db"  # a directory, despite the suffix; relative: data dir
    save_interval_ms: NonNegativeInt = 5000  # 0: the default; < 100: raised
    fsync: Literal["always", "interval", "never"] = "interval"  # ours: durability of file_based


@attrs.frozen
class RedisConfig:
    redis_url: str = DEFAULT_REDIS_URL


@attrs.frozen
class BridgeConfig:
    bridge_url: str = "ws://localhost:49134"


@attrs.frozen
class NoConfig:
    """An adapter that takes no settings (pub/sub ``local``)."""


@attrs.frozen
class FsConfig:
    directory: NonEmptyStr = "./config"  # relative: the actor's data directory


@attrs.frozen
class KvAdapter:
    name: Literal["kv"] = "kv"
    config: KvStoreConfig | None = None

    @property
    def settings(self) -> KvStoreConfig:
        return self.config or KvStoreConfig()


@attrs.frozen
class RedisAdapter:
    name: Literal["redis"] = "redis"
    config: RedisConfig | None = None

    @property
    def settings(self) -> RedisConfig:
        return self.config or RedisConfig()


@attrs.frozen
class BridgeAdapter:
    """Forwards to a remote engine; accepted in config files, not run by iii-supervisor yet."""

    name: Literal["bridge"] = "bridge"
    config: BridgeConfig | None = None


@attrs.frozen
class LocalAdapter:
    name: Literal["local"] = "local"
    config: NoConfig | None = None


@attrs.frozen
class FsAdapter:
    name: Literal["fs"] = "fs"
    config: FsConfig | None = None

    @property
    def settings(self) -> FsConfig:
        return self.config or FsConfig()
