"""The ``iii-state`` config block (WORKERS.md §5.1): the storage adapter (fixed for the life of
the process), and the live settings ``triggers_enabled`` and ``max_value_bytes``."""

from __future__ import annotations

from typing import Any, Final

import attrs

from manifests.blocks.adapters import BridgeAdapter, KvAdapter, RedisAdapter
from manifests.blocks.strict import IntervalMs, NonNegativeInt

__all__ = ["DEFAULTS", "StateAdapter", "StateBlock"]

StateAdapter = KvAdapter | RedisAdapter | BridgeAdapter


@attrs.frozen
class StateBlock:
    adapter: StateAdapter | None = None
    triggers_enabled: bool = True
    max_value_bytes: NonNegativeInt | None = None  # 0: no limit
    save_interval_ms: IntervalMs | None = None  # overrides adapter.config.save_interval_ms

    @property
    def value_limit(self) -> int | None:
        """The largest value ``state::set`` takes, in compact JSON bytes (``None``: no limit)."""
        return self.max_value_bytes or None

    def store_adapter(self) -> StateAdapter:
        """The adapter to open, defaults filled in: a top-level ``save_interval_ms`` overrides the
        kv adapter's own (§5.1), and no adapter is the in-memory kv store."""
        adapter = self.adapter or KvAdapter()
        if isinstance(adapter, KvAdapter):
            config = adapter.settings
            if self.save_interval_ms is not None:
                interval = self.save_interval_ms
                config = attrs.evolve(config, save_interval_ms=interval)
            return attrs.evolve(adapter, config=config)
        if isinstance(adapter, RedisAdapter):
            return attrs.evolve(adapter, config=adapter.settings)
        return adapter


DEFAULTS: Final[dict[str, Any]] = {
    "adapter": {"name": "kv", "config": {"store_method": "in_memory"}},
    "triggers_enabled": True,
}
