"""Strict validation of the built-in workers' ``config:`` blocks (attrs + cattrs).

Unknown keys are rejected with a suggestion, wrong types are named, adapters are a closed set.
"""

from __future__ import annotations

from typing import Any

import pytest

from manifests.blocks import (
    HttpBlock,
    HttpCors,
    HttpMiddleware,
    KvStoreConfig,
    ListenerBlock,
    validate,
)
from supervisor.config.blocks import validate_block
from supervisor.config.model import ListenerConfig, RbacConfig


def issues(name: str, raw: Any) -> dict[str, str]:
    block, found = validate_block(name, raw)
    assert block is None
    return {".".join(map(str, path)): message for path, message in found}


def test_http_defaults_when_absent() -> None:
    block, found = validate_block("iii-http", None)
    assert found == []
    assert block == HttpBlock()
    assert (block.port, block.host, block.default_timeout) == (3111, "0.0.0.0", 30000)


def test_http_full_block() -> None:
    raw = {
        "port": 8080,
        "host": "127.0.0.1",
        "default_timeout": 1000,
        "concurrency_request_limit": 10,
        "cors": {"allowed_origins": ["http://localhost:3000"], "allowed_methods": ["GET"]},
        "middleware": [{"function_id": "global::auth", "phase": "preHandler", "priority": 10}],
    }
    block, found = validate_block("iii-http", raw)
    assert found == []
    assert block.cors == HttpCors(("http://localhost:3000",), ("GET",))
    assert block.middleware == (HttpMiddleware("global::auth", "preHandler", 10),)


def test_http_type_errors_and_unknown_keys_at_every_depth() -> None:
    found = issues(
        "iii-http",
        {
            "port": "abc",
            "hots": "x",
            "cors": {"allowed_origins": "*", "allowed_methodz": []},
            "middleware": [{"phase": "preHandler"}, "x"],
        },
    )
    assert found == {
        "port": "expected int, got 'abc'",
        "hots": "unknown key (did you mean host?)",
        "cors.allowed_origins": "expected a list, got '*'",
        "cors.allowed_methodz": "unknown key (did you mean cors.allowed_methods?)",
        "middleware.0.function_id": "missing (required)",
        "middleware.1": "expected a mapping, got 'x'",
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"port": 70000}, "expected an integer between 0 and 65535, got 70000"),
        ({"port": True}, "expected int, got True"),
        ({"port": 1.5}, "expected int, got 1.5"),
        ({"host": 1}, "expected string, got 1"),
        ({"default_timeout": -1}, "expected an integer >= 0, got -1"),
    ],
)
def test_http_scalar_rules(raw: dict[str, Any], message: str) -> None:
    assert list(issues("iii-http", raw).values()) == [message]


def test_block_must_be_a_mapping() -> None:
    assert issues("iii-http", [1]) == {"": "expected a mapping, got a list"}


def test_state_kv_adapter() -> None:
    raw: dict[str, Any] = {
        "adapter": {
            "name": "kv",
            "config": {"store_method": "file_based", "file_path": "./data/state_store.db"},
        },
        "triggers_enabled": False,
        "max_value_bytes": 1048576,
        "save_interval_ms": 5000,
    }
    block, found = validate_block("iii-state", raw)
    assert found == []
    assert block.adapter.name == "kv"
    kv_config = validate(KvStoreConfig, raw["adapter"]["config"])[0]
    assert kv_config is not None and kv_config.store_method == "file_based"


def test_state_adapter_problems() -> None:
    assert issues("iii-state", {"adapter": {"name": "disk"}}) == {
        "adapter.name": "unknown adapter 'disk' — available: kv, redis, bridge"
    }
    found = issues(
        "iii-state",
        {"adapter": {"name": "kv", "config": {"store_method": "disk", "file_pth": "x"}}},
    )
    assert found == {
        "adapter.config.store_method": "expected one of in_memory, file_based, got 'disk'",
        "adapter.config.file_pth": "unknown key (did you mean adapter.config.file_path?)",
    }
    assert issues("iii-state", {"save_interval_ms": 50}) == {
        "save_interval_ms": "expected an integer between 100 and 3600000, got 50"
    }


