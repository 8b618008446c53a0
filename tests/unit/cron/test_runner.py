"""The scheduler's trio edge on virtual time (MockClock): exact tick counts over a day, the
restart rule with the last tick recorded in the store, once per tick with two runners sharing a
store and locks, skipped ticks under a slow handler, and stopping a job mid-run."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from actors.cron.expression import parse_expression
from actors.cron.runner import FIRED_SCOPE, CronJob, CronRunner, Invoke
from actors.cron.schedule import Fire
from storage.errors import StorageError
from storage.kv import KeyValueStore, SetResult
from storage.locks import KvLockStore, LockStore
from storage.memory import MemoryKV
from transport.client import TriggerBinding

BASE = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())
TTL_MS = 30_000


def wall(skew: float = 0.0) -> Callable[[], float]:
    """The wall clock on trio's virtual time: BASE at the start of the test."""
    return lambda: BASE + trio.current_time() + skew


def job(expr: str, job_id: str = "job-1", key: str = "fn:1") -> CronJob:
    binding = TriggerBinding(job_id, "cron", "fn", {"expression": expr})
    return CronJob(job_id, key, parse_expression(expr), binding)


class Recorder:
    """An ``invoke`` that notes (runner, tick, actual time) and can take a while."""

    def __init__(self, duration: float = 0.0) -> None:
        self.fires: list[tuple[str, int, float]] = []
        self.duration = duration

    def invoke(self, name: str) -> Invoke:
        async def run(cron_job: CronJob, fire: Fire, actual: float) -> None:
            self.fires.append((name, fire.tick - BASE, actual - BASE))
            if self.duration:
                await trio.sleep(self.duration)

        return run

    def ticks(self) -> list[int]:
        return [tick for _, tick, _ in self.fires]


def runner(
    store: KeyValueStore,
    recorder: Recorder,
    *,
    name: str = "a",
    locks: LockStore | None = None,
    skew: float = 0.0,
) -> CronRunner:
    clock = wall(skew)
    return CronRunner(
        store=store,
        locks=locks or KvLockStore(store, index="cron_locks", clock_ms=lambda: int(clock() * 1000)),
        lock_ttl_ms=TTL_MS,
        invoke=recorder.invoke(name),
        clock=clock,
    )


