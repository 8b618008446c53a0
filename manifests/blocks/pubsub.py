"""The ``iii-pubsub`` config block (WORKERS.md §9.1): the pub/sub adapter, which can change while
the actor runs (every live subscription moves to the new one)."""

from __future__ import annotations

from typing import Any, Final

import attrs

from manifests.blocks.adapters import LocalAdapter, RedisAdapter

__all__ = ["DEFAULTS", "PubSubAdapter", "PubSubBlock"]

PubSubAdapter = LocalAdapter | RedisAdapter


@attrs.frozen
class PubSubBlock:
    adapter: PubSubAdapter | None = None

    def backend_adapter(self) -> PubSubAdapter:
        """The adapter to open, defaults filled in (no adapter: ``local``)."""
        adapter = self.adapter or LocalAdapter()
        if isinstance(adapter, RedisAdapter):
            return attrs.evolve(adapter, config=adapter.settings)
        return LocalAdapter()


DEFAULTS: Final[dict[str, Any]] = {"adapter": {"name": "local"}}
