"""iii-queue with the builtin broker, through the official SDK (WORKERS.md §7): exactly-once
processing when nothing fails, retries with backoff, the DLQ and redrive of a middle message,
``TriggerAction.Enqueue`` from another SDK worker, durable topics, and no job lost when the
actor is SIGKILLed mid-stream with the file adapter (the supervisor restarts it)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.queue.conftest import (
    QueueDeployment,
    Recorder,
    call,
    enqueue,
    file_block,
    function_ids,
)
from tests.support import WorkerProcess, wait_for

FAST = {"backoff_ms": 50, "concurrency": 10}


def memory_block(**queue: Any) -> dict[str, Any]:
    return {"queue_configs": {"default": queue}}


@pytest.fixture(params=["in_memory", "file_based"])
def block_of(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    if request.param == "in_memory":
        return memory_block
    return lambda **queue: file_block(tmp_path / "queue-data", **queue)


def test_a_thousand_jobs_are_each_processed_exactly_once(
    queue_engine: Callable[..., QueueDeployment], block_of: Callable[..., dict[str, Any]]
) -> None:
    q = queue_engine(block_of(**FAST))
    job = Recorder()
    q.register("test::job", job)
    receipts = {enqueue(q.client, "test::job", {"n": n})["messageReceiptId"] for n in range(1000)}
    assert len(receipts) == 1000
    job.wait_keys(1000)
    assert job.settle() == 1000
    assert sorted(job.seen) == list(range(1000)) and set(job.seen.values()) == {1}
    stats = call(q.client, "engine::queue::topic_stats", {"queue": "default"})
    assert stats == {"depth": 0, "consumer_count": 10, "dlq_depth": 0, "config": None}


def test_a_handler_failing_twice_then_succeeding_is_retried_with_backoff(
    queue_engine: Callable[..., QueueDeployment], block_of: Callable[..., dict[str, Any]]
) -> None:
    q = queue_engine(block_of(max_retries=3, backoff_ms=200))
    times: list[float] = []

    def fail(data: Any, attempt: int) -> bool:
        times.append(time.monotonic())
        return attempt <= 2

    flaky = Recorder(fail)
    q.register("test::flaky", flaky)
    enqueue(q.client, "test::flaky", {"n": 1})
    wait_for(lambda: flaky.seen[1] == 3, 15.0)
    assert flaky.settle() == 3  # succeeded on the third attempt; no fourth
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39  # 200 ms, then 400 ms
    assert call(q.client, "engine::queue::dlq_messages", {"queue": "default"}) == []


def test_an_always_failing_handler_dead_letters_and_a_middle_one_is_redriven(
    queue_engine: Callable[..., QueueDeployment], block_of: Callable[..., dict[str, Any]]
) -> None:
    q = queue_engine(block_of(max_retries=2, backoff_ms=20))
    healed: set[int] = set()
    broken = Recorder(lambda data, attempt: data["n"] not in healed)
    q.register("test::broken", broken)
    receipts = [enqueue(q.client, "test::broken", {"n": n})["messageReceiptId"] for n in range(5)]

    def dead() -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = call(
            q.client, "engine::queue::dlq_messages", {"queue": "default"}
        )
        return result

    wait_for(lambda: len(dead()) == 5, 15.0)
    assert all(broken.seen[n] == 2 for n in range(5))  # max_retries 2: two attempts each
    listed = dead()
    assert {m["id"] for m in listed} == set(receipts)
    assert all(m["retries"] == 2 and "failing" in m["error"] for m in listed)
    assert {m["payload"]["n"] for m in listed} == set(range(5))
    dlq = call(q.client, "engine::queue::dlq_topics", {})
    assert {"topic": "default", "broker_type": "function_queue", "message_count": 5} in dlq

    middle = receipts[2]
    healed.add(2)
    result = call(
        q.client, "iii::queue::redrive_message", {"queue": "default", "message_id": middle}
    )
    assert result == {"queue": "default", "message_id": middle, "redriven": 1}
    wait_for(lambda: broken.seen[2] == 3, 10.0)
    wait_for(lambda: len(dead()) == 4, 10.0)
    assert middle not in {m["id"] for m in dead()}
    again = call(
        q.client, "iii::queue::redrive_message", {"queue": "default", "message_id": middle}
    )
    assert again["redriven"] == 0

    gone = call(
        q.client, "iii::queue::discard_message", {"queue": "default", "message_id": receipts[0]}
    )
    assert gone == {"queue": "default", "message_id": receipts[0], "redriven": 1}
    healed.update(range(5))
    assert call(q.client, "iii::queue::redrive", {"queue": "default"}) == {
        "queue": "default",
        "redriven": 3,
    }
    wait_for(lambda: all(broken.seen[n] == 3 for n in (1, 3, 4)), 10.0)
    assert dead() == [] and broken.seen[0] == 2


def test_trigger_action_enqueue_from_an_sdk_worker_reaches_its_target(
    queue_engine: Callable[..., QueueDeployment], tmp_path: Path
) -> None:
    q = queue_engine({"queue_configs": {"orders": {"concurrency": 2}}})
    target = Recorder()
    q.register("test::orders", target)
    producer = WorkerProcess(
        """
        import json, os, sys
        from iii import InitOptions, TriggerAction, register_worker
        c = register_worker(os.environ["III_URL"], InitOptions(worker_name="producer"))
        out = []
        for n in range(3):
            out.append(c.trigger({"function_id": "test::orders", "payload": {"n": n},
                                  "action": TriggerAction.Enqueue(queue="orders")}))
        try:
            c.trigger({"function_id": "test::orders", "payload": {},
                       "action": TriggerAction.Enqueue(queue="no-such-queue")})
        except Exception as exc:
            out.append({"error": getattr(exc, "code", None), "message": str(exc)})
        print("RESULT " + json.dumps(out), flush=True)
        c.shutdown()
        """,
        tmp_path,
        q.url,
        name="producer",
    )
    try:
        target.wait_keys(3, 20.0)
        wait_for(lambda: "RESULT" in producer.output(), 20.0)
    finally:
        producer.stop()
    line = next(x for x in producer.output().splitlines() if x.startswith("RESULT"))
    assert line.count("messageReceiptId") == 3
    assert "enqueue_error" in line and "Queue 'no-such-queue' not found" in line
    assert sorted(target.seen) == [0, 1, 2]
    assert all("_caller_worker_id" not in c or c["n"] in (0, 1, 2) for c in target.calls)


def test_durable_topic_fans_out_to_each_function_and_honours_conditions(
    queue_engine: Callable[..., QueueDeployment],
) -> None:
    q = queue_engine(None)
    first, second, odd_only = Recorder(), Recorder(), Recorder()
    q.register("test::first", first)
    q.register("test::second", second)
    q.register("test::odd_only", odd_only)
    q.register("test::is_odd", lambda data: data["n"] % 2 == 1)
    for fid, extra in (
        ("test::first", {}),
        ("test::second", {"queue_config": {"maxRetries": 0}}),
        ("test::odd_only", {"condition_function_id": "test::is_odd"}),
    ):
        q.client.register_trigger(
            {
                "type": "durable:subscriber",
                "function_id": fid,
                "config": {"topic": "orders", **extra},
            }
        )

    def subscribed() -> bool:
        topics = call(q.client, "engine::queue::list_topics", {})
        return {"name": "orders", "broker_type": "builtin", "subscriber_count": 3} in topics

    wait_for(subscribed, 10.0)
    for n in range(6):
        assert (
            call(q.client, "iii::durable::publish", {"topic": "orders", "data": {"n": n}}) is None
        )
    first.wait_keys(6)
    second.wait_keys(6)
    wait_for(lambda: len(odd_only.seen) == 3, 10.0)
    assert sorted(odd_only.seen) == [1, 3, 5]
    for recorder in (first, second):
        assert recorder.settle() == 6 and set(recorder.seen.values()) == {1}
    with pytest.raises(Exception, match="Topic is not set"):
        call(q.client, "iii::durable::publish", {"topic": "", "data": 1})


def test_sigkill_of_the_actor_mid_stream_loses_no_job_with_the_file_adapter(
    queue_engine: Callable[..., QueueDeployment], tmp_path: Path
) -> None:
    total = 600
    q = queue_engine(
        file_block(tmp_path / "queue-data", concurrency=4, backoff_ms=50),
        supervise={"backoff": {"initial": "200ms"}},
    )

    gate = threading.Event()

    def slow(data: Any, attempt: int) -> bool:
        gate.wait(30.0)
        time.sleep(0.01)
        return False

    job = Recorder(slow)
    q.register("test::slow", job)
    for n in range(total):  # all stored before any finishes: the gate holds the first four
        enqueue(q.client, "test::slow", {"n": n})
    gate.set()
    wait_for(lambda: len(job.seen) >= total // 4, 30.0, interval=0.01)
    first_pid = q.actor_pid()
    os.kill(first_pid, signal.SIGKILL)
    processed_at_kill = len(job.seen)
    assert processed_at_kill < total

    wait_for(lambda: q.actor_pid() != first_pid, 20.0)
    q.wait_ready()
    job.wait_keys(total, 60.0)
    job.settle()
    assert sorted(job.seen) == list(range(total))  # every job at least once
    duplicates = sum(c - 1 for c in job.seen.values())
    assert duplicates <= 8  # only those in flight at the kill (concurrency 4, plus slack)
    # The restarted actor's connection took the name back: no conflict, its functions live.
    assert "worker name conflict" not in q.engine.log_text()
    assert "function id conflict" not in q.engine.log_text()
    assert "engine::queue::enqueue" in function_ids(q.client)
