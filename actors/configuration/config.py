"""The ``configuration`` actor's config parsing: its block is
``manifests.blocks.configuration.ConfigurationBlock`` (WORKERS.md §2.1), the class the supervisor
validates config.yaml with; the ``bridge`` adapter it names is refused here, not run."""

from __future__ import annotations

from typing import Any, Final

from manifests.blocks.adapters import BridgeAdapter, FsAdapter
from manifests.blocks.configuration import ConfigurationBlock
from manifests.blocks.strict import BlockError, Issue, parse

__all__ = ["BLOCK", "directory_of", "parse_config"]

BLOCK: Final = ConfigurationBlock
_BRIDGE: Final = "adapter 'bridge' is not supported by iii-supervisor yet"


def parse_config(raw: Any) -> ConfigurationBlock:
    """The block, strictly (``None`` → all defaults); raises ``BlockError`` naming the fields."""
    block = parse(BLOCK, raw)
    if isinstance(block.adapter, BridgeAdapter):
        raise BlockError([Issue(("adapter", "name"), _BRIDGE, _BRIDGE)])
    return block


def directory_of(block: ConfigurationBlock) -> str:
    """The ``fs`` adapter's directory as written (relative: the actor's data directory)."""
    adapter = block.adapter if isinstance(block.adapter, FsAdapter) else FsAdapter()
    return adapter.settings.directory
