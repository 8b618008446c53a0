"""The in-flight invocation table: who called, who executes, until when (sans I/O).

Each pending call is keyed by the id the callee sees. Completing it hands the outcome to the
caller (a connection, or an in-process waiter) exactly once and updates the per-function
statistics the bus keeps (count, errors, latency) — the seed of the metrics milestone.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from transport.messages import ErrorBody

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection

Outcome = Callable[[Any, ErrorBody | None], None]


@attrs.define(eq=False)
class Pending:
    invocation_id: str  # the id the callee sees
    function_id: str
    namespace: str
    caller: Connection | None  # None: in-process caller or nobody (void)
    caller_invocation_id: str | None  # None: nobody waits for a reply
    callee: Connection | None
    started: float
    deadline: float | None
    on_done: Outcome | None = None  # in-process waiter
    traceparent: str | None = None
    baggage: str | None = None
    done: bool = False


@attrs.define
class FunctionStats:
    calls: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        mean = self.total_seconds / self.calls if self.calls else 0.0
        return {
            "calls": self.calls,
            "errors": self.errors,
            "mean_ms": round(mean * 1000, 3),
            "max_ms": round(self.max_seconds * 1000, 3),
        }


class InvocationTable:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: dict[str, Pending] = {}
        self._deadlines: list[tuple[float, str]] = []
        self.stats: dict[tuple[str, str], FunctionStats] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, invocation_id: str) -> bool:
        return invocation_id in self._pending

    def get(self, invocation_id: str) -> Pending | None:
        return self._pending.get(invocation_id)

    def add(self, pending: Pending) -> None:
        self._pending[pending.invocation_id] = pending
        if pending.deadline is not None:
            heapq.heappush(self._deadlines, (pending.deadline, pending.invocation_id))
        if pending.caller is not None:
            pending.caller.calls_out.add(pending.invocation_id)
        if pending.callee is not None:
            pending.callee.calls_in.add(pending.invocation_id)

    def pop(self, invocation_id: str) -> Pending | None:
        pending = self._pending.pop(invocation_id, None)
        if pending is None:
            return None
        pending.done = True
        if pending.caller is not None:
            pending.caller.calls_out.discard(invocation_id)
        if pending.callee is not None:
            pending.callee.calls_in.discard(invocation_id)
        elapsed = self._clock() - pending.started
        stats = self.stats.get((pending.namespace, pending.function_id))
        if stats is None:
            stats = self.stats[(pending.namespace, pending.function_id)] = FunctionStats()
        stats.calls += 1
        stats.total_seconds += elapsed
        if elapsed > stats.max_seconds:
            stats.max_seconds = elapsed
        return pending

    def record_error(self, pending: Pending) -> None:
        stats = self.stats.get((pending.namespace, pending.function_id))
        if stats is not None:
            stats.errors += 1

    def expired(self) -> list[str]:
        """Ids whose deadline has passed (still pending)."""
        now = self._clock()
        out: list[str] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, inv_id = heapq.heappop(self._deadlines)
            if inv_id in self._pending:
                out.append(inv_id)
        return out

    def next_deadline(self) -> float | None:
        while self._deadlines and self._deadlines[0][1] not in self._pending:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None
