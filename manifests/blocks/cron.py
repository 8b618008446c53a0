"""The ``iii-cron`` config block (WORKERS.md §8.1): the lock adapter, which can change while the
actor runs (every job moves to the new one).

``kv``: process-local locks (one supervisor) in the §1.8 built-in store, with ``lock_ttl_ms``
and ``lock_index``; the store also keeps each job's last fired tick. ``redis``: locks shared by
every engine on that Redis (TTL fixed at 30 s, keys ``cron_lock:*``), last ticks in the hash
``cron:cron_last_fired``.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from manifests.blocks.adapters import KvStoreConfig, RedisAdapter
from manifests.blocks.strict import NonEmptyStr, NonNegativeInt, PositiveInt

__all__ = [
    "DEFAULTS",
    "DEFAULT_LOCK_INDEX",
    "DEFAULT_LOCK_TTL_MS",
    "REDIS_LOCK_TTL_MS",
    "CronAdapter",
    "CronBlock",
    "CronKvAdapter",
    "CronKvConfig",
]

DEFAULT_LOCK_TTL_MS: Final = 30_000
REDIS_LOCK_TTL_MS: Final = 30_000  # fixed upstream
DEFAULT_LOCK_INDEX: Final = "cron_locks"


@attrs.frozen
class CronKvConfig:
    """The kv lock adapter: its lock settings and the built-in store's (§1.8)."""

    lock_ttl_ms: PositiveInt = DEFAULT_LOCK_TTL_MS
    lock_index: NonEmptyStr = DEFAULT_LOCK_INDEX
    store_method: Literal["in_memory", "file_based"] = "in_memory"
    file_path: str = "kv_store_data.db"  # a directory; relative: the actor's data dir
    save_interval_ms: NonNegativeInt = 5000
    fsync: Literal["always", "interval", "never"] = "interval"  # ours: durability of file_based

    def store(self) -> KvStoreConfig:
        return KvStoreConfig(
            store_method=self.store_method,
            file_path=self.file_path,
            save_interval_ms=self.save_interval_ms,
            fsync=self.fsync,
        )


@attrs.frozen
class CronKvAdapter:
    name: Literal["kv"] = "kv"
    config: CronKvConfig | None = None

    @property
    def settings(self) -> CronKvConfig:
        return self.config or CronKvConfig()


CronAdapter = CronKvAdapter | RedisAdapter


@attrs.frozen
class CronBlock:
    adapter: CronAdapter | None = None

    def lock_adapter(self) -> CronAdapter:
        """The adapter to open, defaults filled in (no adapter: in-memory ``kv``)."""
        adapter = self.adapter or CronKvAdapter()
        if isinstance(adapter, RedisAdapter):
            return attrs.evolve(adapter, config=adapter.settings)
        return attrs.evolve(adapter, config=adapter.settings)


DEFAULTS: Final[dict[str, Any]] = {"adapter": {"name": "kv"}}
