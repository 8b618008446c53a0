"""Helpers shared by the command modules (not a command itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from supervisor.status.protocol import ProtocolError
from supervisor.supervision.children import ShuttingDown, UnknownWorker
from supervisor.supervision.messages import CommandResult
from supervisor.supervision.runtime import ConfigRejected

STREAMED = object()  # returned by streaming commands: the server then sends {"done": true}


async def guarded(call: Callable[[], Awaitable[Any]]) -> Any:
    """Map child-manager exceptions onto status-socket error codes."""
    try:
        return await call()
    except UnknownWorker as exc:
        raise ProtocolError("UNKNOWN_WORKER", str(exc)) from None
    except ShuttingDown as exc:
        raise ProtocolError("SHUTTING_DOWN", str(exc)) from None
    except ConfigRejected as exc:
        raise ProtocolError(
            "CONFIG_INVALID", exc.message, details={"errors": exc.problems}
        ) from None
    except trio.TooSlowError:
        raise ProtocolError(
            "TIMEOUT",
            "timed out waiting for the workers to settle; the operation goes on — "
            "follow it with `iii-supervisor status`",
        ) from None


def lifecycle_result(results: list[CommandResult]) -> dict[str, Any]:
    return {
        "changed": any(r.changed for r in results),
        "workers": [r.to_wire() for r in results],
    }
