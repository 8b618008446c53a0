"""The ``iii-state`` actor's config parsing: its block is ``manifests.blocks.state.StateBlock``
(WORKERS.md §5.1), the same class the supervisor validates config.yaml with."""

from __future__ import annotations

from typing import Any, Final

from manifests.blocks.state import StateBlock
from manifests.blocks.strict import parse

__all__ = ["BLOCK", "parse_config"]

BLOCK: Final = StateBlock


def parse_config(raw: Any) -> StateBlock:
    """The block, strictly (``None`` → all defaults); raises ``BlockError`` naming the fields."""
    return parse(BLOCK, raw)
