"""The sans-io queue core (storage.queue_core) on explicit ``now`` values: backoff timing, the
DLQ after max attempts, redrive of any DLQ job, FIFO order within a group, the concurrency cap."""

from __future__ import annotations

import random

import pytest

from storage.queue_core import Job, QueueCore, QueueSettings, retry_delay_ms


def job(i: int | str, queue: str = "q", group: str | None = None, now: float = 0.0) -> Job:
    return Job(id=str(i), queue=queue, data={"n": i}, enqueued_at=now, group=group)


def core_with(settings: QueueSettings, name: str = "q") -> QueueCore:
    core = QueueCore()
    core.declare(name, settings)
    return core


def ids(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


def test_retry_backoff_doubles_from_the_failure_time() -> None:
    core = core_with(QueueSettings(max_attempts=4, backoff_ms=1000))
    core.enqueue(job(1))
    assert ids(core.take(now=100.0)) == ["1"]
    failed = core.fail("1", "boom", now=100.5)
    assert (failed.state, failed.attempts, failed.due) == ("delayed", 1, 101.5)
    assert core.next_due() == 101.5
    assert core.take(now=101.499) == []  # not a moment early
    assert ids(core.take(now=101.5)) == ["1"]
    assert core.fail("1", "boom", now=102.0).due == 104.0  # 2 × backoff
    assert core.take(now=103.9) == []
    assert ids(core.take(now=104.0)) == ["1"]
    assert core.fail("1", "boom", now=104.0).due == 108.0  # 4 × backoff
    assert core.next_due() == 108.0
    assert [retry_delay_ms(1000, n) for n in (1, 2, 3, 4)] == [1000, 2000, 4000, 8000]
    assert retry_delay_ms(1000, 10_000) == 1000 * 2**30  # saturates instead of overflowing


def test_dead_lettered_after_max_attempts_with_error_and_time() -> None:
    core = core_with(QueueSettings(max_attempts=3, backoff_ms=10))
    core.enqueue(job(1))
    now = 0.0
    for attempt in (1, 2, 3):
        assert ids(core.take(now)) == ["1"], attempt
        out = core.fail("1", f"error {attempt}", now)
        now = out.due if out.state == "delayed" else now
    assert (out.state, out.attempts, out.error, out.failed_at) == ("dead", 3, "error 3", now)
    assert core.take(now + 1000) == []  # the DLQ is never delivered
    assert core.next_due() is None
    assert ids(core.dead("q")) == ["1"]
    assert core.counts("q").dead == 1 and core.counts("q").depth == 0


def test_one_attempt_means_straight_to_the_dlq() -> None:
    core = core_with(QueueSettings(max_attempts=1))
    core.enqueue(job(1))
    core.take(0)
    assert core.fail("1", "x", 0).state == "dead"
    with pytest.raises(ValueError):
        QueueSettings(max_attempts=0)
    with pytest.raises(ValueError):
        QueueSettings(concurrency=0)


def test_redrive_of_a_middle_dlq_job_brings_only_it_back_with_attempts_reset() -> None:
    core = core_with(QueueSettings(max_attempts=1))
    for i in range(5):
        core.enqueue(job(i))
    for j in core.take(0):
        core.fail(j.id, "no", now=float(j.id))
    assert ids(core.dead("q")) == ["4", "3", "2", "1", "0"]  # newest failure first
    assert ids(core.redrive("q", "2")) == ["2"]
    assert ids(core.dead("q")) == ["4", "3", "1", "0"]
    assert core.redrive("q", "2") == []  # no longer there
    assert core.redrive("q", "nope") == []
    back = core.take(10)
    assert ids(back) == ["2"] and back[0].attempts == 0 and back[0].error is None
    core.ack("2")
    assert core.discard("q", "3") is not None and core.discard("q", "3") is None
    assert ids(core.dead("q")) == ["4", "1", "0"]
    assert ids(core.redrive("q")) == ["0", "1", "4"]  # all of them, oldest failure first
    assert ids(core.take(11)) == ["0", "1", "4"]
    assert core.dead("unknown") == [] and core.redrive("unknown") == []


def test_concurrency_is_never_exceeded_under_random_completions() -> None:
    rng = random.Random(7)
    core = core_with(QueueSettings(concurrency=3, max_attempts=2, backoff_ms=5))
    for i in range(200):
        core.enqueue(job(i))
    active: set[str] = set()
    done: set[str] = set()
    now = 0.0
    while len(done) < 200:
        for j in core.take(now):
            active.add(j.id)
        assert len(active) <= 3
        assert core.counts("q").active == len(active)
        if active:
            chosen = rng.choice(sorted(active))
            active.discard(chosen)
            if rng.random() < 0.3 and core.job(chosen) is not None:
                if core.fail(chosen, "flaky", now).state == "dead":
                    done.add(chosen)
            else:
                core.ack(chosen)
                done.add(chosen)
        now += 0.001
    assert len(core.dead("q")) + 0 == len(core) and core.counts("q").depth == 0


def test_fifo_keeps_order_within_a_group_even_across_retries() -> None:
    core = core_with(QueueSettings(fifo=True, concurrency=2, backoff_ms=100, max_attempts=3))
    for i, group in enumerate("aabab"):
        core.enqueue(job(f"{group}{i}", group=group))
    first = core.take(0)
    assert ids(first) == ["a0", "b2"]  # one job per group, two groups at once
    assert core.take(0) == []  # both groups busy
    core.fail("a0", "retry me", now=0.0)  # a0 waits 100 ms; a1 must not overtake it
    assert core.take(0.05) == []
    core.ack("b2")
    assert ids(core.take(0.05)) == ["b4"]
    assert ids(core.take(0.1)) == ["a0"]  # the retry goes first in its group
    core.ack("a0")
    assert ids(core.take(0.1)) == ["a1"]
    core.ack("a1")
    core.ack("b4")
    assert ids(core.take(0.1)) == ["a3"]


def test_fifo_groups_run_in_enqueue_order_under_random_completions() -> None:
    rng = random.Random(3)
    core = core_with(QueueSettings(fifo=True, concurrency=3, backoff_ms=1, max_attempts=5))
    expected: dict[str, list[str]] = {}
    for i in range(300):
        group = rng.choice("abcdef")
        core.enqueue(job(i, group=group))
        expected.setdefault(group, []).append(str(i))
    finished: dict[str, list[str]] = {}
    active: dict[str, Job] = {}
    now = 0.0
    while len(core):
        for j in core.take(now):
            assert j.group not in {a.group for a in active.values()}
            active[j.id] = j
        assert len(active) <= 3
        if active:
            chosen = active.pop(rng.choice(sorted(active)))
            if rng.random() < 0.2 and chosen.attempts < 3:
                core.fail(chosen.id, "flaky", now)
            else:
                core.ack(chosen.id)
                finished.setdefault(chosen.group or "", []).append(chosen.id)
        now += 0.0005
    assert finished == expected


def test_release_and_restore_put_in_flight_jobs_first_in_line() -> None:
    core = core_with(QueueSettings(concurrency=2))
    for i in range(4):
        core.enqueue(job(i, now=float(i)))
    assert ids(core.take(0)) == ["0", "1"]
    assert ids(list(core.jobs())) == ["0", "1", "2", "3"]  # a snapshot's order: active first
    snapshot = [Job.from_record(j.record()) for j in core.jobs()]
    assert {j.state for j in snapshot} == {"active", "waiting"}
    fresh = QueueCore()
    fresh.declare("q", QueueSettings(concurrency=10))
    for saved in snapshot:
        fresh.restore(saved)
    assert ids(fresh.take(0)) == ["0", "1", "2", "3"]  # the in-flight ones are redelivered
    assert ids(core.release_all()) == ["0", "1"]
    assert ids(core.take(0)) == ["0", "1"]


def test_enqueue_is_idempotent_by_id_and_unknown_queues_fail() -> None:
    core = core_with(QueueSettings())
    assert core.enqueue(job(1)) and not core.enqueue(job(1))
    assert len(core) == 1
    with pytest.raises(KeyError, match="Queue 'other' not found"):
        core.enqueue(job(2, queue="other"))
    with pytest.raises(KeyError):
        core.ack("1")  # not in flight


def test_an_unconsumed_queue_keeps_its_jobs_until_a_consumer_comes() -> None:
    core = QueueCore()
    core.declare("t::f@default", QueueSettings(), consumed=False)
    core.enqueue(job(1, queue="t::f@default"))
    assert core.take(0) == []
    core.set_consumed("t::f@default", True)
    assert ids(core.take(0)) == ["1"]


def test_settings_change_applies_to_the_next_decision() -> None:
    core = core_with(QueueSettings(max_attempts=5))
    core.enqueue(job(1))
    core.take(0)
    core.declare("q", QueueSettings(max_attempts=1))
    assert core.fail("1", "x", 0).state == "dead"
