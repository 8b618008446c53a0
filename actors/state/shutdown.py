"""Graceful stop for actors that own storage: SIGTERM/SIGINT close the store (flush + fsync)
before the process leaves the bus, instead of the default immediate death. Shared by the state,
pubsub and configuration actors."""

from __future__ import annotations

import os
import signal
import sys
from typing import Final, NoReturn

import structlog
import trio

from transport.client import BusClient

__all__ = ["EXIT_CONFIG", "EXIT_UNAVAILABLE", "exit_now", "leave_bus", "wait_for_stop_signal"]

log = structlog.get_logger(__name__)

EXIT_CONFIG: Final = 78  # sysexits EX_CONFIG: the supervisor does not retry a bad config
EXIT_UNAVAILABLE: Final = 69  # EX_UNAVAILABLE: a backend is down; the restart policy retries


async def wait_for_stop_signal() -> None:
    """Return on the first SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("stopping", signal=signal.Signals(signum).name)
            return


async def leave_bus(client: BusClient) -> None:
    """Close the bus link; the actor runtime then ends the process cleanly."""
    await client.carrier.aclose()


def exit_now(code: int, message: str, **fields: object) -> NoReturn:
    """Log one error line and end the process with ``code`` (start-up failures only)."""
    log.error(message, exit_code=code, **fields)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)
