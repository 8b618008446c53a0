"""The ``iii-http`` actor's config parsing: its block is ``manifests.blocks.http.HttpBlock``
(WORKERS.md §3.1), the same class the supervisor validates config.yaml with."""

from __future__ import annotations

from typing import Any, Final

from manifests.blocks.http import HttpBlock
from manifests.blocks.strict import parse

__all__ = ["BLOCK", "parse_config"]

BLOCK: Final = HttpBlock


def parse_config(raw: Any) -> HttpBlock:
    """The block, strictly (``None`` → all defaults); raises ``BlockError`` naming the fields."""
    return parse(BLOCK, raw)
