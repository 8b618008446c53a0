"""engine::observers::get (OBSERVE.md §9.1): one observer's definition, state and counters.

``{id}`` → ``{"observer": ObserverDetail}``; an unknown id is ``NOT_FOUND``. Installed with
the observe family (``supervisor.engine.observe.hook.install``), which owns the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.engine.errors import InvocationFailed
from supervisor.engine.observe.detail import detail

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus, CallContext
    from supervisor.engine.observe.table import ObserverTable


def observers_get(table: ObserverTable, data: dict[str, Any]) -> dict[str, Any]:
    oid = data.get("id")
    if not isinstance(oid, str) or not oid:
        raise InvocationFailed(
            "INVALID_ARGUMENTS", "engine::observers::get needs `id`, the observer's id"
        )
    shown = detail(table, oid)
    if shown is None:
        raise InvocationFailed("NOT_FOUND", f"no observer with id {oid}")
    return {"observer": shown}


def install(bus: Bus, table: ObserverTable) -> None:
    def get(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
        return observers_get(table, data)

    bus.add_builtin(
        "engine::observers::get",
        get,
        description="One observer: its definition, state, fires and drop counters",
    )
