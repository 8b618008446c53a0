"""The ``iii-state`` config block (WORKERS.md §5.1), checked strictly like upstream's
deny-unknown-fields struct, and the storage adapter block it implies."""

from __future__ import annotations

import copy
from typing import Any, Final

import attrs

from actors.configuration.adoption import REDIS_ADAPTER_SCHEMA

__all__ = [
    "CONFIG_SCHEMA",
    "MAX_SAVE_INTERVAL_MS",
    "MIN_SAVE_INTERVAL_MS",
    "SettingsError",
    "StateSettings",
    "parse_settings",
]

MIN_SAVE_INTERVAL_MS: Final = 100
MAX_SAVE_INTERVAL_MS: Final = 3_600_000
ADAPTERS: Final = ("kv", "redis", "bridge")
_FIELDS: Final = frozenset({"adapter", "triggers_enabled", "max_value_bytes", "save_interval_ms"})


class SettingsError(ValueError):
    """A config block this actor cannot run with; the message names the field."""


@attrs.define
class StateSettings:
    """Effective settings. ``triggers_enabled`` and ``max_value_bytes`` are live (they may change
    while serving); the adapter is fixed for the life of the process."""

    adapter: dict[str, Any] | None = None
    triggers_enabled: bool = True
    max_value_bytes: int | None = None
    save_interval_ms: int | None = None

    def store_adapter(self) -> dict[str, Any] | None:
        """The adapter block handed to ``storage.open_kv``; a top-level ``save_interval_ms``
        overrides the kv adapter's own (§5.1)."""
        if self.adapter is None:
            if self.save_interval_ms is None:
                return None
            return {"name": "kv", "config": {"save_interval_ms": self.save_interval_ms}}
        adapter = copy.deepcopy(self.adapter)
        if self.save_interval_ms is not None and adapter.get("name", "kv") in ("kv", "builtin"):
            config = adapter.get("config") or {}
            adapter["config"] = {**config, "save_interval_ms": self.save_interval_ms}
        return adapter

    @property
    def adapter_name(self) -> str:
        return str((self.adapter or {}).get("name", "kv"))


def parse_settings(raw: Any) -> StateSettings:
    """Check a config block; raises ``SettingsError``. ``None`` means all defaults."""
    if raw is None:
        return StateSettings()
    if not isinstance(raw, dict):
        raise SettingsError(f"config: expected an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise SettingsError(
            f"config: unknown field(s) {', '.join(unknown)} (expected: {', '.join(sorted(_FIELDS))})"
        )
    settings = StateSettings()
    adapter = raw.get("adapter")
    if adapter is not None:
        if not isinstance(adapter, dict) or not isinstance(adapter.get("name", "kv"), str):
            raise SettingsError("adapter: expected an object with a string `name`")
        name = adapter.get("name", "kv")
        if name not in ADAPTERS:
            raise SettingsError(
                f"adapter.name: unknown adapter {name!r} (expected one of {', '.join(ADAPTERS)})"
            )
        settings.adapter = dict(adapter)
    triggers = raw.get("triggers_enabled")
    if triggers is not None:
        if not isinstance(triggers, bool):
            raise SettingsError("triggers_enabled: expected a boolean")
        settings.triggers_enabled = triggers
    limit = raw.get("max_value_bytes")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise SettingsError("max_value_bytes: expected a non-negative integer")
        settings.max_value_bytes = limit or None  # 0 is treated as unset
    interval = raw.get("save_interval_ms")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, int):
            raise SettingsError("save_interval_ms: expected an integer")
        if not MIN_SAVE_INTERVAL_MS <= interval <= MAX_SAVE_INTERVAL_MS:
            raise SettingsError(
                f"save_interval_ms: {interval} is outside "
                f"{MIN_SAVE_INTERVAL_MS}..{MAX_SAVE_INTERVAL_MS}"
            )
        settings.save_interval_ms = interval
    return settings


_INTERVAL: Final = {
    "type": "integer",
    "minimum": MIN_SAVE_INTERVAL_MS,
    "maximum": MAX_SAVE_INTERVAL_MS,
    "description": "Flush cadence of a file-based kv store, in milliseconds",
}

CONFIG_SCHEMA: Final = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "iii-state",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "adapter": {
            "description": "Storage backend; read from config.yaml when the worker starts",
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"const": "kv"},
                        "config": {
                            "type": ["object", "null"],
                            "additionalProperties": False,
                            "properties": {
                                "store_method": {"enum": ["in_memory", "file_based"]},
                                "file_path": {"type": "string"},
                                "save_interval_ms": _INTERVAL,
                                "fsync": {"enum": ["always", "interval", "never"]},
                            },
                        },
                    },
                },
                REDIS_ADAPTER_SCHEMA,
            ],
        },
        "triggers_enabled": {
            "type": "boolean",
            "description": "false suppresses every state trigger (live)",
        },
        "max_value_bytes": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "state::set rejects larger values (compact JSON bytes); 0 = no limit",
        },
        "save_interval_ms": {**_INTERVAL, "type": ["integer", "null"]},
    },
}
