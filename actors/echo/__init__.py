"""A tiny reference actor: ``echo::echo`` returns its input. Used by tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from transport.client import BusClient, InvocationContext


async def serve(client: BusClient, config: dict[str, Any], data_dir: Path) -> None:
    async def echo(data: Any, ctx: InvocationContext) -> Any:
        return data

    client.register_function("echo::echo", echo, description="Return the input unchanged")
    await trio.sleep_forever()
