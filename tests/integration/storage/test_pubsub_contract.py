"""The ``PubSub`` contract for the local and Redis adapters, plus Redis cross-instance delivery.

Redis topics carry a per-test prefix so parallel runs never see each other's messages.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from storage import InMemory, PubSub, RedisServer, StorageClosedError, open_pubsub

Opener = Callable[[], AbstractAsyncContextManager[PubSub]]


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def opener(request: pytest.FixtureRequest) -> Opener:
    if request.param == "local":
        return lambda: open_pubsub(InMemory())
    url = request.getfixturevalue("redis_url")
    return lambda: open_pubsub(RedisServer(url))


@pytest.fixture
async def pubsub(opener: Opener) -> AsyncIterator[PubSub]:
    async with opener() as instance:
        yield instance


@pytest.fixture
def topic() -> str:
    return f"iii-test-{uuid.uuid4().hex[:12]}"


async def receive(subscription: Any) -> Any:
    with trio.fail_after(2):
        return await subscription.receive()


async def nothing_arrives(subscription: Any, wait: float = 0.1) -> bool:
    with trio.move_on_after(wait):
        await subscription.receive()
        return False
    return True


async def test_is_a_pubsub(pubsub: PubSub) -> None:
    assert isinstance(pubsub, PubSub)


async def test_two_subscribers_both_receive_in_order(pubsub: PubSub, topic: str) -> None:
    async with pubsub.subscribe(topic) as first, pubsub.subscribe(topic) as second:
        for value in ({"n": 1}, [1, "two"], "three", 4, None):
            await pubsub.publish(topic, value)
        for subscription in (first, second):
            assert [await receive(subscription) for _ in range(5)] == [
                {"n": 1},
                [1, "two"],
                "three",
                4,
                None,
            ]


async def test_closing_one_subscription_keeps_the_others(pubsub: PubSub, topic: str) -> None:
    async with pubsub.subscribe(topic) as keeper:
        async with pubsub.subscribe(topic) as leaver:
            await pubsub.publish(topic, 1)
            assert await receive(leaver) == 1
            assert await receive(keeper) == 1
        await pubsub.publish(topic, 2)
        assert await receive(keeper) == 2


async def test_resubscribe_after_everyone_left(pubsub: PubSub, topic: str) -> None:
    async with pubsub.subscribe(topic) as subscription:
        await pubsub.publish(topic, "a")
        assert await receive(subscription) == "a"
    await pubsub.publish(topic, "lost")  # nobody listens: dropped, never an error
    async with pubsub.subscribe(topic) as subscription:
        await pubsub.publish(topic, "b")
        assert await receive(subscription) == "b"
        assert await nothing_arrives(subscription)


async def test_topics_are_isolated(pubsub: PubSub, topic: str) -> None:
    async with pubsub.subscribe(topic + ".a") as a, pubsub.subscribe(topic + ".b") as b:
        await pubsub.publish(topic + ".a", "for a")
        assert await receive(a) == "for a"
        assert await nothing_arrives(b)


async def test_async_iteration(pubsub: PubSub, topic: str) -> None:
    got: list[Any] = []
    async with pubsub.subscribe(topic) as subscription:
        for i in range(3):
            await pubsub.publish(topic, i)
        with trio.fail_after(2):
            async for data in subscription:
                got.append(data)
                if len(got) == 3:
                    break
    assert got == [0, 1, 2]


async def test_full_subscriber_drops_with_a_warning_and_never_blocks(
    pubsub: PubSub, topic: str
) -> None:
    async with pubsub.subscribe(topic, buffer=2) as slow, pubsub.subscribe(topic) as fast:
        with capture_logs() as logs:
            with trio.fail_after(2):
                for i in range(5):
                    await pubsub.publish(topic, i)
                assert [await receive(fast) for _ in range(5)] == [0, 1, 2, 3, 4]
        assert [await receive(slow) for _ in range(2)] == [0, 1]
        assert await nothing_arrives(slow)
    dropped = [e for e in logs if e["event"] == "pubsub.subscriber_full_message_dropped"]
    assert len(dropped) == 3
    assert all(e["log_level"] == "warning" for e in dropped)


async def test_aclose_ends_subscriptions(opener: Opener, topic: str) -> None:
    async with opener() as pubsub:
        async with pubsub.subscribe(topic) as subscription:
            await pubsub.aclose()
            with trio.fail_after(2):
                assert [data async for data in subscription] == []
        with pytest.raises(StorageClosedError):
            await pubsub.publish(topic, 1)


async def test_many_subscribers_fan_out(pubsub: PubSub, topic: str) -> None:
    results: dict[int, list[Any]] = {}

    async def listen(index: int, task_status: trio.TaskStatus[None]) -> None:
        async with pubsub.subscribe(topic) as subscription:
            task_status.started()
            results[index] = [await receive(subscription) for _ in range(3)]

    async with trio.open_nursery() as nursery:
        for index in range(10):
            await nursery.start(listen, index)
        for value in ("x", "y", "z"):
            await pubsub.publish(topic, value)
    assert results == {index: ["x", "y", "z"] for index in range(10)}


@pytest.mark.redis
async def test_redis_reaches_subscribers_on_another_instance(redis_url: str, topic: str) -> None:
    config = RedisServer(redis_url)
    async with open_pubsub(config) as publisher, open_pubsub(config) as listener:
        async with listener.subscribe(topic) as remote, publisher.subscribe(topic) as local:
            await publisher.publish(topic, {"from": "publisher"})
            assert await receive(remote) == {"from": "publisher"}
            assert await receive(local) == {"from": "publisher"}
            await listener.publish(topic, "back")
            assert await receive(local) == "back"
            assert await receive(remote) == "back"


async def test_redis_unreachable_fails_fast() -> None:
    with trio.fail_after(10), pytest.raises(Exception, match="Redis connection timed out"):
        async with open_pubsub(RedisServer("redis://127.0.0.1:1")):
            pass


@pytest.mark.redis
async def test_redis_listener_survives_a_dropped_connection(redis_url: str, topic: str) -> None:
    import redis

    from storage.redis_pubsub import RedisPubSub

    config = RedisServer(redis_url)
    async with open_pubsub(config) as pubsub:
        assert isinstance(pubsub, RedisPubSub)
        async with pubsub.subscribe(topic) as subscription:
            await pubsub.publish(topic, "before")
            assert await receive(subscription) == "before"
            admin = redis.Redis.from_url(redis_url, socket_timeout=5)
            try:
                mine = [
                    c["id"]
                    for c in admin.client_list(_type="pubsub")
                    if c.get("name") == pubsub.client_name
                ]
                assert mine
                for client_id in mine:
                    admin.client_kill_filter(_id=client_id)
                # Publish until the listener has reconnected and re-subscribed.
                with trio.fail_after(10):
                    while True:
                        await pubsub.publish(topic, "after")
                        if not await nothing_arrives(subscription, 0.1):
                            break
            finally:
                admin.close()
            await pubsub.publish(topic, "steady")
            with trio.fail_after(2):
                while (got := await receive(subscription)) != "steady":
                    assert got == "after"
