"""iii-queue on the real RabbitMQ at 127.0.0.1:5672 (WORKERS.md §7.9), in a vhost of its own
so leftovers of one run never reach another: 1,000 jobs each processed once, retries, the DLQ
and redrive of a middle message, quorum queues, a broker restart under load
(``rabbitmqctl stop_app`` / ``start_app``, restored in a ``finally``) and a SIGKILL of the
queue actor mid-stream, each losing no job."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pytest
from iii import InvocationError

from tests.integration.queue.conftest import (
    QueueDeployment,
    Recorder,
    call,
    enqueue,
    rabbit_block,
    rabbitmqctl,
)
from tests.support import port_open, wait_for

pytestmark = pytest.mark.rabbitmq


def qname() -> str:
    return f"q{uuid.uuid4().hex[:8]}"


def test_a_thousand_jobs_are_each_processed_exactly_once(
    vhost: str, queue_engine: Callable[..., QueueDeployment]
) -> None:
    name = qname()
    q = queue_engine(rabbit_block(vhost, {name: {"concurrency": 10}}))
    job = Recorder()
    q.register("test::rjob", job)
    for n in range(1000):
        enqueue(q.client, "test::rjob", {"n": n}, queue=name)
    job.wait_keys(1000, 60.0)
    assert job.settle() == 1000
    assert sorted(job.seen) == list(range(1000)) and set(job.seen.values()) == {1}
    stats = call(q.client, "engine::queue::topic_stats", {"queue": name})
    assert stats["depth"] == 0 and stats["dlq_depth"] == 0


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_retry_then_success_and_the_dlq_with_redrive_of_a_middle_message(
    vhost: str, queue_engine: Callable[..., QueueDeployment], queue_type: str
) -> None:
    name = qname()
    q = queue_engine(
        rabbit_block(vhost, {name: {"max_retries": 3, "backoff_ms": 100}}, queue_type=queue_type)
    )
    healed: set[int] = {100}
    times: dict[int, list[float]] = {}

    def fail(data: Any, attempt: int) -> bool:
        times.setdefault(data["n"], []).append(time.monotonic())
        if data["n"] == 100:
            return attempt <= 2  # fails twice, then succeeds
        return data["n"] not in healed

    job = Recorder(fail)
    q.register("test::rflaky", job)
    enqueue(q.client, "test::rflaky", {"n": 100}, queue=name)
    receipts = [
        enqueue(q.client, "test::rflaky", {"n": n}, queue=name)["messageReceiptId"]
        for n in range(5)
    ]
    wait_for(lambda: job.seen[100] == 3, 20.0)
    gaps = [b - a for a, b in zip(times[100], times[100][1:], strict=False)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # 100 ms, then 200 ms (exponential)

    def dead() -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = call(
            q.client, "engine::queue::dlq_messages", {"queue": name}
        )
        return result

    wait_for(lambda: len(dead()) == 5, 20.0)
    assert all(job.seen[n] == 3 for n in range(5))  # max_retries 3: three attempts each
    listed = dead()
    assert {m["id"] for m in listed} == set(receipts)
    assert all(m["retries"] == 3 and "failing" in m["error"] for m in listed)
    middle = receipts[2]
    healed.add(2)
    result = call(q.client, "iii::queue::redrive_message", {"queue": name, "message_id": middle})
    assert result["redriven"] == 1
    wait_for(lambda: job.seen[2] == 4, 10.0)
    wait_for(lambda: {m["id"] for m in dead()} == set(receipts) - {middle}, 10.0)
    gone = call(q.client, "iii::queue::discard_message", {"queue": name, "message_id": receipts[0]})
    assert gone["redriven"] == 1
    healed.update(range(5))
    assert call(q.client, "iii::queue::redrive", {"queue": name})["redriven"] == 3
    wait_for(lambda: all(job.seen[n] == 4 for n in (1, 3, 4)), 10.0)
    assert dead() == [] and job.seen[0] == 3


def test_durable_topic_on_rabbitmq_reaches_each_subscriber(
    vhost: str, queue_engine: Callable[..., QueueDeployment]
) -> None:
    q = queue_engine(rabbit_block(vhost, {}))
    topic = f"t{uuid.uuid4().hex[:8]}"
    first, second = Recorder(), Recorder()
    q.register("test::rfirst", first)
    q.register("test::rsecond", second)
    for fid in ("test::rfirst", "test::rsecond"):
        q.client.register_trigger(
            {"type": "durable:subscriber", "function_id": fid, "config": {"topic": topic}}
        )
    wait_for(
        lambda: any(
            t["name"] == topic and t["subscriber_count"] == 2
            for t in call(q.client, "engine::queue::list_topics", {})
        ),
        10.0,
    )
    for n in range(20):
        call(q.client, "iii::durable::publish", {"topic": topic, "data": {"n": n}})
    first.wait_keys(20)
    second.wait_keys(20)
    assert first.settle() == 20 and second.settle() == 20


def test_a_queue_deleted_behind_the_adapter_fails_only_the_calls_that_name_it(
    vhost: str, queue_engine: Callable[..., QueueDeployment]
) -> None:
    """RabbitMQ closes the channel of a passive declare or a basic.get on a missing queue
    (404): those calls fail with that error, and the adapter (its thread) carries on."""
    name, other = qname(), qname()
    q = queue_engine(rabbit_block(vhost, {name: {}, other: {}}))
    job = Recorder()
    q.register("test::rafter", job)
    rabbitmqctl("-p", vhost, "delete_queue", f"iii.__fn_queue::{name}.dlq")
    for function_id in ("engine::queue::topic_stats", "engine::queue::dlq_messages"):
        with pytest.raises(InvocationError) as err:
            call(q.client, function_id, {"queue": name})
        assert "NOT_FOUND" in err.value.message and f"{name}.dlq" in err.value.message
    stats = call(q.client, "engine::queue::topic_stats", {"queue": other})
    assert stats["depth"] == 0 and stats["dlq_depth"] == 0
    for n, queue in enumerate((name, other)):
        enqueue(q.client, "test::rafter", {"n": n}, queue=queue)
    job.wait_keys(2, 20.0)
    assert call(q.client, "engine::queue::dlq_messages", {"queue": other}) == []


def test_a_consumed_queue_deleted_behind_the_adapter_is_declared_and_consumed_again(
    vhost: str, queue_engine: Callable[..., QueueDeployment]
) -> None:
    """RabbitMQ cancels the consumers of a deleted queue: the adapter declares the queue again
    and consumes again, so jobs enqueued afterwards are processed."""
    name = qname()
    q = queue_engine(rabbit_block(vhost, {name: {}}))
    job = Recorder()
    q.register("test::ragain", job)
    enqueue(q.client, "test::ragain", {"n": 0}, queue=name)
    job.wait_keys(1, 20.0)
    rabbitmqctl("-p", vhost, "delete_queue", f"iii.__fn_queue::{name}.queue")
    wait_for(lambda: "rabbitmq cancelled a consumer" in q.engine.log_text(), 20.0)
    for n in range(1, 4):
        enqueue(q.client, "test::ragain", {"n": n}, queue=name)
    job.wait_keys(4, 20.0)
    assert sorted(job.seen) == [0, 1, 2, 3]
    log = q.engine.log_text()  # recovered by itself, not by a reconnect after an error
    assert "rabbitmq adapter thread error" not in log and "reconnecting" not in log


@pytest.mark.serial  # it restarts the shared broker: nothing else may use it meanwhile
def test_a_broker_restart_under_load_loses_no_job(
    vhost: str, queue_engine: Callable[..., QueueDeployment]
) -> None:
    name = qname()
    q = queue_engine(rabbit_block(vhost, {name: {"concurrency": 5, "backoff_ms": 100}}))

    def slow(data: Any, attempt: int) -> bool:
        time.sleep(0.005)
        return False

    job = Recorder(slow)
    q.register("test::rslow", job)
    acknowledged: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set() and n < 3000:
            try:
                enqueue(q.client, "test::rslow", {"n": n}, queue=name)
                acknowledged.append(n)
            except Exception:  # the broker is down: not acknowledged, so not counted
                time.sleep(0.05)
            n += 1

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_for(lambda: len(job.seen) >= 200, 30.0)
        rabbitmqctl("stop_app")
        time.sleep(2.0)
    finally:
        rabbitmqctl("start_app")
        wait_for(lambda: port_open(5672), 60.0)
    time.sleep(3.0)
    stop.set()
    producer.join(60)
    assert len(acknowledged) > 200
    missing = lambda: set(acknowledged) - set(job.seen)  # noqa: E731
    wait_for(lambda: not missing(), 90.0, interval=0.2)
    assert "rabbitmq connection lost; reconnecting" in q.engine.log_text()


def test_sigkill_of_the_actor_mid_stream_loses_no_job_on_rabbitmq(
    vhost: str, queue_engine: Callable[..., QueueDeployment]
) -> None:
    """Unacknowledged deliveries of a killed consumer go back to the queue (manual acks)."""
    import os
    import signal

    total = 400
    name = qname()
    q = queue_engine(
        rabbit_block(vhost, {name: {"concurrency": 4}}),
        supervise={"backoff": {"initial": "200ms"}},
    )
    gate = threading.Event()

    def slow(data: Any, attempt: int) -> bool:
        gate.wait(30.0)
        time.sleep(0.01)
        return False

    job = Recorder(slow)
    q.register("test::rslow", job)
    for n in range(total):  # all confirmed by the broker before any finishes
        enqueue(q.client, "test::rslow", {"n": n}, queue=name)
    gate.set()
    wait_for(lambda: len(job.seen) >= total // 4, 30.0, interval=0.01)
    first_pid = q.actor_pid()
    os.kill(first_pid, signal.SIGKILL)
    assert len(job.seen) < total
    wait_for(lambda: q.actor_pid() != first_pid, 20.0)
    q.wait_ready()
    job.wait_keys(total, 60.0)
    job.settle()
    assert sorted(job.seen) == list(range(total))  # every job at least once
    assert sum(c - 1 for c in job.seen.values()) <= 8  # only those in flight at the kill


def test_classic_queues_are_version_2_and_a_version_1_queue_is_kept(
    vhost: str, queue_engine: Callable[..., QueueDeployment]
) -> None:
    """New classic queues are declared with ``x-queue-version: 2``; a main queue that exists as
    version 1 (an older release declared it) is declared as that and works as before."""
    old, new = qname(), qname()
    conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@127.0.0.1:5672/{vhost}"))
    try:
        conn.channel().queue_declare(f"iii.__fn_queue::{old}.queue", durable=True)
    finally:
        conn.close()
    q = queue_engine(rabbit_block(vhost, {old: {"concurrency": 4}, new: {"concurrency": 4}}))
    job = Recorder()
    q.register("test::rversion", job)
    for n in range(20):
        enqueue(q.client, "test::rversion", {"n": n}, queue=old if n % 2 else new)
    job.wait_keys(20, 30.0)
    assert sorted(job.seen) == list(range(20))
    listed = rabbitmqctl(
        "-q", "list_queues", "-p", vhost, "--no-table-headers", "name", "arguments"
    )
    args = {line.split("\t")[0]: line.split("\t", 1)[1] for line in listed.splitlines() if line}
    assert "x-queue-version" not in args[f"iii.__fn_queue::{old}.queue"]
    assert "x-queue-version" in args[f"iii.__fn_queue::{old}.dlq"]
    assert "x-queue-version" in args[f"iii.__fn_queue::{new}.queue"]
