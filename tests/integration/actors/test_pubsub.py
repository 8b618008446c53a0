"""iii-pubsub through the official SDK (WORKERS.md §9, PROTOCOL.md §18.2): every binding of a
topic gets each published ``data`` once, unsubscribing one binding leaves the others (§16 items
9, 10), and with Redis a publish on one engine reaches subscribers on another (§14)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from iii import InvocationError

from tests.integration.actors.conftest import Deployment, Inbox, call, strip_caller
from tests.support import require_service, wait_for

REDIS = {"adapter": {"name": "redis", "config": {"redis_url": "redis://127.0.0.1:6379"}}}
ADAPTERS: dict[str, dict[str, Any] | None] = {"local": None, "redis": REDIS}


@pytest.fixture(params=list(ADAPTERS))
def pubsub(request: pytest.FixtureRequest, deploy: Callable[..., Deployment]) -> Deployment:
    if request.param == "redis":
        require_service("redis", 6379)
    return deploy({"iii-pubsub": ADAPTERS[request.param]})


def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def subscribe(d: Deployment, topic: str, name: str, inbox: Inbox) -> Any:
    d.client.register_function(name, inbox)
    return d.client.register_trigger(
        {"type": "subscribe", "function_id": name, "config": {"topic": topic}, "metadata": {"x": 1}}
    )


def wait_subscribed(publisher: Deployment, topic: str, *inboxes: Inbox) -> None:
    """Publish probes until every inbox got one (bindings are live), then drain."""

    def probe() -> bool:
        call(publisher.client, "publish", {"topic": topic, "data": "probe"})
        return all(inbox.settle(0.1) for inbox in inboxes)

    wait_for(probe, 15.0, interval=0.0)
    for inbox in inboxes:
        inbox.settle()
        inbox.items.clear()


def test_two_subscribers_both_receive_and_unsubscribing_one_keeps_the_other(
    pubsub: Deployment,
) -> None:
    topic = topic_name()
    first, second = Inbox(), Inbox()
    sub1 = subscribe(pubsub, topic, "test::first", first)
    subscribe(pubsub, topic, "test::second", second)
    wait_subscribed(pubsub, topic, first, second)

    for data in ([1, 2, 3], "text", 42, None, {"order": 7}):
        assert call(pubsub.client, "publish", {"topic": topic, "data": data}) is None
    expected = [[1, 2, 3], "text", 42, None, {"order": 7}]
    for inbox in (first, second):
        inbox.wait(5)
        got = inbox.settle()
        assert len(got) == 5  # once per publish
        # Non-object data arrives exactly as published; objects carry the engine's caller key.
        assert sorted(map(repr, map(strip_caller, got))) == sorted(map(repr, expected))
        scalars = [g for g in got if not isinstance(g, dict)]
        assert sorted(map(repr, scalars)) == sorted(map(repr, [[1, 2, 3], "text", 42, None]))

    sub1.unregister()
    first.items.clear()
    second.items.clear()

    def only_second_receives() -> bool:
        first.items.clear()
        call(pubsub.client, "publish", {"topic": topic, "data": "after"})
        return bool(second.settle(0.1)) and not first.items

    wait_for(only_second_receives, 10.0, interval=0.0)
    call(pubsub.client, "publish", {"topic": topic, "data": "last"})
    wait_for(lambda: "last" in second.items)
    assert first.settle() == []


def test_publish_errors_and_topics_without_subscribers(pubsub: Deployment) -> None:
    with pytest.raises(InvocationError) as err:
        call(pubsub.client, "publish", {"topic": "", "data": 1})
    assert (err.value.code, err.value.message) == ("topic_not_set", "Topic is not set")
    with pytest.raises(InvocationError) as err:
        call(pubsub.client, "publish", {"data": 1})
    assert err.value.code == "deserialization_error"
    assert call(pubsub.client, "publish", {"topic": topic_name(), "data": 1}) is None


def test_subscribe_without_topic_registers_but_receives_nothing(pubsub: Deployment) -> None:
    inbox = Inbox()
    pubsub.client.register_function("test::no_topic", inbox)
    pubsub.client.register_trigger(
        {"type": "subscribe", "function_id": "test::no_topic", "config": {}}
    )
    call(pubsub.client, "publish", {"topic": "anything", "data": 1})
    assert inbox.settle() == []
    assert "subscribe trigger without a topic" in pubsub.actors["iii-pubsub"].log_text()


def test_redis_publish_on_one_engine_reaches_subscribers_on_another(
    deploy: Callable[..., Deployment],
) -> None:
    require_service("redis", 6379)
    a = deploy({"iii-pubsub": REDIS})
    b = deploy({"iii-pubsub": REDIS})
    topic = topic_name()
    on_a, on_b1, on_b2 = Inbox(), Inbox(), Inbox()
    subscribe(a, topic, "test::on_a", on_a)
    subscribe(b, topic, "test::on_b1", on_b1)
    subscribe(b, topic, "test::on_b2", on_b2)
    wait_subscribed(a, topic, on_a, on_b1, on_b2)

    call(a.client, "publish", {"topic": topic, "data": ["from", "a"]})
    call(b.client, "publish", {"topic": topic, "data": ["from", "b"]})
    for inbox in (on_a, on_b1, on_b2):
        inbox.wait(2)
        assert sorted(inbox.settle()) == [["from", "a"], ["from", "b"]]  # each exactly once
