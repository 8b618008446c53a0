"""The ``config:`` blocks of built-in workers as the supervisor reads them: validated by the schema
of their registry row (manifests.blocks), and the listener block turned into the model's value."""

from __future__ import annotations

from typing import Any

from manifests.blocks.strict import validate
from manifests.problems import PathPart
from supervisor.config.builtins import builtin_worker

__all__ = ["validate_block"]


def validate_block(name: str, raw: Any) -> tuple[Any, list[tuple[tuple[PathPart, ...], str]]]:
    """Validate a built-in worker's ``config:`` block; ``None`` means "all defaults".

    Returns the structured block (an instance of its row's schema; ``raw`` itself for a built-in
    without one) and its issues as (path relative to the block, message).
    """
    builtin = builtin_worker(name)
    if builtin is None:
        raise KeyError(f"{name!r} is not a built-in worker")
    if builtin.block is None:
        return raw, []
    block, issues = validate(builtin.block, raw)
    return block, [(issue.path, issue.message) for issue in issues]
