"""The configuration actor (WORKERS.md §2) and its owners' adoption (§1.6), with our deliberate
difference: config.yaml (the actor's ``entries`` block) wins at every boot, and the discarded
persisted values are logged."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from iii import InvocationError

from tests.integration.actors.conftest import Deployment, Inbox, call, strip_caller
from tests.integration.actors.test_pubsub import REDIS, subscribe, topic_name, wait_subscribed
from tests.support import require_service, wait_for

STATE = {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}}
DISCARD_EVENT = "persisted configuration values discarded; config.yaml wins"


def error_of(client: Any, function_id: str, payload: Any) -> tuple[str, str]:
    with pytest.raises(InvocationError) as err:
        call(client, function_id, payload)
    return err.value.code, err.value.message


def wait_schema(d: Deployment, entry_id: str) -> dict[str, Any]:
    """Until the owner registered its schema with the configuration actor."""

    def schema() -> Any:
        try:
            return call(d.client, "configuration::schema", {"id": entry_id})["schema"]
        except InvocationError:
            return None

    return wait_for(schema, 15.0)


def watch(d: Deployment, entry_id: str, name: str = "test::on_config") -> Inbox:
    inbox = Inbox()
    d.client.register_function(name, inbox)
    d.client.register_trigger(
        {"type": "configuration", "function_id": name, "config": {"configuration_id": entry_id}}
    )

    def live() -> bool:  # re-registering the owner's schema fires `updated`
        schema = call(d.client, "configuration::schema", {"id": entry_id})
        call(
            d.client,
            "configuration::register",
            {k: schema[k] for k in ("id", "name", "description", "schema")},
        )
        return bool(inbox.settle(0.1))

    wait_for(live, 10.0, interval=0.0)
    inbox.settle()
    inbox.items.clear()
    return inbox


def state_value_too_large(d: Deployment, size: int) -> bool:
    try:
        call(d.client, "state::set", {"scope": "cfg", "key": "k", "value": "x" * size})
    except InvocationError as exc:
        return exc.code == "VALUE_TOO_LARGE"
    return False


def test_runtime_set_applies_live_and_config_block_wins_after_restart(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy({"configuration": {"entries": {"iii-state": STATE}}, "iii-state": STATE})
    c = d.client
    wait_schema(d, "iii-state")
    assert call(c, "configuration::get", {"id": "iii-state"}) == {"id": "iii-state", "value": STATE}
    inbox = watch(d, "iii-state")

    runtime = {**STATE, "max_value_bytes": 32, "triggers_enabled": False}
    assert call(c, "configuration::set", {"id": "iii-state", "value": runtime}) == {
        "old_value": STATE,
        "new_value": runtime,
    }
    assert call(c, "configuration::get", {"id": "iii-state"})["value"] == runtime
    event = strip_caller(inbox.wait(1)[0])
    assert event["type"] == "configuration"
    assert event["event_type"] == "configuration:updated"
    assert (event["id"], event["name"]) == ("iii-state", "State")
    assert (event["old_value"], event["new_value"]) == (STATE, runtime)
    assert event["schema"]["title"] == "iii-state"
    # The owner (iii-state) re-read the value and applied the live fields.
    wait_for(lambda: state_value_too_large(d, 100), 10.0)

    # Next boot with config.yaml now setting max_value_bytes: config.yaml wins for that key,
    # the runtime value of a key it does not set (triggers_enabled) survives, and the
    # discarded value is logged.
    config_actor = d.actors["configuration"]
    config_actor.set_config({"entries": {"iii-state": {**STATE, "max_value_bytes": 4096}}})
    d.restart("configuration")
    value = call(c, "configuration::get", {"id": "iii-state"})["value"]
    assert value == {**STATE, "max_value_bytes": 4096, "triggers_enabled": False}
    discards = [e for e in config_actor.log_events() if e.get("event") == DISCARD_EVENT]
    assert len(discards) == 1
    assert discards[0]["level"] == "warning"
    assert discards[0]["id"] == "iii-state"
    assert discards[0]["discarded"] == [
        {"field": "max_value_bytes", "persisted": 32, "config_yaml": 4096}
    ]


def test_actor_restart_within_one_engine_run_keeps_runtime_values(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy({})
    assert d.engine.proc is not None
    run_env = {"III_ENGINE_PID": str(d.engine.proc.pid)}
    actor = d.add("configuration", {"entries": {"iii-state": STATE}}, env=run_env)
    d.add("iii-state", STATE)
    wait_schema(d, "iii-state")
    runtime = {**STATE, "max_value_bytes": 10}
    call(d.client, "configuration::set", {"id": "iii-state", "value": runtime})

    d.restart("configuration", sig=9)  # a crash, not a boot: nothing is re-seeded
    assert call(d.client, "configuration::get", {"id": "iii-state"})["value"] == runtime
    assert call(d.client, "configuration::schema", {"id": "iii-state"})["schema"] is not None
    call(d.client, "configuration::set", {"id": "iii-state", "value": STATE})  # schema known
    assert not any(e.get("event") == DISCARD_EVENT for e in actor.log_events())

    # Changed entries (config.yaml edited and reloaded) are applied even within the run.
    call(d.client, "configuration::set", {"id": "iii-state", "value": runtime})
    actor.set_config({"entries": {"iii-state": {**STATE, "max_value_bytes": 20}}})
    d.restart("configuration")
    assert call(d.client, "configuration::get", {"id": "iii-state"})["value"] == {
        **STATE,
        "max_value_bytes": 20,
    }


def test_functions_results_and_errors(deploy: Callable[..., Deployment]) -> None:
    d = deploy({"configuration": {"entries": {"iii-http": {"port": 3111}}}})
    c = d.client
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "host": {"type": "string"},
        },
    }
    events = Inbox()
    c.register_function("test::all_events", events)
    c.register_trigger(
        {
            "type": "configuration",
            "function_id": "test::all_events",
            "config": {"event_types": ["configuration:registered"]},
        }
    )

    # A seeded entry has no schema until its owner registers: it cannot be set yet.
    assert call(c, "configuration::get", {"id": "iii-http"}) == {
        "id": "iii-http",
        "value": {"port": 3111},
    }
    assert error_of(c, "configuration::set", {"id": "iii-http", "value": {}})[0] == (
        "SCHEMA_UNAVAILABLE"
    )
    assert error_of(c, "configuration::set", {"id": "nope", "value": {}})[0] == "NOT_REGISTERED"
    assert error_of(c, "configuration::set", {"id": "Bad Id", "value": {}})[0] == "INVALID_ID"
    assert error_of(c, "configuration::get", {"id": "nope"}) == (
        "NOT_FOUND",
        "configuration 'nope' not found",
    )
    assert error_of(c, "configuration::schema", {"id": "nope"})[0] == "NOT_FOUND"
    code, message = error_of(
        c,
        "configuration::register",
        {"id": "x", "name": "X", "description": "", "schema": {"type": "integr"}},
    )
    assert code == "SCHEMA_INVALID" and message.startswith("invalid JSON Schema: ")

    registered = call(
        c,
        "configuration::register",
        {
            "id": "my-worker",
            "name": "Mine",
            "description": "d",
            "schema": schema,
            "initial_value": {"port": "${MY_PORT:8080}"},
            "metadata": {"owner": "t"},
        },
    )
    assert registered == {
        "id": "my-worker",
        "name": "Mine",
        "description": "d",
        "schema": schema,
        "value": {"port": "${MY_PORT:8080}"},  # stored verbatim
        "metadata": {"owner": "t"},
    }
    assert call(c, "configuration::get", {"id": "my-worker"})["value"] == {"port": 8080}
    assert call(c, "configuration::get", {"id": "my-worker", "raw": True})["value"] == {
        "port": "${MY_PORT:8080}"
    }
    event = strip_caller(events.wait(1)[0])
    assert event["event_type"] == "configuration:registered"
    assert (event["old_value"], event["new_value"]) == (None, {"port": 8080})  # expanded
    assert event["metadata"] == {"owner": "t"}

    code, message = error_of(c, "configuration::set", {"id": "my-worker", "value": {"port": 0}})
    assert code == "SCHEMA_INVALID"
    assert message.startswith("schema validation failed: ")
    assert "/port" in message
    assert (
        error_of(c, "configuration::set", {"id": "my-worker", "value": {"port": 1, "extra": 1}})[0]
        == "SCHEMA_INVALID"
    )

    var = "III_TEST_UNSET_VARIABLE"
    assert var not in os.environ
    call(
        c,
        "configuration::register",
        {
            "id": "templated",
            "name": "T",
            "description": "",
            "schema": {"type": "object"},
            "initial_value": {"url": f"${{{var}}}"},
        },
    )
    code, message = error_of(c, "configuration::get", {"id": "templated"})
    assert code == "EXPAND_FAILED" and var in message

    listed = call(c, "configuration::list", {})["configurations"]
    assert [e["id"] for e in listed] == ["iii-http", "my-worker", "templated"]
    assert all("value" not in e for e in listed)
    assert call(c, "configuration::schema", {"id": "my-worker"}) == {
        k: registered[k] for k in ("id", "name", "description", "schema", "metadata")
    }
    # Only `registered` events were asked for; the later registrations were new ids too.
    kinds = {strip_caller(e)["event_type"] for e in events.settle()}
    assert kinds == {"configuration:registered"}

    # Persisted as one YAML file per entry.
    files = sorted(p.name for p in (d.actors["configuration"].data_dir / "config").glob("*.yaml"))
    assert files == ["iii-http.yaml", "my-worker.yaml", "templated.yaml"]


def test_ttl_deletes_an_entry_after_its_last_watcher_leaves(
    deploy: Callable[..., Deployment],
) -> None:
    d = deploy({"configuration": {"ttl_seconds": 1}})
    c = d.client
    call(
        c,
        "configuration::register",
        {"id": "short", "name": "S", "description": "", "schema": True, "initial_value": 1},
    )
    deleted = Inbox()
    c.register_function("test::deleted", deleted)
    c.register_trigger(
        {
            "type": "configuration",
            "function_id": "test::deleted",
            "config": {"event_types": ["configuration:deleted"]},  # no id: does not count
        }
    )
    watched = Inbox()
    c.register_function("test::watcher", watched)
    watcher = c.register_trigger(
        {
            "type": "configuration",
            "function_id": "test::watcher",
            "config": {"configuration_id": "short"},
        }
    )

    def watcher_live() -> bool:
        call(
            c,
            "configuration::register",
            {"id": "short", "name": "S", "description": "", "schema": True},
        )
        return bool(watched.settle(0.1))

    wait_for(watcher_live, 10.0, interval=0.0)
    watcher.unregister()
    event = strip_caller(deleted.wait(1, timeout=10.0)[0])
    assert (event["id"], event["old_value"], event["new_value"]) == ("short", 1, None)
    assert error_of(c, "configuration::get", {"id": "short"})[0] == "NOT_FOUND"


def test_pubsub_adapter_change_applies_live(deploy: Callable[..., Deployment]) -> None:
    require_service("redis", 6379)
    a = deploy(
        {
            "configuration": {"entries": {"iii-pubsub": {"adapter": {"name": "local"}}}},
            "iii-pubsub": {"adapter": {"name": "local"}},
        }
    )
    b = deploy({"iii-pubsub": REDIS})
    wait_schema(a, "iii-pubsub")
    topic = topic_name()
    inbox = Inbox()
    subscribe(a, topic, "test::on_a", inbox)
    wait_subscribed(a, topic, inbox)

    call(a.client, "configuration::set", {"id": "iii-pubsub", "value": REDIS})

    def reached_from_b() -> bool:
        call(b.client, "publish", {"topic": topic, "data": "via redis"})
        return "via redis" in inbox.settle(0.1)

    wait_for(reached_from_b, 15.0, interval=0.0)
    assert "iii-pubsub adapter changed" in a.actors["iii-pubsub"].log_text()
