"""The ``open_*`` factories: a backend description in, an open store out, closed on exit.

They live outside the interface modules so that no adapter imports the module that imports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import structlog

from storage.filelog import FsyncMode, open_file_kv
from storage.kv import KeyValueStore
from storage.local_pubsub import LocalPubSub
from storage.memory import MemoryKV
from storage.pubsub import PubSub

__all__ = [
    "DEFAULT_SAVE_INTERVAL_MS",
    "IN_MEMORY_WARNING",
    "FileBased",
    "InMemory",
    "KvBackend",
    "PubSubBackend",
    "RedisServer",
    "open_kv",
    "open_pubsub",
    "save_interval_seconds",
]

log = structlog.get_logger(__name__)

IN_MEMORY_WARNING: Final = (
    "DO NOT USE IN_MEMORY STORE_METHOD IN PRODUCTION - DATA WILL BE LOST ON SHUTDOWN"
)
DEFAULT_SAVE_INTERVAL_MS: Final = 5000
MIN_SAVE_INTERVAL_MS: Final = 100


@attrs.frozen
class InMemory:
    """Held by this process alone: the kv ``in_memory`` store method, the ``local`` pub/sub."""


@attrs.frozen
class FileBased:
    """A key/value store persisted to a write-ahead log in ``directory`` (``file_based``).

    ``save_interval_ms`` follows §1.8 at run time: 0 means the default, below 100 is raised.
    """

    directory: Path
    fsync: FsyncMode = "interval"
    save_interval_ms: int = DEFAULT_SAVE_INTERVAL_MS


@attrs.frozen
class RedisServer:
    """A Redis server shared by every engine that points at it (WORKERS.md §14)."""

    url: str


KvBackend = InMemory | FileBased | RedisServer
PubSubBackend = InMemory | RedisServer


def save_interval_seconds(raw: Any) -> float:
    """§1.8: 0/invalid → the default (5000 ms); values below 100 ms are raised to 100 ms."""
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        if raw is not None:
            log.warning("kv.save_interval_invalid", value=raw, using=DEFAULT_SAVE_INTERVAL_MS)
        return DEFAULT_SAVE_INTERVAL_MS / 1000
    return max(raw, MIN_SAVE_INTERVAL_MS) / 1000


@asynccontextmanager
async def open_kv(backend: KvBackend, *, name: str) -> AsyncIterator[KeyValueStore]:
    """Open the key/value store ``backend`` describes and close it (flushed) on exit.

    ``name`` labels logs, names the files of a file-based store and is the Redis key namespace
    (``state`` → hashes ``state:<scope>``).
    """
    if isinstance(backend, InMemory):
        log.warning(IN_MEMORY_WARNING, store=name)
        memory = MemoryKV()
        try:
            yield memory
        finally:
            await memory.aclose()
    elif isinstance(backend, FileBased):
        async with open_file_kv(
            backend.directory,
            name=name,
            fsync=backend.fsync,
            save_interval=save_interval_seconds(backend.save_interval_ms),
        ) as store:
            yield store
    else:
        # Imported on use: the Redis client costs ~150 ms at every start of an actor without it.
        from storage.redis_kv import RedisKV

        redis_store = await RedisKV.connect(backend.url, namespace=name)
        try:
            yield redis_store
        finally:
            await redis_store.aclose()


@asynccontextmanager
async def open_pubsub(backend: PubSubBackend) -> AsyncIterator[PubSub]:
    """Open the pub/sub ``backend`` describes (§9.1) and close it on exit."""
    if isinstance(backend, InMemory):
        local = LocalPubSub()
        try:
            yield local
        finally:
            await local.aclose()
    else:
        from storage.redis_pubsub import open_redis_pubsub  # on use, as in open_kv

        async with open_redis_pubsub(backend.url) as redis_pubsub:
            yield redis_pubsub
