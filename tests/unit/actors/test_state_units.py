"""The iii-state config block (WORKERS.md §5.1) and the shared payload checks."""

from __future__ import annotations

import pytest

from actors.configuration.schema import check_schema, violations
from actors.runtime import Payload
from actors.state import parse_config
from manifests.blocks import BlockError, KvAdapter, KvStoreConfig, RedisAdapter, json_schema
from manifests.blocks.adapters import RedisConfig
from manifests.blocks.pubsub import PubSubBlock
from manifests.blocks.state import StateBlock
from transport.client import FunctionError

CONFIG_SCHEMA = json_schema(StateBlock, title="iii-state")
PUBSUB_SCHEMA = json_schema(PubSubBlock, title="iii-pubsub")


def test_defaults_and_store_adapter() -> None:
    settings = parse_config(None)
    assert settings.triggers_enabled and settings.value_limit is None
    assert settings.store_adapter() == KvAdapter(config=KvStoreConfig())  # in-memory kv
    file_based = {"name": "kv", "config": {"store_method": "file_based", "save_interval_ms": 900}}
    settings = parse_config({"adapter": file_based, "save_interval_ms": 250, "max_value_bytes": 0})
    assert settings.value_limit is None  # 0 is unset
    assert settings.store_adapter() == KvAdapter(
        config=KvStoreConfig(store_method="file_based", save_interval_ms=250)
    )
    redis = {"name": "redis", "config": {"redis_url": "redis://x"}}
    assert parse_config({"adapter": redis, "save_interval_ms": 250}).store_adapter() == (
        RedisAdapter(config=RedisConfig("redis://x"))
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"unknown": 1},
        {"adapter": {"name": "mongo"}},
        {"triggers_enabled": "yes"},
        {"max_value_bytes": -1},
        {"save_interval_ms": 50},
        [],
    ],
)
def test_bad_blocks_are_refused(raw: object) -> None:
    with pytest.raises(BlockError):
        parse_config(raw)


def test_published_schemas_compile_and_accept_the_documented_samples() -> None:
    check_schema(CONFIG_SCHEMA)
    check_schema(PUBSUB_SCHEMA)
    sample = {
        "adapter": {
            "name": "kv",
            "config": {
                "store_method": "file_based",
                "file_path": "./data/state_store.db",
                "save_interval_ms": 5000,
            },
        },
        "triggers_enabled": True,
        "max_value_bytes": 1048576,
        "save_interval_ms": 5000,
    }
    assert violations(CONFIG_SCHEMA, sample) == []
    assert violations(CONFIG_SCHEMA, {"adapter": {"name": "redis"}}) == []
    assert violations(CONFIG_SCHEMA, {"adapter": {"name": "kv", "config": {"x": 1}}})
    assert violations(PUBSUB_SCHEMA, {"adapter": {"name": "local"}}) == []
    assert violations(PUBSUB_SCHEMA, {"adapter": {"name": "local", "config": {"a": 1}}})
    assert (
        violations(PUBSUB_SCHEMA, {"adapter": {"name": "redis", "config": {"redis_url": "r"}}})
        == []
    )


def test_payload_errors_name_the_function_and_field() -> None:
    with pytest.raises(FunctionError) as err:
        Payload("state::get", {"scope": "s"}).str("key")
    assert (err.value.code, err.value.message) == (
        "deserialization_error",
        "Failed to deserialize input for state::get: missing field `key`",
    )
    with pytest.raises(FunctionError):
        Payload("state::get", [1])
    p = Payload("state::set", {"data": 1, "_caller_worker_id": "w"})
    assert p.any("value", "data") == 1
