"""Through an SDK worker, on every adapter that consumes (builtin in memory, builtin file-based,
RabbitMQ): a queue's concurrency limit is never exceeded (measured by the handler itself), and a
FIFO queue keeps each message group in order. The builtin broker runs groups side by side; a
RabbitMQ FIFO queue is consumed one message at a time (prefetch 1, as upstream), which keeps
every group's order too."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.queue.conftest import QueueDeployment, enqueue, rabbit_block
from tests.support import wait_for

Blocks = Callable[..., dict[str, Any]]


def builtin_block(store: dict[str, Any], queues: dict[str, Any]) -> dict[str, Any]:
    return {"adapter": {"name": "builtin", "config": store}, "queue_configs": queues}


@pytest.fixture(
    params=["in_memory", "file_based", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)]
)
def block_of(request: pytest.FixtureRequest, tmp_path: Path) -> Blocks:
    """``block_of(name={...queue settings...})`` → an iii-queue block on the adapter under test.
    Ask for it before ``queue_engine``: RabbitMQ's vhost then outlives the engine."""
    if request.param == "rabbitmq":
        vhost: str = request.getfixturevalue("vhost")
        return lambda **queues: rabbit_block(vhost, queues)
    if request.param == "file_based":
        store = {"store_method": "file_based", "file_path": str(tmp_path / "queue-data")}
    else:
        store = {"store_method": "in_memory"}
    return lambda **queues: builtin_block(store, queues)


def test_the_concurrency_limit_is_never_exceeded(
    block_of: Blocks, queue_engine: Callable[..., QueueDeployment]
) -> None:
    q = queue_engine(block_of(limited={"concurrency": 3}))
    lock = threading.Lock()
    active = 0
    peak = 0
    done: list[int] = []

    def handler(data: Any) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
            done.append(data["n"])
        return None

    q.register("test::limited", handler)
    for n in range(30):
        enqueue(q.client, "test::limited", {"n": n}, queue="limited")
    wait_for(lambda: len(done) == 30, 30.0)
    assert sorted(done) == list(range(30))
    assert peak <= 3, f"{peak} jobs ran at once on a queue limited to 3"
    assert peak >= 2, f"jobs never overlapped (peak {peak}): the limit was not what bounded them"


def test_a_fifo_queue_keeps_each_group_in_order(
    block_of: Blocks, queue_engine: Callable[..., QueueDeployment]
) -> None:
    q = queue_engine(
        block_of(ordered={"type": "fifo", "message_group_field": "group", "concurrency": 4})
    )
    lock = threading.Lock()
    order: dict[str, list[int]] = defaultdict(list)

    def handler(data: Any) -> Any:
        time.sleep(0.01 if data["n"] % 3 else 0.03)  # uneven work: a later job could overtake
        with lock:
            order[data["group"]].append(data["n"])
        return None

    q.register("test::ordered", handler)
    for n in range(40):
        enqueue(q.client, "test::ordered", {"group": "ab"[n % 2], "n": n}, queue="ordered")
    wait_for(lambda: sum(len(v) for v in order.values()) == 40, 30.0)
    assert order["a"] == list(range(0, 40, 2))
    assert order["b"] == list(range(1, 40, 2))
