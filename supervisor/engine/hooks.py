"""Hooks around registration, dispatch and completion: where metrics, tracing, RBAC checks and
observers plug into the bus instead of growing its core.

A hook is any object with one or more of ``on_registration``, ``on_dispatch`` and
``on_completion``; ``Hooks.add`` picks up the methods it has. The bus calls a stage only when
some hook installed it, so the hot path pays for nothing that is not there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection
    from supervisor.engine.invocations import Pending
    from transport.messages import ErrorBody

# Before a registration message is applied: a string refuses it (the reason).
RegistrationHook = Callable[["Connection", Any], "str | None"]
# Before a call is sent to its callee: an error body refuses it (the caller gets it). A hook
# may rewrite ``pending.traceparent`` / ``pending.baggage``: the callee gets what it leaves.
DispatchHook = Callable[["Pending", Any], "ErrorBody | None"]
# After a call ended (result, error, timeout or departure): its result (None on error), the
# error, and the time it ended.
CompletionHook = Callable[["Pending", Any, "ErrorBody | None", float], None]


class Hook(Protocol):
    """Documentation of the three optional methods; hooks need not inherit from it."""

    def on_registration(self, conn: Connection, msg: Any) -> str | None: ...
    def on_dispatch(self, pending: Pending, data: Any) -> ErrorBody | None: ...
    def on_completion(
        self, pending: Pending, result: Any, err: ErrorBody | None, now: float
    ) -> None: ...


class Hooks:
    def __init__(self) -> None:
        self.registration: list[RegistrationHook] = []
        self.dispatch: list[DispatchHook] = []
        self.completion: list[CompletionHook] = []

    def add(self, hook: object) -> None:
        found = False
        for stage in ("registration", "dispatch", "completion"):
            method = getattr(hook, f"on_{stage}", None)
            if method is not None:
                getattr(self, stage).append(method)
                found = True
        if not found:
            raise TypeError(f"{hook!r} has none of on_registration/on_dispatch/on_completion")

    def remove(self, hook: object) -> None:
        for stage in ("registration", "dispatch", "completion"):
            method = getattr(hook, f"on_{stage}", None)
            hooks: list[Any] = getattr(self, stage)
            if method is not None and method in hooks:
                hooks.remove(method)
