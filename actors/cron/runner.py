"""The cron scheduler's trio edge: sleeps until the next tick, claims each due tick, records it,
runs it in its own task and tells the schedule when it ended (rules in ``actors.cron.schedule``).

Each fire, in order (WORKERS.md §8.4, with the once-per-tick difference of §16 item 18):

1. **Claim the tick**: lock ``<job key>@<tick>``. The claim is never released; it lapses after
   the lock TTL. Whoever loses it skips the tick, so among engines sharing a Redis lock store a
   tick fires once, however late another engine gets to it.
2. **Take the job's run lock** ``<job key>`` (upstream's lock): if an earlier run still holds it
   (on this engine or another), the tick is skipped, so runs of one job never overlap. It is
   released right after the run; its TTL only matters if the holder dies.
3. **Record the tick** as the job's last fired one (the store's ``cron_last_fired`` index), so
   that after a restart the schedule neither repeats it nor forgets what came since.
4. **Run** the condition and handler to completion (the service's ``invoke``).

The *job key* names a job the same way on every engine (``actors.cron.jobs``); with the
``kv`` adapter the locks are process-local and only the restart rule and overlap matter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import structlog
import trio

from actors.cron.expression import CronExpression
from actors.cron.schedule import CATCH_UP_WINDOW, CronSchedule, Fire
from storage.errors import StorageError
from storage.kv import KeyValueStore
from storage.locks import LockStore
from transport.client import TriggerBinding

__all__ = ["FIRED_SCOPE", "MAX_SLEEP", "CronJob", "CronRunner", "Invoke"]

log = structlog.get_logger("iii-cron")

FIRED_SCOPE: Final = "cron_last_fired"
# Sleep at most this long at a time, so a step of the wall clock is noticed within it.
MAX_SLEEP: Final = 30.0
_RELEASE_TIMEOUT: Final = 5.0


@attrs.frozen
class CronJob:
    """A scheduled ``cron`` binding: ``id`` is the trigger id (upstream's job id), ``key`` what
    every engine calls the same job (its locks and its record)."""

    id: str
    key: str
    expression: CronExpression
    binding: TriggerBinding


# (job, fire, actual time): run the condition and the handler; must not raise.
Invoke = Callable[[CronJob, Fire, float], Awaitable[None]]


class CronRunner:
    """Drives a :class:`CronSchedule` on the wall clock ``clock`` (epoch seconds)."""

    def __init__(
        self,
        *,
        store: KeyValueStore,
        locks: LockStore,
        lock_ttl_ms: int,
        invoke: Invoke,
        clock: Callable[[], float] = time.time,
        catch_up_window: float = CATCH_UP_WINDOW,
    ) -> None:
        self.store = store
        self.locks = locks
        self.lock_ttl_ms = lock_ttl_ms
        self._invoke = invoke
        self._clock = clock
        self.schedule = CronSchedule(catch_up_window=catch_up_window)
        self.jobs: dict[str, CronJob] = {}
        self._running: dict[str, trio.CancelScope] = {}
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None

    # -- jobs --------------------------------------------------------------------------------

    async def add(self, job: CronJob) -> int | None:
        """Schedule ``job`` from its recorded last tick, if any; the tick it now waits for."""
        if job.id in self.jobs:
            raise KeyError(f"Cron job '{job.id}' is already registered")
        last = await self._last_fired(job)
        if job.id in self.jobs:  # registered again while we read
            raise KeyError(f"Cron job '{job.id}' is already registered")
        self.jobs[job.id] = job
        pending = self.schedule.add(job.id, job.expression, self._clock(), last)
        self._changed.set()
        return pending

    def remove(self, job_id: str) -> CronJob | None:
        """Stop a job: forget it and cancel its run in progress (its run lock is released)."""
        job = self.jobs.pop(job_id, None)
        self.schedule.remove(job_id)
        scope = self._running.pop(job_id, None)
        if scope is not None:
            scope.cancel()
        self._changed.set()
        return job

    async def _last_fired(self, job: CronJob) -> int | None:
        try:
            record = await self.store.get(FIRED_SCOPE, job.key)
        except StorageError as exc:
            log.warning("cannot read the job's last tick", job_id=job.id, error=str(exc))
            return None
        tick = record.get("tick") if isinstance(record, dict) else None
        return tick if isinstance(tick, int) and not isinstance(tick, bool) else None

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fire due ticks until cancelled; each fire runs in its own task."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                for fire in self.schedule.due(self._clock()):
                    nursery.start_soon(self._fire, self.jobs[fire.job_id], fire)
                wake = self.schedule.next_wake()
                delay = math.inf if wake is None else wake - self._clock()
                self._changed = trio.Event()
                with trio.move_on_after(max(0.0, min(delay, MAX_SLEEP))):
                    await self._changed.wait()

    async def _fire(self, job: CronJob, fire: Fire) -> None:
        with trio.CancelScope() as scope:
            self._running[job.id] = scope
            try:
                await self._claimed_run(job, fire)
            except Exception:  # a bug must not stop the scheduler; the job goes on
                log.exception("cron fire failed", job_id=job.id, tick=fire.tick)
        if self._running.get(job.id) is scope:
            del self._running[job.id]
            self.schedule.done(job.id, self._clock())
            self._changed.set()

    async def _claimed_run(self, job: CronJob, fire: Fire) -> None:
        ttl = self.lock_ttl_ms
        if await self.locks.acquire(f"{job.key}@{fire.tick}", ttl) is None:
            log.debug("tick already claimed; skipped", job_id=job.id, tick=fire.tick)
            return
        token = await self.locks.acquire(job.key, ttl)
        if token is None:
            log.info("previous run still holds the job's lock; tick skipped", job_id=job.id)
            return
        try:
            await self._record(job, fire)
            actual = self._clock()  # as upstream: the payload is built once the lock is held
            if fire.late:
                log.info(
                    "firing a tick late", job_id=job.id, tick=fire.tick, late_s=actual - fire.tick
                )
            await self._invoke(job, fire, actual)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_RELEASE_TIMEOUT):
                await self.locks.release(job.key, token)

    async def _record(self, job: CronJob, fire: Fire) -> None:
        record: dict[str, Any] = {"tick": fire.tick, "job_id": job.id}
        try:
            await self.store.set(FIRED_SCOPE, job.key, record)
        except StorageError as exc:
            log.warning("cannot record the job's tick", job_id=job.id, error=str(exc))
