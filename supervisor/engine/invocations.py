"""The in-flight invocation table: who called, who executes, until when (sans I/O).

Each pending call is keyed by the id the callee sees. ``pop`` removes it exactly once;
``expired(now)`` lists the calls whose deadline has passed. Deadlines sit in a heap with lazy
deletion: completed calls are dropped when they reach its top.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from transport.messages import ErrorBody

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection

Outcome = Callable[[Any, ErrorBody | None], None]


@attrs.define(eq=False, slots=True)
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
    expiry: ErrorBody | None = None  # the error at the deadline (None: the engine deadline's)
    parent_span_id: str | None = None  # set by the tracing hook: the caller's span, if any
    # Observe (supervisor/engine/observe): the calling connection, also for void calls; what
    # it needs of the message that made the call (envelope.CallWire: no data); the stamped
    # caller, built once when asked; the observers a completion is matched against.
    origin: Connection | None = None
    wire: Any = None
    stamp: Any = None
    observed: Any = None


class InvocationTable:
    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}
        self._deadlines: list[tuple[float, str]] = []

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
        if pending.caller is not None:
            pending.caller.calls_out.discard(invocation_id)
        if pending.callee is not None:
            pending.callee.calls_in.discard(invocation_id)
        heap = self._deadlines
        while heap and heap[0][1] not in self._pending:  # keep the heap as small as the table
            heapq.heappop(heap)
        return pending

    def in_flight(self) -> list[Pending]:
        return list(self._pending.values())

    def expired(self, now: float) -> list[Pending]:
        """The calls still pending whose deadline is at or before ``now``."""
        out: list[Pending] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, inv_id = heapq.heappop(heap)
            pending = self._pending.get(inv_id)
            if pending is not None:
                out.append(pending)
        return out

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap and heap[0][1] not in self._pending:
            heapq.heappop(heap)
        return heap[0][0] if heap else None
