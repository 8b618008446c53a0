"""The ``redis`` queue adapter as upstream's publish-only transport (WORKERS.md §7.9): it says
so at startup, a durable publish reaches the subscribers of every engine on the same Redis,
a failure is not retried, and named-queue enqueues and the DLQ functions are refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from iii import InvocationError

from storage.queue_redis import PUBLISH_ONLY_WARNING
from tests.integration.queue.conftest import QueueDeployment, Recorder, call, enqueue
from tests.support import require_service, wait_for

pytestmark = pytest.mark.redis

REDIS = {"adapter": {"name": "redis", "config": {"redis_url": "redis://127.0.0.1:6379"}}}


def subscribe(q: QueueDeployment, topic: str, fid: str, recorder: Recorder) -> None:
    q.register(fid, recorder)
    q.client.register_trigger(
        {"type": "durable:subscriber", "function_id": fid, "config": {"topic": topic}}
    )


def test_publish_only_across_engines_and_no_queue_or_dlq(
    queue_engine: Callable[..., QueueDeployment],
) -> None:
    require_service("redis", 6379)
    a, b = queue_engine(REDIS), queue_engine(REDIS)
    assert (
        "PUBLISH-ONLY" in a.engine.log_text() and PUBLISH_ONLY_WARNING[:40] in a.engine.log_text()
    )
    topic = f"t{uuid.uuid4().hex[:8]}"
    on_a, on_b = Recorder(), Recorder(lambda data, attempt: data["n"] == 0)
    subscribe(a, topic, "test::on_a", on_a)
    subscribe(b, topic, "test::on_b", on_b)

    def probe() -> bool:
        call(a.client, "iii::durable::publish", {"topic": topic, "data": {"n": -1}})
        return bool(on_a.seen and on_b.seen)

    wait_for(probe, 15.0, interval=0.2)
    for n in range(5):
        call(a.client, "iii::durable::publish", {"topic": topic, "data": {"n": n}})
    wait_for(lambda: all(n in on_a.seen and n in on_b.seen for n in range(5)), 10.0)
    on_b.settle()
    assert on_b.seen[0] == 1  # failed once, never retried

    with pytest.raises(InvocationError) as err:
        enqueue(a.client, "test::on_a", {"n": 1})
    assert err.value.code == "enqueue_error" and "publish-only" in err.value.message
    with pytest.raises(InvocationError) as err:
        call(a.client, "engine::queue::dlq_messages", {"topic": topic})
    assert "does not support DLQ operations (pub/sub only)" in err.value.message
