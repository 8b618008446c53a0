"""The skeleton of every actor process: read and parse the config block, connect to the bus, run
the actor's ``serve``, and stop cleanly on a signal, on the bus link closing or on a storage error.

``serve(ctx)`` registers its functions and trigger types on ``ctx.client``, runs until
``ctx.stopped()`` returns, and closes what it opened on the way out; the runtime then leaves the
bus. EOF on the bus link means the supervisor is gone, and the process ends at once (no orphans).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar

import attrs
import structlog
import trio

from actors.runtime.adoption import Apply, ConfigAdoption
from actors.runtime.exits import EXIT_CONFIG, EXIT_UNAVAILABLE, ActorExit
from actors.runtime.stores import kv_backend
from manifests.blocks.adapters import BridgeAdapter, KvAdapter, RedisAdapter
from manifests.blocks.jsonschema import json_schema
from manifests.blocks.strict import BlockError
from storage import KeyValueStore, StorageError, open_kv
from transport.client import BusClient, connect_from_env

__all__ = ["ActorContext", "data_dir", "load_actor_config", "main"]

B = TypeVar("B")

log = structlog.get_logger("actor")


@attrs.define
class ActorContext(Generic[B]):
    """What ``serve`` gets: the bus client, its parsed block, where its data lives, the stop."""

    client: BusClient
    block: B
    raw: dict[str, Any]  # the block as config.yaml wrote it (interpolated)
    data_dir: Path
    stopping: trio.Event = attrs.Factory(trio.Event)  # set by SIGTERM or SIGINT

    async def stopped(self) -> None:
        """Return once the actor is asked to stop."""
        await self.stopping.wait()

    def open_kv(
        self, adapter: KvAdapter | RedisAdapter | BridgeAdapter, *, name: str
    ) -> AbstractAsyncContextManager[KeyValueStore]:
        """The store an adapter block names; ``name`` is its files' and Redis keys' prefix."""
        return open_kv(kv_backend(adapter, self.data_dir), name=name)

    def adopt(
        self,
        nursery: trio.Nursery,
        *,
        entry_id: str,
        name: str,
        description: str,
        defaults: Mapping[str, Any],
        apply: Apply,
    ) -> ConfigAdoption:
        """Keep this actor's settings in the configuration worker (WORKERS.md §1.6), in the
        background: the entry's schema is the block's, seeded with config.yaml's block (or
        ``defaults``); ``apply`` gets each value the worker holds."""
        adoption = ConfigAdoption(
            self.client,
            entry_id=entry_id,
            name=name,
            description=description,
            schema=json_schema(type(self.block), title=entry_id),
            seed=self.raw or dict(defaults),
            apply=apply,
        )
        nursery.start_soon(adoption.run)
        return adoption


Serve = Callable[[ActorContext[B]], Awaitable[None]]


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
    """JSON lines on stderr (the supervisor captures them) at ``III_LOG_LEVEL`` (info)."""
    level_name = (os.environ.get("III_LOG_LEVEL") or "info").upper()
    level = logging.getLevelNamesMapping().get(
        "WARNING" if level_name == "WARN" else level_name, logging.INFO
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )
    structlog.contextvars.bind_contextvars(actor=name)


def _exit(code: int, message: str, **fields: object) -> NoReturn:
    log.error(message, exit_code=code, **fields)
    sys.exit(code)


def main(
    name: str, serve: Serve[B], *, parse: Callable[[Any], B], description: str | None = None
) -> None:
    """Entry point of ``python -m actors.<name>``: ``parse`` reads the block (a ``BlockError``
    exits 78 before connecting), then ``serve`` runs on the bus.

    A storage error that reaches the runtime exits 69 (the restart policy retries); an
    :class:`ActorExit` exits with its code; ``SystemExit`` keeps its code.
    """
    worker = os.environ.get("III_WORKER_NAME") or name
    _configure_logging(worker)
    try:
        raw = load_actor_config()
    except (OSError, ValueError) as exc:
        _exit(EXIT_CONFIG, "cannot read actor config", error=str(exc))
    try:
        block = parse(raw)
    except BlockError as exc:
        _exit(EXIT_CONFIG, "invalid configuration", error=str(exc))

    async def run() -> None:
        async with connect_from_env(worker, description=description) as client:
            ctx = ActorContext(client, block, raw, data_dir())
            await _serve(ctx, serve)

    try:
        trio.run(run)
    except* KeyboardInterrupt:
        pass
    except* ActorExit as group:
        first = _first(group, ActorExit)
        _exit(first.code, first.message, **first.fields)
    except* BlockError as group:
        _exit(EXIT_CONFIG, "invalid configuration", error=str(_first(group, BlockError)))
    except* StorageError as group:
        _exit(EXIT_UNAVAILABLE, "storage unavailable", error=str(_first(group, StorageError)))
    except* SystemExit as group:
        code = _first(group, SystemExit).code
        sys.exit(code if isinstance(code, int) else 1)


E = TypeVar("E", bound=BaseException)


def _first(group: BaseExceptionGroup[E], kind: type[E]) -> E:
    """The first leaf of what ``except*`` matched (it holds only ``kind``)."""
    exc: BaseException = group.exceptions[0]
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, kind)
    return exc


async def _serve(ctx: ActorContext[B], serve: Serve[B]) -> None:
    async with trio.open_nursery() as nursery:

        async def link() -> None:
            await ctx.client.run()
            log.info("bus link closed; exiting")
            nursery.cancel_scope.cancel()

        nursery.start_soon(link)
        nursery.start_soon(_watch_signals, ctx.stopping)
        await serve(ctx)
        await ctx.client.carrier.aclose()  # leave the bus: the supervisor sees a clean exit
        nursery.cancel_scope.cancel()


async def _watch_signals(stopping: trio.Event) -> None:
    """SIGTERM or SIGINT asks ``serve`` to stop; it closes its stores (flush + fsync) first."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("stopping", signal=signal.Signals(signum).name)
            stopping.set()
            return