async def run_for(r: CronRunner, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await r.run()


async def test_a_day_of_every_minute_ticks_in_milliseconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, recorder = MemoryKV(), Recorder()
    r = runner(store, recorder)
    await r.add(job("0 * * * * *"))
    started = time.perf_counter()
    await run_for(r, 86400 + 0.5)
    elapsed = time.perf_counter() - started
    assert recorder.ticks() == [60 * i for i in range(1, 1441)]
    # Each fired on its tick, to the microsecond of virtual time.
    assert all(abs(actual - tick) < 1e-6 for _, tick, actual in recorder.fires)
    # Wall time is reported, not asserted: timed assertions do not belong in the unit suite.
    print(f"[cron] a virtual day of minute ticks took {elapsed * 1000:.0f} ms of wall time")
    # The records of used tick claims do not pile up in the lock index.
    assert len(await store.list_keys("cron_locks")) <= 2


async def test_an_hour_of_every_second_ticks(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder()
    r = runner(MemoryKV(), recorder)
    await r.add(job("* * * * * *"))
    await run_for(r, 3600.5)
    assert recorder.ticks() == list(range(1, 3601))


async def test_the_last_tick_is_recorded_per_job_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, recorder = MemoryKV(), Recorder()
    r = runner(store, recorder)
    await r.add(job("*/5 * * * * *", key="fn:abc"))
    await run_for(r, 12)
    assert await store.get(FIRED_SCOPE, "fn:abc") == {"tick": BASE + 10, "job_id": "job-1"}


async def test_restart_neither_repeats_nor_skips_a_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, recorder = MemoryKV(), Recorder()
    first = runner(store, recorder, name="first")
    await first.add(job("* * * * * *"))
    await run_for(first, 10.3)  # fired 1..10, then the actor stops
    await trio.sleep(0.5)  # down for half a second
    second = runner(store, recorder, name="second")
    await second.add(job("* * * * * *"))
    await run_for(second, 5)
    assert recorder.ticks() == list(range(1, 16))
    assert {name for name, tick, _ in recorder.fires if tick > 10} == {"second"}


async def test_restart_fires_one_catch_up_tick_then_resumes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, recorder = MemoryKV(), Recorder()
    first = runner(store, recorder, name="first")
    await first.add(job("* * * * * *"))
    await run_for(first, 10.3)
    await trio.sleep(2.4)  # down over ticks 11 and 12; back at 12.7
    second = runner(store, recorder, name="second")
    await second.add(job("* * * * * *"))
    await run_for(second, 2.5)
    # 11 is dropped; 12 fires at once on start, late; then 13, 14, 15 on time.
    assert recorder.ticks() == [*range(1, 11), 12, 13, 14, 15]
    name, tick, actual = recorder.fires[10]
    assert (name, tick) == ("second", 12) and abs(actual - 12.7) < 1e-6


async def test_restart_after_more_than_the_window_fires_nothing_missed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, recorder = MemoryKV(), Recorder()
    first = runner(store, recorder, name="first")
    await first.add(job("0 * * * * *"))
    await run_for(first, 61)  # fired 60
    await trio.sleep(100)  # down over 120 (41 s ago at restart)
    second = runner(store, recorder, name="second")
    await second.add(job("0 * * * * *"))
    await run_for(second, 60)
    assert recorder.ticks() == [60, 180]


@pytest.mark.parametrize("skew", [0.0, 0.003, -0.2])
async def test_two_runners_sharing_store_and_locks_fire_each_tick_once(
    autojump_clock: trio.testing.MockClock, skew: float
) -> None:
    # Two engines on one Redis, as far as the runner can tell: one store, one lock store, the
    # same job key under different trigger ids, clocks ``skew`` apart.
    store, recorder = MemoryKV(), Recorder()
    locks = KvLockStore(store, index="cron_locks", clock_ms=lambda: int(wall()() * 1000))
    a = runner(store, recorder, name="a", locks=locks)
    b = runner(store, recorder, name="b", locks=locks, skew=skew)
    await a.add(job("* * * * * *", job_id="trigger-on-a", key="fn:same"))
    await b.add(job("* * * * * *", job_id="trigger-on-b", key="fn:same"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_for, a, 60.5)
        nursery.start_soon(run_for, b, 60.5)
    first = 0 if skew < 0 else 1  # a clock behind sees 12:00:00 still to come
    assert sorted(recorder.ticks()) == list(range(first, 61))
    if skew:  # the engine whose clock is ahead gets to each tick first
        winners = {name for name, tick, _ in recorder.fires if tick >= 1}
        assert winners == {"b" if skew > 0 else "a"}


async def test_a_slow_handler_skips_the_ticks_it_outlasts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(duration=1.5)
    r = runner(MemoryKV(), recorder)
    await r.add(job("* * * * * *"))
    await run_for(r, 10.5)
    assert recorder.ticks() == [1, 3, 5, 7, 9]


async def test_a_tick_held_by_an_earlier_run_elsewhere_is_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Another engine's run of the same job still holds the job's run lock: no overlap.
    store, recorder = MemoryKV(), Recorder()
    locks = KvLockStore(store, index="cron_locks", clock_ms=lambda: int(wall()() * 1000))
    held = await locks.acquire("fn:1", 2_500)  # lapses at 2.5 s
    assert held is not None
    r = runner(store, recorder, locks=locks)
    await r.add(job("* * * * * *"))
    await run_for(r, 4.5)
    assert recorder.ticks() == [3, 4]


async def test_removing_a_job_stops_its_run_and_releases_its_lock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, recorder = MemoryKV(), Recorder(duration=100)
    locks = KvLockStore(store, index="cron_locks", clock_ms=lambda: int(wall()() * 1000))
    r = runner(store, recorder, locks=locks)
    await r.add(job("* * * * * *"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(r.run)
        await trio.sleep(1.5)
        assert recorder.ticks() == [1]
        assert await locks.acquire("fn:1", 1000) is None  # the run holds it
        removed = r.remove("job-1")
        assert removed is not None and removed.id == "job-1"
        await trio.testing.wait_all_tasks_blocked()
        assert await locks.acquire("fn:1", 1000) is not None  # released on the way out
        await trio.sleep(5)
        assert recorder.ticks() == [1]
        nursery.cancel_scope.cancel()


async def test_a_job_registered_twice_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    r = runner(MemoryKV(), Recorder())
    await r.add(job("* * * * * *"))
    try:
        await r.add(job("0 * * * * *"))
    except KeyError as exc:
        assert "Cron job 'job-1' is already registered" in str(exc)
    else:
        raise AssertionError("registered twice")


class FailingStore(MemoryKV):
    async def set(self, scope: str, key: str, value: Any) -> SetResult:
        if scope == FIRED_SCOPE:
            raise StorageError("disk full")
        return await super().set(scope, key, value)


async def test_a_store_that_cannot_record_does_not_stop_the_fires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    r = runner(FailingStore(), recorder)
    await r.add(job("* * * * * *"))
    await run_for(r, 3.5)
    assert recorder.ticks() == [1, 2, 3]