def test_state_redis_and_bridge() -> None:
    for adapter in (
        {"name": "redis", "config": {"redis_url": "redis://r:6379"}},
        {"name": "bridge", "config": {"bridge_url": "ws://x:49134"}},
        {"name": "redis"},
    ):
        assert validate_block("iii-state", {"adapter": adapter})[1] == []


def test_pubsub_local_takes_no_config() -> None:
    assert validate_block("iii-pubsub", {"adapter": {"name": "local"}})[1] == []
    assert validate_block("iii-pubsub", {"adapter": {"name": "local", "config": {}}})[1] == []
    assert issues("iii-pubsub", {"adapter": {"name": "local", "config": {"x": 1}}}) == {
        "adapter.config.x": "unknown key"
    }
    assert validate_block("iii-pubsub", {"adapter": {"name": "redis"}})[1] == []
    assert "adapter.name" in issues("iii-pubsub", {"adapter": {"name": "kafka"}})


def test_configuration_block() -> None:
    raw = {"adapter": {"name": "fs", "config": {"directory": "./config"}}, "ttl_seconds": 0}
    assert validate_block("configuration", raw)[1] == []
    assert issues("configuration", {"ttl_seconds": "1"}) == {"ttl_seconds": "expected int, got '1'"}
    assert "adapter.name" in issues("configuration", {"adapter": {"name": "s3"}})


def test_observability_block() -> None:
    raw = {
        "enabled": True,
        "service_name": "svc",
        "exporter": "memory",
        "sampling_ratio": 1,
        "sampling": {"default": 0.5, "rules": [{"operation": "api.*", "rate": 0.1}]},
        "trace_storage": {"enabled": False},
        "alerts": [
            {"name": "e", "metric": "iii.invocations.error", "threshold": 5, "operator": ">"}
        ],
        "level": "debug",
        "collapse_spans": [{"name": "noise"}],
    }
    assert validate_block("iii-observability", raw)[1] == []
    found = issues("iii-observability", {"exporter": "mem", "sampling_ratio": 2, "lvl": "x"})
    assert found == {
        "exporter": "expected one of otlp, memory, both, got 'mem'",
        "sampling_ratio": "expected a number between 0.0 and 1.0, got 2",
        "lvl": "unknown key (did you mean level?)",
    }


def test_listener_block_and_model() -> None:
    raw = {
        "host": "127.0.0.1",
        "port": 49135,
        "handshake_timeout_ms": 5000,
        "middleware_function_id": "my::mw",
        "rbac": {
            "auth_function_id": "my::auth",
            "expose_functions": ['match("api::*")', {"metadata": {"public": True}}],
            "some_future_key": 1,  # ignored, as upstream does inside rbac
        },
    }
    block, found = validate_block("iii-worker-manager", raw)
    assert found == []
    assert isinstance(block, ListenerBlock)
    assert block == ListenerConfig(  # the block is the engine's listener model
        host="127.0.0.1",
        port=49135,
        handshake_timeout_ms=5000,
        middleware_function_id="my::mw",
        rbac=RbacConfig(
            auth_function_id="my::auth",
            expose_functions=('match("api::*")', {"metadata": {"public": True}}),
        ),
    )


def test_listener_unknown_keys_rejected_and_filter_forms_checked() -> None:
    found = issues(
        "iii-worker-manager",
        {
            "prot": 1,
            "rbac": {
                "expose_functions": [
                    "api::*",
                    {"match": "a", "metadata": {}},
                    {"namespace": "x"},
                    {"mach": "x"},
                    {"match": "a", "namespace": 3},
                ]
            },
        },
    )
    assert found == {
        "prot": "unknown key (did you mean port?)",
        "rbac.expose_functions.0": 'a string filter must have the form match("pattern")',
        "rbac.expose_functions.1": "a filter needs exactly one of match or metadata",
        "rbac.expose_functions.2": "a filter needs exactly one of match or metadata",
        "rbac.expose_functions.3.mach": "unknown key (did you mean match?)",
        "rbac.expose_functions.4.namespace": "expected string, got 3",
    } | {"rbac.expose_functions.3": "a filter needs exactly one of match or metadata"}
