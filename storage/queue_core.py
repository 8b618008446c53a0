"""The builtin job queue as a pure object: named queues of jobs, retries, a dead-letter queue.

No I/O and no clock: every method that depends on time takes ``now`` (seconds, wall clock in
production so that due times survive a restart; any number in tests). The trio edge
(``storage.queue_memory``) calls :meth:`QueueCore.take` whenever something changed or the next
delayed job is due, and the file adapter journals each mutation (``storage.queue_file``).

A job lives in exactly one of *waiting* (a FIFO list), *active* (handed out by ``take`` and not
yet acked or failed), *delayed* (waiting for its retry, ordered by due time) or the *DLQ*
(WORKERS.md §7.5).

**The retry-counting rule** (one rule, for every queue and every adapter): a queue's
``max_attempts`` is the total number of handler calls a job gets. After a failed attempt the
job's ``attempts`` is incremented; if ``attempts >= max_attempts`` it goes to the DLQ, otherwise
it is retried ``backoff_ms × 2^(attempts − 1)`` after the failure (first retry after
``backoff_ms``, then 2×, 4×, …; the exponent is capped at 30). How config keys map onto it is
the block's business (``manifests.blocks.queue``): a named queue's ``max_retries: N`` is N
attempts (upstream's builtin meaning, §16 item 5; ``0`` means one), a durable subscriber's
``maxRetries: N`` is N + 1 attempts.

**Concurrency**: at most ``concurrency`` jobs of a queue are active at once.

**FIFO queues** (``fifo=True``): jobs carry a group key (``None`` is a group of its own);
a group has at most one job active *or waiting for its retry*, and at most ``concurrency``
groups run at once. A failed job therefore blocks its group until it succeeds or is
dead-lettered, and its retry goes back to the *front* of the line, so jobs of one group always
finish in enqueue order (the "retry inline" recommendation of §16 item 6; upstream lets later
jobs overtake a job waiting for its retry).

**Redrive** resets ``attempts`` to 0 and appends the job to the back of *waiting*; any DLQ job
can be redriven or discarded by id, not only the oldest. **Release** puts an active job back at
the front of *waiting* without counting an attempt (a consumer stopped, the process restarts).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal

import attrs

__all__ = [
    "MAX_BACKOFF_EXPONENT",
    "Job",
    "JobState",
    "QueueCore",
    "QueueCounts",
    "QueueSettings",
    "retry_delay_ms",
]

MAX_BACKOFF_EXPONENT: Final = 30  # 2^30 × 1 s is 34 years: "saturating" without overflow

JobState = Literal["waiting", "active", "delayed", "dead"]


def retry_delay_ms(backoff_ms: int, attempts: int) -> int:
    """The delay before the retry that follows failed attempt number ``attempts`` (1-based)."""
    return backoff_ms * (1 << min(max(attempts - 1, 0), MAX_BACKOFF_EXPONENT))


@attrs.frozen
class QueueSettings:
    max_attempts: int = 3
    backoff_ms: int = 1000
    concurrency: int = 10
    fifo: bool = False

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.backoff_ms < 0:
            raise ValueError(f"backoff_ms must not be negative, got {self.backoff_ms}")


@attrs.define(eq=False)
class Job:
    """One message and its delivery bookkeeping; ``target`` is whatever the caller routes by
    (the actor stores the function id and namespace there)."""

    id: str
    queue: str
    data: Any
    enqueued_at: float
    target: dict[str, Any] = attrs.Factory(dict)
    group: str | None = None
    attempts: int = 0
    state: JobState = "waiting"
    due: float = 0.0  # delayed: when the retry is due
    error: str | None = None  # the last failure's text
    failed_at: float | None = None  # when it was dead-lettered

    def record(self) -> dict[str, Any]:
        """The file adapter's snapshot and journal format (serialised at once, so ``data`` and
        ``target`` are not copied)."""
        return {
            "id": self.id,
            "queue": self.queue,
            "data": self.data,
            "enqueued_at": self.enqueued_at,
            "target": self.target,
            "group": self.group,
            "attempts": self.attempts,
            "state": self.state,
            "due": self.due,
            "error": self.error,
            "failed_at": self.failed_at,
        }

    @classmethod
    def from_record(cls, raw: dict[str, Any]) -> Job:
        return cls(**raw)


@attrs.frozen
class QueueCounts:
    waiting: int
    active: int
    delayed: int
    dead: int

    @property
    def depth(self) -> int:
        """What ``topic_stats`` calls depth: jobs not yet done, dead ones aside."""
        return self.waiting + self.active + self.delayed


@attrs.define(eq=False)
class _Queue:
    name: str
    settings: QueueSettings
    consumed: bool = True
    waiting: deque[str] = attrs.Factory(deque)
    active: set[str] = attrs.Factory(set)
    delayed: list[tuple[float, int, str]] = attrs.Factory(list)  # heap (due, seq, id)
    dead: OrderedDict[str, None] = attrs.Factory(OrderedDict)  # oldest failure first
    busy_groups: dict[str | None, int] = attrs.Factory(dict)  # FIFO: group → active+delayed


class QueueCore:
    """Every queue's jobs; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._jobs: dict[str, Job] = {}
        self._seq = itertools.count()
        self._delayed_count = 0

    # -- queues -------------------------------------------------------------------------

    def declare(self, name: str, settings: QueueSettings, *, consumed: bool = True) -> None:
        """Create the queue, or change its settings (they apply to the next decision)."""
        queue = self._queues.get(name)
        if queue is None:
            self._queues[name] = _Queue(name, settings, consumed)
            return
        if queue.settings.fifo != settings.fifo:
            queue.busy_groups = self._count_groups(queue) if settings.fifo else {}
        queue.settings = settings
        queue.consumed = consumed

    def set_consumed(self, name: str, consumed: bool) -> None:
        """A queue nobody consumes keeps its jobs but hands none out (a subscriber away)."""
        self._queue(name).consumed = consumed

    def has_queue(self, name: str) -> bool:
        return name in self._queues

    def queue_names(self) -> list[str]:
        return list(self._queues)

    def settings(self, name: str) -> QueueSettings:
        return self._queue(name).settings

    def _queue(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise KeyError(f"Queue '{name}' not found") from None

    # -- jobs in ------------------------------------------------------------------------

    def enqueue(self, job: Job) -> bool:
        """Append a new job to its queue's waiting list; ``False`` (and nothing changes) if a
        job with that id is already known, so a re-sent enqueue is idempotent."""
        if job.id in self._jobs:
            return False
        queue = self._queue(job.queue)
        self._jobs[job.id] = job
        self._place(queue, job)
        return True

    def restore(self, job: Job) -> None:
        """Put back a job read from storage, in the state it was saved in (active → waiting:
        it was in flight when the process stopped, so it is delivered again)."""
        queue = self._queues.get(job.queue)
        if queue is None:
            queue = self._queues[job.queue] = _Queue(job.queue, QueueSettings(), consumed=False)
        old = self._jobs.pop(job.id, None)
        if old is not None:
            self._unplace(self._queue(old.queue), old)
        self._jobs[job.id] = job
        if job.state == "active":
            job.state = "waiting"
        self._place(queue, job)

    def _place(self, queue: _Queue, job: Job) -> None:
        if job.state == "waiting":
            queue.waiting.append(job.id)
        elif job.state == "delayed":
            self._push_delayed(queue, job)
        elif job.state == "dead":
            queue.dead[job.id] = None
        else:  # pragma: no cover - restore maps active to waiting
            raise ValueError(f"cannot place a job in state {job.state!r}")

    def _unplace(self, queue: _Queue, job: Job) -> None:
        """Take a job out of whatever list holds it (rare paths: restore over, discard)."""
        if job.state == "waiting":
            queue.waiting.remove(job.id)
        elif job.state == "active":
            queue.active.discard(job.id)
            self._release_group(queue, job)
        elif job.state == "delayed":
            queue.delayed = [d for d in queue.delayed if d[2] != job.id]
            heapq.heapify(queue.delayed)
            self._delayed_count -= 1
            self._release_group(queue, job)
        else:
            queue.dead.pop(job.id, None)

    def _push_delayed(self, queue: _Queue, job: Job) -> None:
        heapq.heappush(queue.delayed, (job.due, next(self._seq), job.id))
        self._delayed_count += 1
        if queue.settings.fifo:
            self._hold_group(queue, job)

    # -- delivery -----------------------------------------------------------------------

    def take(self, now: float) -> list[Job]:
        """Promote every due retry, then hand out (mark active) each job that may start now."""
        out: list[Job] = []
        for queue in self._queues.values():
            self._promote_due(queue, now)
            if queue.consumed and queue.waiting:
                out.extend(self._take_from(queue))
        return out

    def _promote_due(self, queue: _Queue, now: float) -> None:
        while queue.delayed and queue.delayed[0][0] <= now:
            _, _, job_id = heapq.heappop(queue.delayed)
            self._delayed_count -= 1
            job = self._jobs[job_id]
            job.state = "waiting"
            if queue.settings.fifo:
                # Its group stayed held while it waited: it goes first, ahead of later jobs.
                self._release_group(queue, job)
                queue.waiting.appendleft(job_id)
            else:
                queue.waiting.append(job_id)

    def _take_from(self, queue: _Queue) -> Iterator[Job]:
        room = queue.settings.concurrency - len(queue.active)
        if room <= 0:
            return
        if not queue.settings.fifo:
            while room and queue.waiting:
                yield self._activate(queue, self._jobs[queue.waiting.popleft()])
                room -= 1
            return
        # FIFO: the first waiting job of each group that is not busy, in list order. Jobs
        # skipped here keep their place.
        skipped: list[str] = []
        seen_busy: set[str | None] = set()
        while room and queue.waiting:
            job = self._jobs[queue.waiting.popleft()]
            if job.group in seen_busy or queue.busy_groups.get(job.group):
                seen_busy.add(job.group)
                skipped.append(job.id)
                continue
            yield self._activate(queue, job)
            seen_busy.add(job.group)  # one job per group per call
            room -= 1
        queue.waiting.extendleft(reversed(skipped))

    def _activate(self, queue: _Queue, job: Job) -> Job:
        job.state = "active"
        queue.active.add(job.id)
        if queue.settings.fifo:
            self._hold_group(queue, job)
        return job

    def _hold_group(self, queue: _Queue, job: Job) -> None:
        queue.busy_groups[job.group] = queue.busy_groups.get(job.group, 0) + 1

    def _release_group(self, queue: _Queue, job: Job) -> None:
        if not queue.settings.fifo:
            return
        left = queue.busy_groups.get(job.group, 0) - 1
        if left > 0:
            queue.busy_groups[job.group] = left
        else:
            queue.busy_groups.pop(job.group, None)

    def _count_groups(self, queue: _Queue) -> dict[str | None, int]:
        counts: dict[str | None, int] = {}
        for job_id in itertools.chain(queue.active, (d[2] for d in queue.delayed)):
            group = self._jobs[job_id].group
            counts[group] = counts.get(group, 0) + 1
        return counts

    def _active(self, job_id: str) -> tuple[_Queue, Job]:
        job = self._jobs.get(job_id)
        if job is None or job.state != "active":
            raise KeyError(f"job {job_id} is not in flight")
        queue = self._queue(job.queue)
        queue.active.discard(job_id)
        self._release_group(queue, job)
        return queue, job

    def ack(self, job_id: str) -> Job:
        """The handler succeeded: the job is done and forgotten."""
        _, job = self._active(job_id)
        del self._jobs[job_id]
        return job

    def fail(self, job_id: str, error: str, now: float) -> Job:
        """The handler failed: count the attempt, then schedule the retry or dead-letter it.
        The returned job's ``state`` says which (``delayed`` with ``due``, or ``dead``)."""
        queue, job = self._active(job_id)
        job.attempts += 1
        job.error = error
        settings = queue.settings
        if job.attempts >= settings.max_attempts:
            job.state = "dead"
            job.failed_at = now
            queue.dead[job.id] = None
        else:
            job.state = "delayed"
            job.due = now + retry_delay_ms(settings.backoff_ms, job.attempts) / 1000.0
            self._push_delayed(queue, job)
        return job

    def release(self, job_id: str) -> Job:
        """Give an active job back, first in line, without counting an attempt."""
        queue, job = self._active(job_id)
        job.state = "waiting"
        queue.waiting.appendleft(job_id)
        return job

    def release_all(self, queue_name: str | None = None) -> list[Job]:
        """Release every active job (of one queue, or all), keeping their relative order."""
        released = []
        for queue in self._queues.values():
            if queue_name is not None and queue.name != queue_name:
                continue
            for job_id in sorted(queue.active, key=lambda i: self._jobs[i].enqueued_at)[::-1]:
                released.append(self.release(job_id))
        return released[::-1]

    def next_due(self) -> float | None:
        """When the earliest retry is due (``None``: nothing delayed)."""
        if not self._delayed_count:
            return None
        dues = [q.delayed[0][0] for q in self._queues.values() if q.delayed]
        return min(dues) if dues else None

    # -- the DLQ ------------------------------------------------------------------------

    def dead(self, queue_name: str) -> list[Job]:
        """The queue's DLQ, newest failure first (as ``dlq_messages`` lists it)."""
        queue = self._queues.get(queue_name)
        if queue is None:
            return []
        return [self._jobs[i] for i in reversed(queue.dead)]

    def redrive(self, queue_name: str, job_id: str | None = None) -> list[Job]:
        """Move one DLQ job (by id), or all of them (oldest first), back to waiting with
        ``attempts`` reset; returns those moved (empty: no such job)."""
        queue = self._queues.get(queue_name)
        if queue is None:
            return []
        ids = list(queue.dead) if job_id is None else [job_id] if job_id in queue.dead else []
        moved = []
        for i in ids:
            del queue.dead[i]
            job = self._jobs[i]
            job.state, job.attempts, job.error, job.failed_at = "waiting", 0, None, None
            queue.waiting.append(i)
            moved.append(job)
        return moved

    def discard(self, queue_name: str, job_id: str) -> Job | None:
        """Delete one DLQ job for good."""
        queue = self._queues.get(queue_name)
        if queue is None or job_id not in queue.dead:
            return None
        del queue.dead[job_id]
        return self._jobs.pop(job_id)

    # -- reading ------------------------------------------------------------------------

    def counts(self, queue_name: str) -> QueueCounts:
        queue = self._queues.get(queue_name)
        if queue is None:
            return QueueCounts(0, 0, 0, 0)
        return QueueCounts(
            len(queue.waiting), len(queue.active), len(queue.delayed), len(queue.dead)
        )

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> Iterable[Job]:
        """Every job: per queue, active (they were ahead), waiting in order, delayed, dead."""
        for queue in self._queues.values():
            yield from sorted((self._jobs[i] for i in queue.active), key=lambda j: j.enqueued_at)
            yield from (self._jobs[i] for i in queue.waiting)
            yield from (self._jobs[d[2]] for d in sorted(queue.delayed))
            yield from (self._jobs[i] for i in queue.dead)

    def __len__(self) -> int:
        return len(self._jobs)
