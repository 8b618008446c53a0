"""How a worker keeps its runtime settings in the configuration worker (WORKERS.md §1.6), from
the owner's side: register the entry with its schema, adopt the live value, and re-adopt on
every ``configuration:updated`` event of its id.

The owner starts serving with its config block at once (config.yaml is the source of truth at
boot, so the stored value agrees with it for every key config.yaml sets); adoption runs in the
background and waits, with backoff, for the configuration worker to appear. ``apply`` receives
the expanded value and decides per field what it can take live; it must not raise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import structlog
import trio

from manifests.blocks.strict import BlockError
from storage import StorageError
from transport.client import BusClient, FunctionError, InvocationContext

__all__ = ["CALL_TIMEOUT", "Apply", "ConfigAdoption", "swap_adapter"]

log = structlog.get_logger("configuration.adoption")

CALL_TIMEOUT: Final = 10.0  # §1.6: every configuration::* call of a worker is bounded at 10 s
RETRY_AFTER_TIMEOUT: Final = 5.0  # §1.6: a timed-out apply is retried once after 5 s
_BACKOFF: Final = (0.1, 0.25, 0.5, 1.0, 2.0)
_UNAVAILABLE: Final = frozenset({"function_not_found", "invocation_stopped", "TIMEOUT"})

Apply = Callable[[Any], Awaitable[None]]
A = TypeVar("A")


class ConfigAdoption:
    def __init__(
        self,
        client: BusClient,
        *,
        entry_id: str,
        name: str,
        description: str,
        schema: dict[str, Any],
        seed: Any,
        apply: Apply,
    ) -> None:
        self.client = client
        self.entry_id = entry_id
        self.name = name
        self.description = description
        self.schema = schema
        self.seed = seed
        self._apply = apply
        self._lock = trio.Lock()
        self.adopted = trio.Event()

    async def run(self) -> None:
        """Register, adopt, watch; returns once the watch is in place (events keep coming)."""
        await self._register()
        await self.reapply()
        self.client.register_function(
            f"{self.entry_id}::on-config-change",
            self._on_change,
            description=f"Apply a configuration change of {self.entry_id}",
            metadata={"internal": True},
        )
        _register_trigger(
            self.client,
            trigger_id=f"{self.entry_id}::config-watch",
            trigger_type="configuration",
            function_id=f"{self.entry_id}::on-config-change",
            config={"configuration_id": self.entry_id, "event_types": ["configuration:updated"]},
        )
        await self.reapply()  # catch-up: a set may have landed before the watch existed
        self.adopted.set()

    async def _call(self, function_id: str, payload: dict[str, Any]) -> Any:
        return await self.client.invoke(function_id, payload, timeout=CALL_TIMEOUT)

    async def _register(self) -> None:
        attempt = 0
        include_seed = True
        while True:
            try:
                payload: dict[str, Any] = {
                    "id": self.entry_id,
                    "name": self.name,
                    "description": self.description,
                    "schema": self.schema,
                }
                if include_seed and await self._nothing_stored():
                    payload["initial_value"] = self.seed
                await self._call("configuration::register", payload)
                log.debug("configuration entry registered", id=self.entry_id)
                return
            except FunctionError as exc:
                if exc.code not in _UNAVAILABLE:
                    if include_seed:  # e.g. SCHEMA_INVALID seed: register the schema anyway
                        log.error(
                            "configuration register failed",
                            id=self.entry_id,
                            code=exc.code,
                            error=exc.message,
                        )
                        include_seed = False
                        continue
                    log.error(
                        "configuration register failed; settings stay static",
                        id=self.entry_id,
                        code=exc.code,
                        error=exc.message,
                    )
                    return
            await trio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
            attempt += 1

    async def _nothing_stored(self) -> bool:
        try:
            stored = await self._call("configuration::get", {"id": self.entry_id, "raw": True})
        except FunctionError as exc:
            if exc.code == "NOT_FOUND":
                return True
            raise
        return not isinstance(stored, dict) or stored.get("value") is None

    async def reapply(self) -> None:
        """Re-read the authoritative value and apply it (one at a time)."""
        async with self._lock:
            for attempt in range(2):
                try:
                    result = await self._call("configuration::get", {"id": self.entry_id})
                except FunctionError as exc:
                    if exc.code == "NOT_FOUND":
                        return
                    if exc.code == "TIMEOUT" and attempt == 0:
                        await trio.sleep(RETRY_AFTER_TIMEOUT)
                        continue
                    log.error(
                        "configuration read failed; keeping the current settings",
                        id=self.entry_id,
                        code=exc.code,
                        error=exc.message,
                    )
                    return
                value = result.get("value") if isinstance(result, dict) else None
                if value is not None:
                    await self._apply(value)
                return

    async def _on_change(self, data: Any, ctx: InvocationContext) -> Any:
        await self.reapply()
        return {"ok": True}


def _register_trigger(
    client: BusClient, *, trigger_id: str, trigger_type: str, function_id: str, config: Any
) -> None:
    """A connection-owned trigger with a fixed id (re-registration replaces it)."""
    client.register_trigger(trigger_type, function_id, config, trigger_id=trigger_id)


async def swap_adapter(
    actor: str,
    read: Callable[[], A],
    current: object,
    use: Callable[[A], Awaitable[None]],
) -> None:
    """Adopt a new storage adapter from a configuration value, or keep the current one.

    ``read`` parses the value into the adapter (a bad value raises ``BlockError``); ``use``
    opens it and switches over (raises ``StorageError`` if it cannot). Either failure keeps
    the adapter in use and says why; an unchanged adapter is left alone.
    """
    try:
        adapter = read()
    except BlockError as exc:
        log.error(f"{actor} configuration rejected; adapter unchanged", error=str(exc))
        return
    if adapter == current:
        return
    try:
        await use(adapter)
    except StorageError as exc:
        log.error(
            f"{actor} adapter change failed; keeping the current adapter",
            requested=getattr(adapter, "name", None),
            error=str(exc),
        )
        return
    log.info(f"{actor} adapter changed", adapter=getattr(adapter, "name", None))
