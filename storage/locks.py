"""Locks with a time to live: taken with a fresh token, released only by the token's holder,
and gone by themselves once the TTL runs out (a holder that died blocks nobody for long).

* :class:`KvLockStore` keeps a record ``{owner, expires_at_ms}`` per key in one index of a
  :class:`~storage.kv.KeyValueStore` (WORKERS.md §8.4, the cron ``kv`` adapter). Taking it is
  check-then-write under a task lock, so it is exclusive within one process only: one
  supervisor. A missing, expired or unreadable record counts as free.
* :class:`RedisLockStore` is ``SET <prefix><key> <token> NX PX <ttl>``; release deletes the
  key only if it still holds the token (compare-and-delete script). Every engine pointed at the
  same Redis sees the same locks (§14). A Redis error counts as "not acquired", as upstream.

The token is random per acquisition (upstream uses one uuid per engine instance), so even a
later acquisition by the same process cannot be released by an earlier holder.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol, runtime_checkable

import structlog
import trio

from storage.errors import StorageError, StorageUnavailableError
from storage.kv import KeyValueStore

__all__ = [
    "KvLockStore",
    "LockStore",
    "RedisLockStore",
    "open_redis_locks",
    "wall_clock_ms",
]

log = structlog.get_logger(__name__)

MAX_THREADS: Final = 8

# KEYS[1] = the lock key, ARGV[1] = the holder's token: delete only our own lock.
_COMPARE_AND_DELETE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@runtime_checkable
class LockStore(Protocol):
    """Named locks with a TTL. Safe to call from several trio tasks at once."""

    async def acquire(self, key: str, ttl_ms: int) -> str | None:
        """Take ``key`` for ``ttl_ms``; its token, or ``None`` if someone holds it (or the
        backend failed: a lock that cannot be checked is not taken)."""
        ...

    async def release(self, key: str, token: str) -> bool:
        """Free ``key`` if ``token`` still holds it; whether it did."""
        ...

    async def aclose(self) -> None:
        """Release resources (not the locks: their TTLs run out). Idempotent."""
        ...


def _new_token() -> str:
    return uuid.uuid4().hex


class KvLockStore:
    """Locks as records in ``index`` of a key/value store: exclusive within this process.

    Records this store wrote are deleted once expired (checked on each acquisition), and
    :meth:`sweep` deletes the expired records a previous process left in a persistent store,
    so keys used once (such as one per cron tick) do not pile up.
    """

    def __init__(
        self,
        store: KeyValueStore,
        *,
        index: str,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._store = store
        self._index = index
        self._clock_ms = clock_ms
        self._mutex = trio.Lock()
        self._expiring: list[tuple[int, str]] = []  # (expires_at_ms, key), a heap

    @property
    def index(self) -> str:
        return self._index

    def _free(self, record: Any, now_ms: int) -> bool:
        if not isinstance(record, dict):
            return True  # none, or unreadable: free (§8.4)
        expires = record.get("expires_at_ms")
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            return True
        return expires <= now_ms

    async def acquire(self, key: str, ttl_ms: int) -> str | None:
        if ttl_ms < 1:
            raise ValueError(f"a lock's TTL must be at least 1 ms, got {ttl_ms}")
        async with self._mutex:
            now = self._clock_ms()
            try:
                await self._purge(now)
                if not self._free(await self._store.get(self._index, key), now):
                    return None
                token = _new_token()
                expires = now + ttl_ms
                await self._store.set(self._index, key, {"owner": token, "expires_at_ms": expires})
            except StorageError as exc:
                log.warning("lock store failed; lock not acquired", key=key, error=str(exc))
                return None
            heapq.heappush(self._expiring, (expires, key))
            return token

    async def release(self, key: str, token: str) -> bool:
        async with self._mutex:
            try:
                record = await self._store.get(self._index, key)
                if not isinstance(record, dict) or record.get("owner") != token:
                    return False
                await self._store.delete(self._index, key)
            except StorageError as exc:
                log.warning("lock store failed; lock not released", key=key, error=str(exc))
                return False
            return True

    async def _purge(self, now_ms: int) -> None:
        """Delete the expired records this store wrote (a record re-taken since is kept)."""
        while self._expiring and self._expiring[0][0] <= now_ms:
            _, key = heapq.heappop(self._expiring)
            if self._free(await self._store.get(self._index, key), now_ms):
                await self._store.delete(self._index, key)

    async def sweep(self) -> int:
        """Delete every expired or unreadable record of the index; how many went."""
        async with self._mutex:
            now = self._clock_ms()
            gone = 0
            for key in await self._store.list_keys(self._index):
                if self._free(await self._store.get(self._index, key), now):
                    await self._store.delete(self._index, key)
                    gone += 1
            return gone

    async def aclose(self) -> None:
        """The store belongs to whoever opened it; nothing of ours to close."""


class RedisLockStore:
    """``SET NX PX`` locks on a Redis server, keys ``<prefix><key>``."""

    def __init__(self, client: Any, *, prefix: str, url: str = "") -> None:
        self._client = client
        self._prefix = prefix
        self._url = url
        self._limiter = trio.CapacityLimiter(MAX_THREADS)
        self._release_script = client.register_script(_COMPARE_AND_DELETE)
        self._closed = False

    def redis_key(self, key: str) -> str:
        return f"{self._prefix}{key}"

    async def acquire(self, key: str, ttl_ms: int) -> str | None:
        if ttl_ms < 1:
            raise ValueError(f"a lock's TTL must be at least 1 ms, got {ttl_ms}")
        token = _new_token()
        name = self.redis_key(key)
        try:
            taken = await self._call(lambda: self._client.set(name, token, nx=True, px=ttl_ms))
        except Exception as exc:  # any client or connection error: not acquired (§8.4)
            log.warning("redis lock failed; not acquired", key=name, error=str(exc))
            return None
        return token if taken else None

    async def release(self, key: str, token: str) -> bool:
        name = self.redis_key(key)
        try:
            deleted = await self._call(lambda: self._release_script(keys=[name], args=[token]))
        except Exception as exc:
            log.warning("redis lock release failed", key=name, error=str(exc))
            return False
        return bool(deleted)

    async def _call(self, fn: Callable[[], Any]) -> Any:
        if self._closed:
            raise StorageError("the lock store is closed")
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=self._limiter)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await trio.to_thread.run_sync(self._client.close, abandon_on_cancel=True)


@asynccontextmanager
async def open_redis_locks(url: str, *, prefix: str) -> AsyncIterator[RedisLockStore]:
    """Connect to ``url`` and check it answers (``StorageUnavailableError`` if it does not)."""
    # Imported on use, as storage.factory does: the client costs ~150 ms to import.
    import redis.exceptions

    from storage.redis_kv import connect_redis, unavailable_message

    client = connect_redis(url, client_name="iii-locks")
    try:
        await trio.to_thread.run_sync(client.ping, abandon_on_cancel=True)
    except redis.exceptions.RedisError as exc:
        client.close()
        raise StorageUnavailableError(f"{unavailable_message(url)} ({exc})") from exc
    locks = RedisLockStore(client, prefix=prefix, url=url)
    try:
        yield locks
    finally:
        await locks.aclose()
