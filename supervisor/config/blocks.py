"""The ``config:`` blocks of built-in workers as the supervisor reads them: validated by the schema
of their registry row (manifests.blocks), and the listener block turned into the model's value."""

from __future__ import annotations

from typing import Any

from manifests.blocks.strict import validate
from manifests.blocks.worker_manager import ListenerBlock
from manifests.problems import PathPart
from supervisor.config.builtins import builtin_worker
from supervisor.config.model import ListenerConfig, RbacConfig

__all__ = ["listener_config", "validate_block"]


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


def listener_config(block: ListenerBlock) -> ListenerConfig:
    """The model's :class:`ListenerConfig` for a validated listener block."""
    rbac = None
    if block.rbac is not None:
        rbac = RbacConfig(
            auth_function_id=block.rbac.auth_function_id,
            expose_functions=block.rbac.expose_functions,
            on_function_registration_function_id=block.rbac.on_function_registration_function_id,
            on_trigger_registration_function_id=block.rbac.on_trigger_registration_function_id,
            on_trigger_type_registration_function_id=(
                block.rbac.on_trigger_type_registration_function_id
            ),
        )
    return ListenerConfig(
        host=block.host,
        port=block.port,
        handshake_timeout_ms=block.handshake_timeout_ms,
        middleware_function_id=block.middleware_function_id,
        rbac=rbac,
        max_message_bytes=block.max_message_bytes,
    )
