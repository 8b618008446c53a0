"""Through an SDK worker, on the builtin broker: a queue's concurrency limit is never exceeded
(measured by the handler itself), and a FIFO queue keeps each message group in order while
groups run side by side."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from tests.integration.queue.conftest import QueueDeployment, enqueue
from tests.support import wait_for


def memory_block(**queues: dict[str, Any]) -> dict[str, Any]:
    return {
        "adapter": {"name": "builtin", "config": {"store_method": "in_memory"}},
        "queue_configs": queues,
    }


def test_the_concurrency_limit_is_never_exceeded(
    queue_engine: Callable[..., QueueDeployment],
) -> None:
    q = queue_engine(memory_block(limited={"concurrency": 3}))
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
    queue_engine: Callable[..., QueueDeployment],
) -> None:
    q = queue_engine(
        memory_block(ordered={"type": "fifo", "message_group_field": "group", "concurrency": 4})
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
