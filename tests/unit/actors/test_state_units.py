"""The iii-state config block (WORKERS.md §5.1) and the shared payload checks."""

from __future__ import annotations

import pytest

from actors.configuration.schema import check_schema, violations
from actors.pubsub import CONFIG_SCHEMA as PUBSUB_SCHEMA
from actors.state.payload import Payload
from actors.state.settings import CONFIG_SCHEMA, SettingsError, parse_settings
from transport.client import FunctionError


def test_defaults_and_store_adapter() -> None:
    settings = parse_settings(None)
    assert settings.triggers_enabled and settings.max_value_bytes is None
    assert settings.store_adapter() is None
    file_based = {"name": "kv", "config": {"store_method": "file_based", "save_interval_ms": 900}}
    settings = parse_settings(
        {"adapter": file_based, "save_interval_ms": 250, "max_value_bytes": 0}
    )
    assert settings.max_value_bytes is None  # 0 is unset
    assert settings.store_adapter() == {
        "name": "kv",
        "config": {"store_method": "file_based", "save_interval_ms": 250},
    }
    redis = {"name": "redis", "config": {"redis_url": "redis://x"}}
    assert parse_settings({"adapter": redis, "save_interval_ms": 250}).store_adapter() == redis


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
    with pytest.raises(SettingsError):
        parse_settings(raw)


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
