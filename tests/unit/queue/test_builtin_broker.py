"""The builtin broker's trio edge on virtual time (MockClock), and its journal on disk: restore
after a restart (in-flight jobs redelivered), a torn tail, compaction, the block's rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from actors.queue.config import named_queue_spec, parse_config, subscriber_settings
from manifests.blocks.strict import BlockError
from storage.queue_broker import Delivery, Message, QueueNotFoundError, QueueSpec
from storage.queue_core import QueueSettings
from storage.queue_file import JOURNAL_MAGIC, open_file_broker
from storage.queue_memory import BuiltinBroker, open_builtin_broker


async def next_delivery(broker: BuiltinBroker, timeout: float = 5.0) -> Delivery:
    with trio.fail_after(timeout):
        return await broker.deliveries.receive()


async def test_the_pump_waits_out_the_backoff_on_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = BuiltinBroker(clock=trio.current_time)
    async with open_builtin_broker(broker):
        await broker.declare(QueueSpec("q", QueueSettings(max_attempts=3, backoff_ms=60_000)))
        await broker.enqueue("q", Message("m1", {"x": 1}, function_id="f"))
        first = await next_delivery(broker)
        assert (first.id, first.attempt, first.function_id) == ("m1", 1, "f")
        failed_at = trio.current_time()
        await broker.fail(first, "boom")
        second = await next_delivery(broker, timeout=120)
        assert second.attempt == 2 and trio.current_time() - failed_at == pytest.approx(60)
        await broker.fail(second, "boom")
        third = await next_delivery(broker, timeout=300)
        assert trio.current_time() - failed_at == pytest.approx(180)  # 60 s, then 120 s
        await broker.fail(third, "last")
        dead = await broker.dead_messages("q", 0, 10)
        assert [(d.id, d.attempts, d.error) for d in dead] == [("m1", 3, "last")]
        with pytest.raises(QueueNotFoundError):
            await broker.enqueue("nope", Message("m2", 1))


async def test_a_job_failing_twice_then_succeeding_is_retried_after_each_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = BuiltinBroker(clock=trio.current_time)
    async with open_builtin_broker(broker):
        await broker.declare(QueueSpec("q", QueueSettings(max_attempts=5, backoff_ms=1_000)))
        await broker.enqueue("q", Message("m1", {"x": 1}, function_id="f"))
        delivered_at = []
        delivery = await next_delivery(broker)
        for _ in range(2):
            delivered_at.append(trio.current_time())
            await broker.fail(delivery, "boom")
            delivery = await next_delivery(broker, timeout=60)
        delivered_at.append(trio.current_time())
        assert delivery.attempt == 3
        await broker.ack(delivery)
        gaps = [b - a for a, b in zip(delivered_at, delivered_at[1:], strict=False)]
        assert gaps == [pytest.approx(1.0), pytest.approx(2.0)]  # 1 s, then 2 s (exponential)
        with trio.move_on_after(3_600):
            await broker.deliveries.receive()
            pytest.fail("an acked job was delivered again")
        assert await broker.dead_messages("q", 0, 10) == []
        counts = await broker.counts("q")
        assert (counts.waiting, counts.active, counts.delayed, counts.dead) == (0, 0, 0, 0)


async def test_concurrency_caps_what_the_pump_hands_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = BuiltinBroker(clock=trio.current_time)
    async with open_builtin_broker(broker):
        await broker.declare(QueueSpec("q", QueueSettings(concurrency=2)))
        for i in range(5):
            await broker.enqueue("q", Message(str(i), i))
        got = [await next_delivery(broker), await next_delivery(broker)]
        with trio.move_on_after(10):
            await broker.deliveries.receive()
            pytest.fail("a third delivery beyond concurrency 2")
        await broker.ack(got[0])
        assert (await next_delivery(broker)).id == "2"


async def test_publish_copies_to_every_subscriber_queue_of_the_topic() -> None:
    broker = BuiltinBroker()
    async with open_builtin_broker(broker):
        for fn in ("a", "b"):
            spec = QueueSpec(f"t::{fn}@default", topic="t", function_id=fn)
            await broker.declare(spec)
        assert await broker.publish("t", Message("m", {"k": 1})) == 2
        assert await broker.publish("other", Message("m2", 1)) == 0
        got = {(await next_delivery(broker)).queue for _ in range(2)}
        assert got == {"t::a@default", "t::b@default"}


async def test_the_journal_restores_jobs_and_redelivers_those_in_flight(tmp_path: Path) -> None:
    spec = QueueSpec("q", QueueSettings(max_attempts=1, concurrency=1))
    async with open_file_broker(tmp_path, fsync="always") as broker:
        await broker.declare(spec)
        for i in range(4):
            await broker.enqueue("q", Message(str(i), {"n": i}, function_id="f"))
        done = await next_delivery(broker)
        await broker.ack(done)  # 0 is done
        dead = await next_delivery(broker)
        await broker.fail(dead, "bad")  # 1 is dead
        in_flight = await next_delivery(broker)  # 2 is in flight when we "die"
        assert in_flight.id == "2"
        await broker.declare(QueueSpec("t::f@default", topic="t", function_id="f"), consume=False)
    async with open_file_broker(tmp_path) as broker:
        assert broker.topics() == {"t": ["t::f@default"]}
        await broker.declare(spec)
        assert [(await next_delivery(broker)).id for _ in range(1)] == ["2"]
        assert [d.id for d in await broker.dead_messages("q", 0, 10)] == ["1"]
        assert await broker.redrive("q", "1") == 1
    async with open_file_broker(tmp_path) as broker:
        await broker.declare(QueueSpec("q", QueueSettings(concurrency=5)))
        ids = sorted([(await next_delivery(broker)).id for _ in range(3)])
        assert ids == ["1", "2", "3"]  # the redrive and the never-acked job survive


async def test_enqueue_nowait_calls_back_once_stored_at_once_in_memory() -> None:
    broker = BuiltinBroker()
    calls: list[object] = []
    async with open_builtin_broker(broker):
        await broker.declare(QueueSpec("q"))
        broker.enqueue_nowait("q", Message("m", 1), calls.append)
        assert calls == [None]  # no journal: stored already
        assert (await next_delivery(broker)).id == "m"
        with pytest.raises(QueueNotFoundError):
            broker.enqueue_nowait("nope", Message("m2", 1), calls.append)
        assert calls == [None]


async def test_enqueue_nowait_on_disk_calls_back_only_once_the_record_is_written(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "queue.journal"
    seen_on_disk: list[bool] = []
    all_three = trio.Event()
    async with open_file_broker(tmp_path, fsync="always") as broker:
        await broker.declare(QueueSpec("q", QueueSettings(concurrency=1)))
        size = journal.stat().st_size

        def stored(error: object) -> None:
            assert error is None
            seen_on_disk.append(journal.stat().st_size > size)
            if len(seen_on_disk) == 3:
                all_three.set()

        for i in range(3):
            broker.enqueue_nowait("q", Message(f"j{i}", {"n": i}), stored)
        assert seen_on_disk == []  # noted, not yet written: nobody is answered
        with trio.fail_after(5):
            await all_three.wait()
        assert seen_on_disk == [True, True, True]
        broker.enqueue_nowait("q", Message("j0", {"n": 0}), stored)  # known id: stored already
        assert len(seen_on_disk) == 4
    async with open_file_broker(tmp_path) as broker:
        await broker.declare(QueueSpec("q", QueueSettings(concurrency=5)))
        assert sorted([(await next_delivery(broker)).id for _ in range(3)]) == ["j0", "j1", "j2"]


async def test_a_torn_tail_is_dropped_and_the_journal_compacted(tmp_path: Path) -> None:
    async with open_file_broker(tmp_path) as broker:
        await broker.declare(QueueSpec("q"))
        await broker.enqueue("q", Message("keep", 1))
    journal = tmp_path / "queue.journal"
    journal.write_bytes(journal.read_bytes() + b"\x10\x00\x00\x00garbage")
    async with open_file_broker(tmp_path) as broker:
        await broker.declare(QueueSpec("q"))
        assert (await next_delivery(broker)).id == "keep"
    data = journal.read_bytes()
    assert data.startswith(JOURNAL_MAGIC) and b"garbage" not in data


async def test_a_journal_of_acked_jobs_is_compacted_at_open(tmp_path: Path) -> None:
    async with open_file_broker(tmp_path) as broker:
        await broker.declare(QueueSpec("q", QueueSettings(concurrency=50)))
        for i in range(200):
            await broker.enqueue("q", Message(str(i), "x" * 100))
        for _ in range(200):
            await broker.ack(await next_delivery(broker))
    size = (tmp_path / "queue.journal").stat().st_size
    async with open_file_broker(tmp_path):
        pass
    assert (tmp_path / "queue.journal").stat().st_size < size / 10


def test_block_rules_and_the_counting_rule_mapping() -> None:
    block = parse_config(
        {"queue_configs": {"pay": {"type": "fifo", "message_group_field": "tx", "max_retries": 0}}}
    )
    assert set(block.queues()) == {"default", "pay"}
    pay = named_queue_spec("pay", block.queues()["pay"]).settings
    assert (pay.max_attempts, pay.fifo) == (1, True)  # max_retries 0: one attempt
    assert named_queue_spec("d", block.queues()["default"]).settings.max_attempts == 3
    assert subscriber_settings({"maxRetries": 0}).max_attempts == 1  # retries: N + 1 attempts
    assert subscriber_settings({"maxRetries": 4, "concurrency": "x"}).max_attempts == 5
    assert subscriber_settings({"maxRetries": "x"}, 7).max_attempts == 7  # wrong type ignored
    assert subscriber_settings({"type": "fifo", "concurrency": 9}).concurrency == 1
    for bad, text in (
        ({"queue_configs": {"p": {"type": "fifo"}}}, "'message_group_field' is not set"),
        ({"queue_configs": {"p": {"concurrency": 0}}}, "concurrency"),
        ({"queue_configs": {"p": {"type": "lifo"}}}, "type"),
        ({"adapter": {"name": "kafka"}}, "unknown adapter"),
    ):
        with pytest.raises(BlockError, match=text):
            parse_config(bad)
