"""What every built-in actor process shares: config, logging, the bus link, the exit rule.

An actor module defines ``async def serve(client, config, data_dir)`` that registers its
functions/trigger types on ``client`` and runs its own servers; ``run_actor`` connects to
the bus, starts ``serve`` and the client side by side, and exits when the bus link closes
(EOF on the inherited socket means the supervisor is gone: no orphans).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import trio

from transport.client import BusClient, connect_from_env

Serve = Callable[[BusClient, dict[str, Any], Path], Awaitable[None]]

EXIT_CONFIG = 78


def load_actor_config() -> dict[str, Any]:
    """The entry's ``config:`` block: a JSON file named by ``III_CONFIG`` (absent: ``{}``)."""
    path = os.environ.get("III_CONFIG")
    if not path:
        return {}
    with open(path, encoding="utf-8") as fh:
        value = json.load(fh)
    return value if isinstance(value, dict) else {}


def data_dir() -> Path:
    path = Path(os.environ.get("III_DATA_DIR") or Path.cwd() / ".iii-state")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _configure_logging(name: str) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    structlog.contextvars.bind_contextvars(actor=name)


class ActorConfigError(Exception):
    """The actor's config block is unusable: the process exits 78 (not retried as-is)."""


def main(name: str, serve: Serve, *, description: str | None = None) -> None:
    """Entry point of ``python -m actors.<name>``.

    The process ends when the bus link closes (EOF: the supervisor is gone), when ``serve``
    returns, or when ``serve`` raises; ``ActorConfigError`` exits 78, ``SystemExit`` keeps
    its code.
    """
    _configure_logging(os.environ.get("III_WORKER_NAME") or name)
    log = structlog.get_logger(name)
    try:
        config = load_actor_config()
    except (OSError, ValueError) as exc:
        log.error("cannot read actor config", error=str(exc))
        sys.exit(EXIT_CONFIG)

    async def _run() -> None:
        worker_name = os.environ.get("III_WORKER_NAME") or name
        async with connect_from_env(worker_name, description=description) as client:
            async with trio.open_nursery() as nursery:

                async def link() -> None:
                    await client.run()
                    log.info("bus link closed; exiting")
                    nursery.cancel_scope.cancel()

                nursery.start_soon(link)
                await serve(client, config, data_dir())
                nursery.cancel_scope.cancel()

    try:
        trio.run(_run)
    except* KeyboardInterrupt:
        pass
    except* ActorConfigError as group:
        for exc in group.exceptions:
            log.error("invalid actor configuration", error=str(exc))
        sys.exit(EXIT_CONFIG)
    except* SystemExit as group:
        first = group.exceptions[0]
        sys.exit(first.code if isinstance(first, SystemExit) else 1)
