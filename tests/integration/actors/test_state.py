"""iii-state through the official SDK, for each adapter: the functions' exact results
(WORKERS.md §5.2, PROTOCOL.md §18.3) and ``state`` triggers (§5.3)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from iii import InvocationError

from tests.integration.actors.conftest import ActorProcess, Deployment, Inbox, call, strip_caller
from tests.support import require_service, wait_for

ADAPTERS: dict[str, dict[str, Any]] = {
    "memory": {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}},
    "file_based": {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": "state"}}
    },
    "redis": {"adapter": {"name": "redis", "config": {"redis_url": "redis://127.0.0.1:6379"}}},
}


@pytest.fixture(params=list(ADAPTERS))
def state(request: pytest.FixtureRequest, deploy: Callable[..., Deployment]) -> Deployment:
    if request.param == "redis":
        require_service("redis", 6379)
    return deploy({"iii-state": ADAPTERS[request.param]})


def scope_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"  # Redis is shared between tests: never reuse a scope


def test_round_trip_through_sdk_worker(state: Deployment) -> None:
    c = state.client
    scope = scope_name()
    assert call(c, "state::set", {"scope": scope, "key": "a", "value": {"n": 1}}) == {
        "old_value": None,
        "new_value": {"n": 1},
    }
    assert call(c, "state::set", {"scope": scope, "key": "a", "data": {"n": 2}}) == {
        "old_value": {"n": 1},
        "new_value": {"n": 2},
    }
    assert call(c, "state::get", {"scope": scope, "key": "a"}) == {"n": 2}
    assert call(c, "state::get", {"scope": scope, "key": "missing"}) is None

    updated = call(
        c,
        "state::update",
        {
            "scope": scope,
            "key": "a",
            "ops": [
                {"type": "increment", "path": "n", "by": 5},
                {"type": "append", "path": ["audit", "events"], "value": {"at": 1}},
                {"type": "merge", "value": {"__proto__": 1}},
            ],
        },
    )
    assert updated["old_value"] == {"n": 2}
    assert updated["new_value"] == {"n": 7, "audit": {"events": [{"at": 1}]}}
    assert [(e["op_index"], e["code"]) for e in updated["errors"]] == [
        (2, "merge.value.proto_polluted")
    ]
    clean = call(
        c,
        "state::update",
        {"scope": scope, "key": "b", "ops": [{"type": "set", "path": "x", "value": 1}]},
    )
    assert clean == {"old_value": None, "new_value": {"x": 1}}  # no `errors` key when none

    assert sorted(call(c, "state::list", {"scope": scope}), key=str) == sorted(
        [{"n": 7, "audit": {"events": [{"at": 1}]}}, {"x": 1}], key=str
    )
    assert call(c, "state::list", {"scope": scope_name()}) == []
    groups = call(c, "state::list_groups", {})
    assert set(groups) == {"groups"}
    assert scope in groups["groups"]
    assert groups["groups"] == sorted(set(groups["groups"]))

    assert call(c, "state::delete", {"scope": scope, "key": "b"}) == {"x": 1}  # the bare value
    assert call(c, "state::delete", {"scope": scope, "key": "b"}) is None
    assert call(c, "state::get", {"scope": scope, "key": "b"}) is None
    call(c, "state::delete", {"scope": scope, "key": "a"})
    assert call(c, "state::list", {"scope": scope}) == []


def test_state_trigger_fires_with_old_and_new_value(state: Deployment) -> None:
    c = state.client
    scope = scope_name()
    inbox = Inbox()
    c.register_function("test::on_state", inbox)
    c.register_trigger(
        {"type": "state", "function_id": "test::on_state", "config": {"scope": scope, "key": "k"}}
    )
    wait_trigger_live(c, scope, "k", inbox)

    def expect(event_type: str, old: Any, new: Any) -> None:
        got = strip_caller(inbox.wait(1)[0])
        inbox.items.pop(0)
        assert got == {
            "type": "state",
            "event_type": event_type,
            "scope": scope,
            "key": "k",
            "old_value": old,
            "new_value": new,
        }

    call(c, "state::set", {"scope": scope, "key": "k", "value": 1})
    expect("state:created", None, 1)
    call(c, "state::set", {"scope": scope, "key": "k", "value": 1})
    expect("state:updated", 1, 1)  # updated even when the value did not change
    call(
        c,
        "state::update",
        {"scope": scope, "key": "k", "ops": [{"type": "increment", "path": "", "by": 2}]},
    )
    expect("state:updated", 1, 3)
    call(c, "state::delete", {"scope": scope, "key": "k"})
    expect("state:deleted", 3, None)
    call(c, "state::delete", {"scope": scope, "key": "k"})
    expect("state:deleted", None, None)  # fires even when nothing was deleted
    call(c, "state::update", {"scope": scope, "key": "k", "ops": []})
    expect("state:created", None, {})

    call(c, "state::set", {"scope": scope, "key": "other", "value": 1})  # filtered out
    call(c, "state::set", {"scope": scope_name(), "key": "k", "value": 1})
    assert inbox.settle() == []


def wait_trigger_live(c: Any, scope: str, key: str, inbox: Inbox) -> None:
    """Probe writes until a freshly registered trigger is bound at the actor, then drain."""

    def probe() -> bool:
        call(c, "state::set", {"scope": scope, "key": key, "value": "probe"})
        call(c, "state::delete", {"scope": scope, "key": key})
        return bool(inbox.settle(0.1))

    wait_for(probe, 10.0, interval=0.0)
    inbox.settle()
    inbox.items.clear()


def test_condition_function_filters_events(deploy: Callable[..., Deployment]) -> None:
    d = deploy({"iii-state": None})
    c = d.client
    scope = scope_name()
    condition_calls: list[tuple[Any, Any]] = []
    handled: list[tuple[Any, Any]] = []

    def condition(data: Any, metadata: Any = None) -> bool:
        condition_calls.append((strip_caller(data), metadata))
        return strip_caller(data)["key"] != "skip"

    inbox = Inbox()

    def handler(data: Any, metadata: Any = None) -> None:
        handled.append((strip_caller(data), metadata))
        inbox(data)

    c.register_function("test::cond", condition)
    c.register_function("test::handler", handler)
    c.register_trigger(
        {
            "type": "state",
            "function_id": "test::handler",
            "config": {"scope": scope, "condition_function_id": "test::cond"},
            "metadata": {"tag": "m"},
        }
    )
    wait_trigger_live(c, scope, "probe", inbox)
    handled.clear()
    condition_calls.clear()
    call(c, "state::set", {"scope": scope, "key": "skip", "value": 1})
    call(c, "state::set", {"scope": scope, "key": "keep", "value": 2})
    inbox.wait(1)
    inbox.settle()
    assert [(e["key"], e["new_value"], meta) for e, meta in handled] == [
        ("keep", 2, {"tag": "m"})  # trigger metadata reaches the handler as its sidecar
    ]
    assert sorted(e["key"] for e, _ in condition_calls) == ["keep", "skip"]
    assert all(meta is None for _, meta in condition_calls)  # ...but never the condition


def test_limits_errors_and_boot_warning(deploy: Callable[..., Deployment]) -> None:
    d = deploy({"iii-state": {"max_value_bytes": 16}})
    c = d.client
    assert call(c, "state::set", {"scope": "s", "key": "k", "value": "x" * 8})["new_value"]
    with pytest.raises(InvocationError) as err:
        call(c, "state::set", {"scope": "s", "key": "k", "value": "x" * 100})
    assert err.value.code == "VALUE_TOO_LARGE"
    assert "exceeds the configured max_value_bytes limit of 16" in err.value.message
    # state::update is not limited (§5.1)
    call(
        c,
        "state::update",
        {"scope": "s", "key": "k", "ops": [{"type": "set", "path": "", "value": "y" * 100}]},
    )

    with pytest.raises(InvocationError) as err:
        call(c, "state::set", {"scope": "s", "value": 1})
    assert err.value.code == "deserialization_error"
    assert err.value.message == "Failed to deserialize input for state::set: missing field `key`"
    with pytest.raises(InvocationError) as err:
        call(c, "state::update", {"scope": "s", "key": "k", "ops": [{"type": "explode"}]})
    assert err.value.code == "deserialization_error"

    messages = [e.get("event") for e in d.actors["iii-state"].log_events()]
    assert (
        "DO NOT USE IN_MEMORY STORE_METHOD IN PRODUCTION - DATA WILL BE LOST ON SHUTDOWN"
        in messages
    )


@pytest.mark.parametrize(
    ("name", "config", "code", "text"),
    [
        ("iii-state", {"adapter": {"name": "nope"}}, 78, "unknown adapter 'nope'"),
        ("iii-state", {"triggers_enabled": "yes"}, 78, "triggers_enabled"),
        (
            "iii-state",
            {"adapter": {"name": "redis", "config": {"redis_url": "redis://127.0.0.1:1"}}},
            69,
            "Please ensure Redis is running at: redis://127.0.0.1:1",
        ),
        ("iii-pubsub", {"adapter": {"name": "local", "config": {"x": 1}}}, 78, "takes no config"),
        ("configuration", {"adapter": {"name": "bridge"}}, 78, "not supported"),
    ],
)
def test_unusable_config_exits_with_a_clear_error(
    deploy: Callable[..., Deployment], name: str, config: dict[str, Any], code: int, text: str
) -> None:
    d = deploy({})
    actor = ActorProcess(name, d.engine, config, d.tmp).start()
    assert actor.proc is not None
    assert actor.proc.wait(20) == code
    assert text in actor.log_text()
