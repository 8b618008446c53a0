"""Which cron jobs are due and when to look next: the scheduler's rules on explicit time, no I/O.

Times are wall-clock epoch seconds (UTC); a tick is the whole second of a fire time. The rules:

1. **Next tick.** A new job waits for the first fire time strictly after ``now``.
2. **No overlap, no catch-up after a run** (§8.3). A job whose tick came is *running* until
   :meth:`CronSchedule.done`; it then waits for the first fire time after the moment its run
   ended, so fire times that passed during a long run are skipped, as upstream skips them.
3. **One fire per look, at most one catch-up.** When the scheduler looks at a job whose tick
   has come, it fires the *latest* fire time that has come, once, however many came since
   (normally that is the tick itself). If even that one is older than
   :data:`CATCH_UP_WINDOW`, nothing fires and the job waits for the next fire time.
4. **Ticks missed while the actor was down** follow from rule 3. A job added with the last tick
   fired for it (the runner persists it per job in the store) resumes from that tick: if fire
   times came meanwhile, the latest one fires at once, when it is at most
   :data:`CATCH_UP_WINDOW` old; older misses are dropped, as upstream drops every fire it
   missed while down. A tick at or before the recorded one never fires again. So a restart
   shorter than the schedule's period loses no tick and repeats none; a longer one fires one
   catch-up tick (the latest) or, after a long outage, none. A job with no record starts by
   rule 1. The same holds for a process that was suspended or stalled.

Why 30 s: it is the TTL of upstream's Redis lock (§8.4), which the runner also gives the claim
on each tick, so any tick young enough to catch up is still claimed by whichever engine fired
it, and no two engines can both fire it. Quartz's default misfire threshold (60 s, fire once
now) is the same idea.
"""

from __future__ import annotations

import heapq
from typing import Final

import attrs

from actors.cron.expression import CronExpression

__all__ = ["CATCH_UP_WINDOW", "CronSchedule", "Fire"]

CATCH_UP_WINDOW: Final = 30.0


@attrs.frozen
class Fire:
    """A job's tick to run now: ``tick`` is the scheduled second; ``late`` says it is a
    catch-up (a tick that came while nobody looked)."""

    job_id: str
    tick: int
    late: bool = False


@attrs.define
class _Job:
    expression: CronExpression
    pending: int | None  # the tick it waits for; None: running, or no fire time left
    last_fired: int | None
    running: bool = False


class CronSchedule:
    """The jobs, their pending ticks and what is due at a given time."""

    def __init__(self, *, catch_up_window: float = CATCH_UP_WINDOW) -> None:
        self.catch_up_window = catch_up_window
        self._jobs: dict[str, _Job] = {}
        self._heap: list[tuple[int, str]] = []  # (pending tick, job id); stale rows skipped

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def add(
        self, job_id: str, expression: CronExpression, now: float, last_fired: int | None = None
    ) -> int | None:
        """Schedule a job; ``last_fired`` is the last tick fired for it before (rule 4).
        Returns the tick it waits for (``None``: it never fires)."""
        if job_id in self._jobs:
            raise KeyError(f"cron job {job_id!r} is already scheduled")
        # With a record, resume from it: a tick that came since is due at once (rule 4).
        start = now if last_fired is None else last_fired
        job = _Job(expression, expression.next_tick(start), last_fired)
        self._jobs[job_id] = job
        self._push(job_id, job)
        return job.pending

    def remove(self, job_id: str) -> bool:
        """Forget a job (a run in progress finishes; its :meth:`done` is then ignored)."""
        return self._jobs.pop(job_id, None) is not None

    def pending(self, job_id: str) -> int | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.pending

    def last_fired(self, job_id: str) -> int | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.last_fired

    def next_wake(self) -> int | None:
        """The earliest tick any idle job waits for (``None``: nothing to wait for)."""
        while self._heap:
            tick, job_id = self._heap[0]
            job = self._jobs.get(job_id)
            if job is not None and not job.running and job.pending == tick:
                return tick
            heapq.heappop(self._heap)
        return None

    def due(self, now: float) -> list[Fire]:
        """The fires to start at ``now``; each of their jobs is running until :meth:`done`."""
        fires: list[Fire] = []
        while (wake := self.next_wake()) is not None and wake <= now:
            _, job_id = heapq.heappop(self._heap)
            job = self._jobs[job_id]
            latest = job.expression.latest_tick(now)
            fired_before = (
                job.last_fired is not None and latest is not None and latest <= job.last_fired
            )
            if latest is None or fired_before or now - latest > self.catch_up_window:
                # Rule 3: even the latest tick that came is too old (or was fired already:
                # the wall clock stepped back); wait for the next one.
                job.pending = job.expression.next_tick(max(now, job.last_fired or now))
                self._push(job_id, job)
                continue
            job.pending = None
            job.running = True
            job.last_fired = latest
            fires.append(Fire(job_id, latest, late=latest != wake or now - latest >= 1.0))
        return fires

    def done(self, job_id: str, now: float) -> int | None:
        """A run ended at ``now``: the job waits for the next fire time after it (rule 2)."""
        job = self._jobs.get(job_id)
        if job is None or not job.running:
            return None
        job.running = False
        # Never at or before the tick just fired, even if the wall clock stepped back.
        after = now if job.last_fired is None else max(now, job.last_fired)
        job.pending = job.expression.next_tick(after)
        self._push(job_id, job)
        return job.pending

    def _push(self, job_id: str, job: _Job) -> None:
        if job.pending is not None:
            heapq.heappush(self._heap, (job.pending, job_id))
