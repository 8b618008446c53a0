"""The kv lock store (storage.locks.KvLockStore): the shared lock contract on a fake clock, the
record format of WORKERS.md §8.4, unreadable records, and expired records cleaned away."""

from __future__ import annotations

import pytest
import trio

from storage.locks import KvLockStore, LockStore
from storage.memory import MemoryKV
from tests.unit.cron.lock_contract import check_lock_contract


class FakeClock:
    def __init__(self) -> None:
        self.ms = 1_767_225_600_000

    def __call__(self) -> int:
        return self.ms

    async def advance(self, ms: int) -> None:
        self.ms += ms
        await trio.lowlevel.checkpoint()


async def test_the_kv_lock_keeps_the_contract() -> None:
    clock = FakeClock()
    locks = KvLockStore(MemoryKV(), index="cron_locks", clock_ms=clock)
    assert isinstance(locks, LockStore)
    await check_lock_contract(locks, clock.advance, ttl_ms=30_000)


async def test_the_record_is_owner_and_expiry_under_the_lock_index() -> None:
    clock, store = FakeClock(), MemoryKV()
    locks = KvLockStore(store, index="my_locks", clock_ms=clock)
    token = await locks.acquire("job-1", 30_000)
    assert await store.get("my_locks", "job-1") == {
        "owner": token,
        "expires_at_ms": clock.ms + 30_000,
    }
    assert await locks.release("job-1", token or "")
    assert await store.get("my_locks", "job-1") is None


@pytest.mark.parametrize("record", ["garbage", 42, [], {"owner": "x"}, {"expires_at_ms": "soon"}])
async def test_an_unreadable_record_counts_as_free(record: object) -> None:
    clock, store = FakeClock(), MemoryKV()
    await store.set("cron_locks", "job", record)
    locks = KvLockStore(store, index="cron_locks", clock_ms=clock)
    assert await locks.acquire("job", 1000) is not None


async def test_expired_records_are_deleted_not_kept() -> None:
    clock, store = FakeClock(), MemoryKV()
    locks = KvLockStore(store, index="cron_locks", clock_ms=clock)
    for tick in range(100):  # one key per tick, never released, as cron tick claims are
        assert await locks.acquire(f"job@{tick}", 5_000) is not None
        await clock.advance(1000)
    assert len(await store.list_keys("cron_locks")) <= 6


async def test_sweep_deletes_what_a_previous_process_left() -> None:
    clock, store = FakeClock(), MemoryKV()
    old = KvLockStore(store, index="cron_locks", clock_ms=clock)
    await old.acquire("expired", 1_000)
    await old.acquire("live", 60_000)
    await store.set("cron_locks", "unreadable", "?")
    await clock.advance(2_000)
    fresh = KvLockStore(store, index="cron_locks", clock_ms=clock)
    assert await fresh.sweep() == 2
    assert await store.list_keys("cron_locks") == ["live"]
    assert await fresh.acquire("live", 1_000) is None


async def test_a_ttl_below_one_millisecond_is_a_bug() -> None:
    locks = KvLockStore(MemoryKV(), index="cron_locks")
    with pytest.raises(ValueError, match="at least 1 ms"):
        await locks.acquire("job", 0)


async def test_concurrent_acquirers_get_one_lock() -> None:
    locks = KvLockStore(MemoryKV(), index="cron_locks")
    tokens: list[str | None] = []

    async def take() -> None:
        tokens.append(await locks.acquire("job", 30_000))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(take)
    assert sum(t is not None for t in tokens) == 1
