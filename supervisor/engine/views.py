"""What the bus shows of a connection to the supervisor and to introspection.

``WorkerView`` copies the scalar facts of a connection when it is made (O(1)); its function,
trigger-type and trigger lists are read from the connection the first time they are asked for
(O(n log n), once per view), so an observer that only compares ``revision`` stays O(1) however
many functions the worker registers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection


class WorkerView:
    __slots__ = (
        "_conn",
        "_functions",
        "_trigger_types",
        "_triggers",
        "worker_id",
        "name",
        "namespace",
        "pid",
        "label",
        "kind",
        "connected_at",
        "registered",
        "active_invocations",
        "peer",
        "draining",
        "revision",
    )

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._functions: tuple[str, ...] | None = None
        self._trigger_types: tuple[str, ...] | None = None
        self._triggers: tuple[str, ...] | None = None
        self.worker_id = conn.worker_id
        self.name = conn.name
        self.namespace = conn.ns
        self.pid = conn.pid
        self.label = conn.label
        self.kind = conn.kind
        self.connected_at = conn.connected_at
        self.registered = conn.registered
        self.active_invocations = len(conn.calls_in)
        self.peer = conn.peer
        self.draining = conn.draining
        self.revision = conn.revision

    @property
    def function_ids(self) -> tuple[str, ...]:
        if self._functions is None:
            self._functions = tuple(sorted(fid for _, fid in self._conn.functions))
        return self._functions

    @property
    def trigger_type_ids(self) -> tuple[str, ...]:
        if self._trigger_types is None:
            self._trigger_types = tuple(sorted(tid for _, tid in self._conn.trigger_types))
        return self._trigger_types

    @property
    def trigger_ids(self) -> tuple[str, ...]:
        if self._triggers is None:
            self._triggers = tuple(sorted(self._conn.triggers))
        return self._triggers

    def __repr__(self) -> str:
        return f"WorkerView({self.worker_id!r}, name={self.name!r}, revision={self.revision})"


@attrs.frozen
class BusEvent:
    # "connected" | "registered" | "changed" (registrations; at most one per connection per
    # flush) | "drained" (a draining connection has no call in flight) | "disconnected"
    kind: str
    worker: WorkerView
