"""The observer table's records (OBSERVE.md §5.1): an observer, an accepted activation, an
event to match, a tombstone; the constants of the protocol and small lenient readers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from supervisor.engine.observe.spec import Key, ObserverSpec
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection
    from supervisor.engine.functions import FunctionEntry

OBSERVE_FEATURE = "observe.v1"
LOCAL_DISPATCH_FEATURE = "local-dispatch.v1"
LOOP_LIMIT = 8  # §7.4: an activation deeper than this is dropped
GRACE = 30.0  # §5.5: a departed observing worker's observers wait this long for a replay
ACK_DEADLINE = 35.0  # §5.4 #7: the owner's 30 s hook timeout plus a margin
TOMBSTONE_TTL = 600.0  # §5.6
QUEUE_LIMIT = 10_000  # §7.6: queued activations per observer
TERMINAL = ("error", "disposed")

Outcome = Callable[[Any, "m.ErrorBody | None"], None]


class Host(Protocol):
    """What the table needs of the bus."""

    def live(self, conn: Connection | None) -> bool: ...
    def function(self, key: Key) -> FunctionEntry | None: ...
    def activate(self, entry: FunctionEntry, job: Job, on_done: Outcome) -> None: ...
    def wake(self, at: float) -> None: ...
    def now(self) -> float: ...
    def forbidden(self, conn: Connection, key: Key) -> str | None: ...


def capable(conn: Connection | None, feature: str = OBSERVE_FEATURE) -> bool:
    return conn is not None and feature in getattr(conn, "features", ())


@attrs.define(eq=False, slots=True)
class Job:
    """One accepted activation, waiting or in flight."""

    data: Any
    metadata: Any
    caller: dict[str, Any]
    depth: int
    activation_id: str
    observer_id: str
    traceparent: str | None = None
    baggage: str | None = None
    reply: Outcome | None = None  # owner calls: the owner waits for the target's answer


@attrs.define(eq=False, slots=True)
class Event:
    """An observed invocation or a reported one, as activations need it."""

    function_id: str
    namespace: str
    invocation_id: str
    status: str
    parts: dict[str, Any]
    started_at_ms: int
    duration_ms: float
    depth: int
    traceparent: str | None = None
    baggage: str | None = None


@attrs.define(eq=False)
class Observer:
    spec: ObserverSpec
    conn: Connection | None
    created_at_ms: int
    expires_at: float | None
    state: str = "pending"
    reason: m.ErrorBody | None = None
    fires: int = 0
    ever_active: bool = False
    attached: bool = False
    announced_to: Connection | None = None
    announced_revision: int = -1
    acked_by: Connection | None = None
    ack_deadline: float | None = None
    grace_until: float | None = None
    in_flight: int = 0
    queue: deque[Job] = attrs.field(factory=deque)
    dropped: dict[str, int] = attrs.field(factory=dict)
    guard: Any = None  # guard.eq_guard of its filter: a cheap pre-check at completion
    order_guard: Any = None  # guard.range_guard of its filter: another one

    @property
    def id(self) -> str:
        return self.spec.id

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def info(self) -> dict[str, Any]:
        """ObserverInfo (§3.6): what its owner sees."""
        return {
            "id": self.spec.id,
            "args": self.spec.args,
            "filters": self.spec.compiled.normal,
            "target": self.spec.target[1],
            "capture": list(self.spec.capture),
            "on": self.spec.on,
        }


@attrs.frozen
class Tombstone:
    reason: m.ErrorBody
    fires: int
    until: float


def on_accepts(on: str, status: str) -> bool:
    return on == "complete" or on == status


def strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def int_or_zero(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


def number_or_zero(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return 0.0


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
