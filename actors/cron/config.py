"""The ``iii-cron`` actor's config parsing: its block is ``manifests.blocks.cron.CronBlock``
(WORKERS.md §8.1), the same class the supervisor validates config.yaml with."""

from __future__ import annotations

from typing import Any, Final

from manifests.blocks.cron import CronBlock
from manifests.blocks.strict import parse

__all__ = ["BLOCK", "parse_config"]

BLOCK: Final = CronBlock


def parse_config(raw: Any) -> CronBlock:
    """The block, strictly (``None`` → all defaults); raises ``BlockError`` naming the fields."""
    return parse(BLOCK, raw)
