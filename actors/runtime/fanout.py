"""Event-style trigger fan-out (WORKERS.md §1.10), shared by the ``state`` and ``configuration``
trigger types: after a write completes, each matching binding's condition and handler are
awaited in turn, in a background task, so the writer never waits for handlers.

A condition sees exactly the handler's payload, in the binding's namespace, without trigger
metadata; only a JSON ``false`` skips the handler, and a failed condition skips it too. Handler
results are ignored and their errors only logged; there is no retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import structlog
import trio

from transport.client import BusClient, FunctionError, TriggerBinding

__all__ = [
    "CONDITION_TIMEOUT",
    "HANDLER_TIMEOUT",
    "EventFanout",
    "condition_of",
    "passes_condition",
    "run_handler",
]

log = structlog.get_logger(__name__)

# Upstream awaits conditions and handlers without a deadline; ours are generous bounds so a
# handler that never answers cannot pin a task forever (everything that waits has a deadline).
CONDITION_TIMEOUT: Final = 30.0
HANDLER_TIMEOUT: Final = 300.0


def condition_of(binding: TriggerBinding) -> str | None:
    config = binding.config
    if isinstance(config, dict):
        value = config.get("condition_function_id")
        if isinstance(value, str) and value:
            return value
    return None


async def passes_condition(
    client: BusClient, binding: TriggerBinding, payload: Any, **log_fields: Any
) -> bool:
    """Run the binding's condition function, if it has one: only a JSON ``false`` or a failed
    condition (logged with ``log_fields``) says no."""
    condition = condition_of(binding)
    if condition is None:
        return True
    try:
        verdict = await client.invoke(
            condition, payload, namespace=binding.namespace, timeout=CONDITION_TIMEOUT
        )
    except FunctionError as exc:
        log.warning(
            "trigger condition failed; handler skipped",
            condition_function_id=condition,
            code=exc.code,
            error=exc.message,
            **log_fields,
        )
        return False
    return verdict is not False


async def run_handler(
    client: BusClient,
    binding: TriggerBinding,
    payload: Any,
    *,
    timeout: float = HANDLER_TIMEOUT,  # noqa: ASYNC109
    **log_fields: Any,
) -> tuple[bool, Any]:
    """Call the binding's function; ``(False, None)`` after logging a failure."""
    try:
        result = await client.invoke(
            binding.function_id,
            payload,
            namespace=binding.namespace,
            metadata=binding.metadata,
            timeout=timeout,
        )
    except FunctionError as exc:
        log.warning(
            "trigger handler failed",
            function_id=binding.function_id,
            code=exc.code,
            error=exc.message,
            **log_fields,
        )
        return False, None
    return True, result


class EventFanout:
    """Delivers events to bindings from tasks in ``nursery`` (one task per event)."""

    def __init__(self, client: BusClient, nursery: trio.Nursery, *, trigger_type: str) -> None:
        self._client = client
        self._nursery = nursery
        self._trigger_type = trigger_type

    def emit(self, bindings: Sequence[TriggerBinding], payload: Any) -> None:
        """Schedule delivery of ``payload`` to ``bindings`` (already filtered; may be empty)."""
        if bindings:
            self._nursery.start_soon(self._deliver, list(bindings), payload)

    async def _deliver(self, bindings: list[TriggerBinding], payload: Any) -> None:
        for binding in bindings:
            if await self._passes(binding, payload):
                await self._call(binding, payload)

    async def _passes(self, binding: TriggerBinding, payload: Any) -> bool:
        return await passes_condition(
            self._client,
            binding,
            payload,
            trigger_type=self._trigger_type,
            trigger_id=binding.id,
        )

    async def _call(self, binding: TriggerBinding, payload: Any) -> None:
        await run_handler(
            self._client, binding, payload, trigger_type=self._trigger_type, trigger_id=binding.id
        )
