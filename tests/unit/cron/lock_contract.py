"""What every ``storage.locks.LockStore`` must do, run against the kv one here and the Redis one
in tests/integration/cron: exclusive while held, free again after its TTL, released only by
the token that holds it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from storage.locks import LockStore

Advance = Callable[[int], Awaitable[None]]  # let this many milliseconds pass


async def check_lock_contract(locks: LockStore, advance: Advance, *, ttl_ms: int) -> None:
    token = await locks.acquire("job", ttl_ms)
    assert token is not None
    assert await locks.acquire("job", ttl_ms) is None  # held
    assert await locks.acquire("other-job", ttl_ms) is not None  # keys are independent

    # Only the holder's token releases it.
    assert not await locks.release("job", "not-the-token")
    assert await locks.acquire("job", ttl_ms) is None
    assert await locks.release("job", token)
    assert not await locks.release("job", token)  # once

    # Free again: a new holder gets a new token; the old one cannot release it.
    second = await locks.acquire("job", ttl_ms)
    assert second is not None and second != token
    assert not await locks.release("job", token)

    # The TTL runs out by itself; the lapsed holder cannot release the next holder's lock.
    await advance(ttl_ms + ttl_ms // 2)
    third = await locks.acquire("job", ttl_ms)
    assert third is not None
    assert not await locks.release("job", second)
    assert await locks.acquire("job", ttl_ms) is None
    assert await locks.release("job", third)
