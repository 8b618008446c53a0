"""The Redis lock store on a real Redis: the shared lock contract (a real PX expiry), the key and
value upstream writes (WORKERS.md §8.4), a lock held across two connections, and a Redis that
cannot be reached counting as "not acquired"."""

from __future__ import annotations

import uuid

import pytest
import redis
import trio

from storage.errors import StorageUnavailableError
from storage.locks import LockStore, RedisLockStore, open_redis_locks
from tests.support import require_service
from tests.unit.cron.lock_contract import check_lock_contract

pytestmark = pytest.mark.redis

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def _redis() -> None:
    require_service("Redis", 6379)


def prefix() -> str:
    return f"test_cron_lock:{uuid.uuid4().hex[:8]}:"


async def test_the_redis_lock_keeps_the_contract() -> None:
    async def advance(ms: int) -> None:
        await trio.sleep(ms / 1000)

    async with open_redis_locks(URL, prefix=prefix()) as locks:
        assert isinstance(locks, LockStore)
        await check_lock_contract(locks, advance, ttl_ms=200)


async def test_set_nx_px_with_the_token_as_value() -> None:
    p = prefix()
    async with open_redis_locks(URL, prefix=p) as locks:
        token = await locks.acquire("job-1", 30_000)
        direct = redis.Redis.from_url(URL)
        try:
            assert direct.get(f"{p}job-1") == (token or "").encode()
            assert 29_000 < direct.pttl(f"{p}job-1") <= 30_000
            assert await locks.release("job-1", token or "")
            assert direct.exists(f"{p}job-1") == 0
        finally:
            direct.close()


async def test_two_connections_see_one_lock() -> None:
    p = prefix()
    async with open_redis_locks(URL, prefix=p) as a, open_redis_locks(URL, prefix=p) as b:
        token = await a.acquire("job", 30_000)
        assert token is not None
        assert await b.acquire("job", 30_000) is None
        assert not await b.release("job", "guess")
        assert await b.release("job", token)  # the token, not the connection, holds it
        assert await b.acquire("job", 30_000) is not None


async def test_an_unreachable_redis_fails_to_open() -> None:
    with pytest.raises(StorageUnavailableError, match="Please ensure Redis is running"):
        async with open_redis_locks("redis://127.0.0.1:1/0", prefix=prefix()):
            pass


async def test_a_redis_error_counts_as_not_acquired() -> None:
    # A client pointed at a closed port: every call fails; nothing raises.
    client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    locks = RedisLockStore(client, prefix=prefix())
    assert await locks.acquire("job", 1000) is None
    assert not await locks.release("job", "token")
    await locks.aclose()
    await locks.aclose()
