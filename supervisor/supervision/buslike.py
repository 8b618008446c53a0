"""The bus as supervision sees it: the protocols the engine implements, and what a controller
has heard from it (a wake-up per event, and which draining connections have gone quiet).

Supervision never imports ``supervisor.engine``; ``app.py`` hands the engine's bus in as a
``BusLike`` and the unit tests hand in a fake that implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import trio

__all__ = ["BusLike", "BusEventLike", "WorkerViewLike", "BusNotices", "QUIET_KINDS"]

# A connection being drained is done when it says so or when it is gone (the bus fails the
# calls still in flight to a closed connection, so none can be left waiting on it).
QUIET_KINDS = frozenset({"drained", "disconnected"})


class WorkerViewLike(Protocol):
    """One bus connection as supervision reads it. ``revision`` increases whenever the
    connection's registrations change; the three id tuples are built when read (O(n)), so
    code that runs on every event compares revisions instead."""

    @property
    def worker_id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def namespace(self) -> str: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def label(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def connected_at(self) -> float: ...
    @property
    def registered(self) -> bool: ...
    @property
    def active_invocations(self) -> int: ...
    @property
    def peer(self) -> str | None: ...
    @property
    def draining(self) -> bool: ...
    @property
    def revision(self) -> int: ...
    @property
    def function_ids(self) -> tuple[str, ...]: ...
    @property
    def trigger_type_ids(self) -> tuple[str, ...]: ...
    @property
    def trigger_ids(self) -> tuple[str, ...]: ...


class BusEventLike(Protocol):
    """``kind`` is "connected", "registered", "changed" (registrations; at most one per
    connection per scheduler tick), "disconnected" or "drained" (a draining connection has
    no call left in flight)."""

    @property
    def kind(self) -> str: ...
    @property
    def worker(self) -> WorkerViewLike: ...


class BusLike(Protocol):
    """What the child manager and its controllers need of the engine's bus."""

    def add_observer(self, fn: Callable[[BusEventLike], None]) -> None: ...

    def workers(self) -> Sequence[WorkerViewLike]: ...

    async def ping(self, worker_id: str, timeout: float) -> bool: ...

    def set_draining(self, worker_id: str) -> None: ...

    def close_worker(self, worker_id: str) -> None: ...

    async def serve_local(self, stream: trio.abc.Stream, *, label: str) -> None: ...


class BusNotices:
    """Bus events as one controller hears them (the child manager forwards every event).

    ``wait``/``wait_until`` return at the next event or at the timeout, whichever is first;
    readiness uses them instead of polling. ``expect_quiet`` names the connections a stop is
    draining; each leaves the set when the bus reports it drained or disconnected.
    """

    def __init__(self) -> None:
        self._poke = trio.Event()
        self._draining: set[str] = set()

    def hear(self, event: BusEventLike) -> None:
        if self._draining and event.kind in QUIET_KINDS:
            self._draining.discard(event.worker.worker_id)
        self.wake()

    def wake(self) -> None:
        self._poke.set()
        self._poke = trio.Event()

    async def wait(self, within: float) -> None:
        with trio.move_on_after(max(0.0, within)):
            await self._poke.wait()

    async def wait_until(self, deadline: float) -> None:
        """Until the next event or the trio time ``deadline``, whichever is first."""
        with trio.move_on_at(deadline):
            await self._poke.wait()

    def expect_quiet(self, worker_ids: Iterable[str]) -> None:
        """Start (or, with no ids, stop) tracking connections until each goes quiet. Call it
        before ``set_draining``: the bus may report an idle connection drained at once."""
        self._draining = set(worker_ids)

    @property
    def not_quiet(self) -> frozenset[str]:
        return frozenset(self._draining)
