"""The ``iii-http-functions`` actor's config parsing: its block is
``manifests.blocks.http_functions.HttpFunctionsBlock`` (WORKERS.md §4.1), the same class the
supervisor validates config.yaml with."""

from __future__ import annotations

from typing import Any, Final

from manifests.blocks.http_functions import HttpFunctionsBlock
from manifests.blocks.strict import parse

__all__ = ["BLOCK", "parse_config"]

BLOCK: Final = HttpFunctionsBlock


def parse_config(raw: Any) -> HttpFunctionsBlock:
    """The block, strictly (``None`` → all defaults); raises ``BlockError`` naming the fields."""
    return parse(BLOCK, raw)
