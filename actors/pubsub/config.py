"""The ``iii-pubsub`` actor's config parsing: its block is ``manifests.blocks.pubsub.PubSubBlock``
(WORKERS.md §9.1), the same class the supervisor validates config.yaml with."""

from __future__ import annotations

from typing import Any, Final

from manifests.blocks.pubsub import PubSubBlock
from manifests.blocks.strict import parse

__all__ = ["BLOCK", "parse_config"]

BLOCK: Final = PubSubBlock


def parse_config(raw: Any) -> PubSubBlock:
    """The block, strictly (``None`` → all defaults); raises ``BlockError`` naming the fields."""
    return parse(BLOCK, raw)
