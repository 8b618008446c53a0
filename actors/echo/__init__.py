"""A tiny reference actor: ``echo::echo`` returns its input. Used by tests and benchmarks."""

from __future__ import annotations

from typing import Any

from actors.runtime import ActorContext
from transport.client import InvocationContext


def parse_config(raw: Any) -> dict[str, Any]:
    """Not a built-in, so no block schema: whatever config it gets is ignored."""
    return dict(raw or {})


async def serve(ctx: ActorContext[dict[str, Any]]) -> None:
    async def echo(data: Any, _: InvocationContext) -> Any:
        return data

    ctx.client.register_function("echo::echo", echo, description="Return the input unchanged")
    await ctx.stopped()
