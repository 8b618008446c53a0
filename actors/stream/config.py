"""The ``iii-stream`` actor's config parsing: its block is ``manifests.blocks.stream.StreamBlock``
(WORKERS.md §6.1), the same class the supervisor validates config.yaml with."""

from __future__ import annotations

from typing import Any, Final

from manifests.blocks.stream import StreamBlock
from manifests.blocks.strict import parse

__all__ = ["BLOCK", "parse_config"]

BLOCK: Final = StreamBlock


def parse_config(raw: Any) -> StreamBlock:
    """The block, strictly (``None`` → all defaults); raises ``BlockError`` naming the fields."""
    return parse(BLOCK, raw)
