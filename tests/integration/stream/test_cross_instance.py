"""Two ``iii-supervisor up`` processes on one Redis (WORKERS.md §14): a change made through one
supervisor reaches the WebSocket clients of the other, in order, after their ``sync``; the
items are shared; ``stream`` triggers fire only where the write happened."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.stream.conftest import (
    ADAPTERS,
    StreamEngine,
    call,
    events_until,
    join,
    receive_json,
)
from tests.support import require_service, wait_for

pytestmark = pytest.mark.redis


def real(fired: list[Any]) -> list[Any]:
    """The trigger's events without the probes that waited for it to be bound."""
    return [f for f in fired if f["groupId"] != "probe"]


def test_a_change_through_one_supervisor_reaches_clients_of_the_other(
    stream_engine: Callable[..., StreamEngine],
) -> None:
    require_service("redis", 6379)
    a = stream_engine(adapter=ADAPTERS["redis"])
    b = stream_engine(adapter=ADAPTERS["redis"])
    s = f"x-{uuid.uuid4().hex[:10]}"
    item = {"stream_name": s, "group_id": "room", "item_id": "m1"}
    call(a.client, "stream::set", {**item, "item_id": "m0", "data": "before"})

    fired: list[Any] = []
    b.client.register_function("test::on_b", lambda data: fired.append(data))
    b.client.register_trigger(
        {"type": "stream", "function_id": "test::on_b", "config": {"stream_name": s}}
    )
    probe = {"stream_name": s, "group_id": "probe", "type": "probe", "data": None}
    wait_for(lambda: call(b.client, "stream::send", probe) or fired, 10.0, interval=0.1)

    with b.ws() as on_b, a.ws() as on_a:
        join(on_b, "g", s, "room")
        assert receive_json(on_b)["event"] == {"type": "sync", "data": ["before"]}  # shared items
        join(on_a, "g", s, "room", "m1")
        assert receive_json(on_a)["event"] == {"type": "sync", "data": None}

        call(a.client, "stream::set", {**item, "data": {"v": 1}})
        call(
            a.client,
            "stream::update",
            {**item, "ops": [{"type": "increment", "path": "v", "by": 1}]},
        )
        call(a.client, "stream::delete", item)
        expected = [
            ("m1", {"type": "create", "data": {"v": 1}}),
            ("m1", {"type": "update", "data": {"v": 2}}),
            ("m1", {"type": "delete", "data": {"v": 2}}),
        ]
        assert [(f["id"], f["event"]) for f in events_until(on_b, 3)] == expected
        assert [(f["id"], f["event"]) for f in events_until(on_a, 3)] == expected

        # And the other way round.
        call(b.client, "stream::set", {**item, "data": "from b"})
        assert receive_json(on_a)["event"] == {"type": "create", "data": "from b"}
        assert receive_json(on_b)["event"] == {"type": "create", "data": "from b"}
        wait_for(lambda: real(fired))

    # b's trigger saw b's own write only: a's three changes fired on a (§14).
    assert [f["event"] for f in real(fired)] == [{"type": "create", "data": "from b"}]
    assert call(b.client, "stream::get", item) == "from b"
