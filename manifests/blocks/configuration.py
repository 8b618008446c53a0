"""The ``configuration`` worker's config block (WORKERS.md §2.1): where entries are kept, their
TTL, and ``entries`` — the config.yaml blocks the supervisor hands over at every boot (§1.6)."""

from __future__ import annotations

from typing import Any, Final

import attrs

from manifests.blocks.adapters import BridgeAdapter, FsAdapter
from manifests.blocks.strict import NonNegativeInt

__all__ = ["DEFAULTS", "ConfigurationBlock"]


@attrs.frozen
class ConfigurationBlock:
    adapter: FsAdapter | BridgeAdapter | None = None
    ttl_seconds: NonNegativeInt = 0
    entries: dict[str, Any] | None = None  # filled by the supervisor from config.yaml blocks

    @property
    def seeds(self) -> dict[str, Any]:
        return dict(self.entries or {})


DEFAULTS: Final[dict[str, Any]] = {"adapter": {"name": "fs", "config": {"directory": "./config"}}}
