"""The observer table plugged into the bus: the observer directory behind
``functionregistered`` (acks.py), a dispatch/completion hook that matches routed calls of
watched functions, the routes of the observe frames, owner calls, local-dispatch reports and
counts, and the table's timers in the bus's ``tick``.

Cost for a call of a function no observer watches: one dict lookup in ``on_dispatch`` and one
attribute test in ``on_completion``; an ``invokefunction`` pays one test for ``activation``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from supervisor.engine.observe.envelope import (
    CallWire,
    caller_of,
    observe_depth,
    routed_document,
    strip_injected,
)
from supervisor.engine.observe.guard import fails, range_fails, resolve
from supervisor.engine.observe.records import Event, Job, Outcome
from supervisor.engine.observe.spec import Compile, Key
from supervisor.engine.observe.table import ObserverTable
from supervisor.engine.rbac import RbacSession
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus
    from supervisor.engine.connection import Connection
    from supervisor.engine.functions import FunctionEntry
    from supervisor.engine.invocations import Pending
    from supervisor.engine.views import BusEvent

log = structlog.get_logger(__name__)


@attrs.define
class LocalCounts:
    """``localinvocationstats`` of one function (§8.2), summed over the reports."""

    count: int = 0
    errors: int = 0
    duration_ms_sum: float = 0.0
    dropped: dict[str, int] = attrs.field(factory=dict)


class ObserveHook:
    def __init__(self, bus: Bus, compile_filter: Compile) -> None:
        self.bus = bus
        self.table = ObserverTable(self, compile_filter)
        self.watched = self.table.watched
        self.local: dict[Key, LocalCounts] = {}

    # -- the table's host ------------------------------------------------------------------

    def live(self, conn: Connection | None) -> bool:
        return self.bus.live(conn)

    def function(self, key: Key) -> FunctionEntry | None:
        entry = self.bus.functions.get(key)
        if entry is None or (not entry.owners and entry.builtin is None):
            return None  # being removed: its last owner is gone
        return entry

    def wake(self, at: float) -> None:
        if self.bus.on_wakeup is not None:
            self.bus.on_wakeup(at)

    def now(self) -> float:
        return self.bus.clock()

    def forbidden(self, conn: Connection, key: Key) -> str | None:
        """The RBAC allow check of the observing session (PROTOCOL §13.4), or None."""
        session = conn.session
        if not isinstance(session, RbacSession):
            return None
        entry = self.bus.functions.get(key)
        return session.policy.denial(session, key[1], key[0], entry.metadata if entry else None)

    def activate(self, entry: FunctionEntry, job: Job, on_done: Outcome) -> None:
        activation = {"observer_id": job.observer_id, "activation_id": job.activation_id}
        wire = CallWire(job.caller, job.depth, activation, job.metadata)
        self.bus.dispatch(
            entry,
            job.data,
            caller=None,
            caller_invocation_id=None,
            downstream_id=job.activation_id,
            metadata=job.metadata,
            traceparent=job.traceparent,
            baggage=job.baggage,
            on_done=on_done,
            wire=wire,
        )

    # -- the observer directory (acks.py) --------------------------------------------------

    def function_stored(
        self, entry: FunctionEntry, conn: Connection, sent_id: str
    ) -> tuple[int, list[dict[str, Any]]]:
        return self.table.function_stored(entry, conn, self.bus.clock())

    def function_removed(self, entry: FunctionEntry, conn: Connection) -> None:
        self.table.function_removed(entry, conn, self.bus.clock())

    # -- bus hooks -------------------------------------------------------------------------

    def on_dispatch(self, pending: Pending, data: Any) -> m.ErrorBody | None:
        watch = self.watched.get((pending.namespace, pending.function_id))
        if watch is not None:
            source = strip_injected(data)  # the input as the caller sent it
            pending.observed = (watch, source, int(time.time() * 1000))
        return None

    def on_completion(
        self, pending: Pending, result: Any, err: m.ErrorBody | None, now: float
    ) -> None:
        snapshot = pending.observed
        if snapshot is None:
            return
        watch, source, started_ms = snapshot
        status = "success" if err is None else "error"
        wire = pending.wire
        metadata = wire.metadata if wire is not None else None
        # the stamped caller only when a filter reads it, or on a match
        caller = caller_of(pending) if watch.reads_caller else None
        doc = routed_document(source, result, err, caller, metadata)
        event: Event | None = None
        values: dict[tuple[str, ...], Any] = {}  # guard paths resolved once per call
        for obs in watch.candidates(doc):
            if obs.state != "active":
                continue
            on = obs.spec.on
            if on != status and on != "complete":
                continue
            guard = obs.guard
            if guard is not None:
                path = guard[0]
                value = (
                    values[path] if path in values else values.setdefault(path, resolve(doc, path))
                )
                if fails(value, guard[1]):
                    continue
            order = obs.order_guard
            if order is not None:
                path = order[0]
                value = (
                    values[path] if path in values else values.setdefault(path, resolve(doc, path))
                )
                if range_fails(value, order[1], order[2]):
                    continue
            try:
                matched = obs.spec.compiled.matches(doc)
            except Exception:  # a valid filter never raises; if one does, it does not match
                log.exception("filter evaluation failed", observer_id=obs.id)
                matched = False
            if not matched:
                continue
            if event is None:
                if "caller" not in doc:
                    doc["caller"] = caller_of(pending)
                event = Event(
                    function_id=pending.function_id,
                    namespace=pending.namespace,
                    invocation_id=pending.invocation_id,
                    status=status,
                    parts=doc,
                    started_at_ms=started_ms,
                    duration_ms=round((now - pending.started) * 1000, 3),
                    depth=observe_depth(wire.observe_depth) if wire is not None else 0,
                    traceparent=pending.traceparent,
                    baggage=pending.baggage,
                )
            self.table.fire(obs, event)

    def bus_event(self, event: BusEvent) -> None:
        if event.kind == "disconnected":
            self.table.connection_gone(event.worker.worker_id, self.bus.clock())

    # -- frames ----------------------------------------------------------------------------

    def invoke(self, conn: Connection, msg: m.InvokeFunction) -> None:
        if msg.activation is None:
            self.bus.invoke(conn, msg)
            return
        reply_id = msg.invocation_id
        if msg.action is not None and msg.action.type == "void":
            reply_id = None

        def reply(result: Any, err: m.ErrorBody | None) -> None:
            if reply_id is None:
                return
            conn.send(
                m.InvocationResult(
                    reply_id, msg.function_id, result, err, msg.traceparent, msg.baggage
                )
            )

        self.bus.registrar.defer(conn, msg, lambda c, x: self.table.owner_call(c, x, reply))

    def observe(self, conn: Connection, msg: m.Observe) -> None:
        self.table.observe(conn, msg, self.bus.clock())

    def unobserve(self, conn: Connection, msg: m.Unobserve) -> None:
        self.table.unobserve(conn, msg, self.bus.clock())

    def ack(self, conn: Connection, msg: m.ObserverAck) -> None:
        self.table.ack(conn, msg, self.bus.clock())

    def reported(self, conn: Connection, msg: m.InvocationsObserved) -> None:
        self.table.reported(conn, msg.items)

    def local_stats(self, conn: Connection, msg: m.LocalInvocationStats) -> None:
        """``localinvocationstats`` (§8.2): summed per function; no reply, no effect."""
        for row in msg.functions if isinstance(msg.functions, list) else []:
            if isinstance(row, dict) and isinstance(row.get("function_id"), str):
                counts = self.local.setdefault((conn.ns, row["function_id"]), LocalCounts())
                counts.count += _count(row.get("count"))
                counts.errors += _count(row.get("errors"))
                total = row.get("duration_ms_sum")
                total = total if isinstance(total, int | float) else 0.0
                total = 0.0 if isinstance(total, bool) else float(total)
                counts.duration_ms_sum += total
                if self.bus.metrics is not None:  # the same RED metrics routed calls feed
                    key = (conn.ns, row["function_id"])
                    calls, errors = _count(row.get("count")), _count(row.get("errors"))
                    self.bus.metrics.add_local(key, calls, errors, total, self.bus.clock())
        drops = msg.dropped_reports if isinstance(msg.dropped_reports, list) else []
        for row in drops:
            if isinstance(row, dict) and isinstance(row.get("function_id"), str):
                counts = self.local.setdefault((conn.ns, row["function_id"]), LocalCounts())
                reason = str(row.get("reason") or "UNKNOWN")
                counts.dropped[reason] = counts.dropped.get(reason, 0) + _count(row.get("count"))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _deferred(bus: Bus, fn: Any) -> Any:
    """A route that waits for the connection's namespace and features (Registrar.defer)."""

    def route(conn: Connection, msg: Any) -> None:
        bus.registrar.defer(conn, msg, fn)

    return route


def install(bus: Bus, compile_filter: Compile) -> ObserveHook:
    """Install the observe family on a bus (after its built-ins): returns the hook."""
    from supervisor.engine.builtins.observers import install as install_builtins

    hook = ObserveHook(bus, compile_filter)
    bus.observer_directory = hook
    bus.hooks.add(hook)
    bus.timers.append(hook.table)
    bus.add_observer(hook.bus_event)
    bus.route(m.InvokeFunction, hook.invoke)
    routes: dict[type, Any] = {
        m.Observe: hook.observe,
        m.Unobserve: hook.unobserve,
        m.ObserverAck: hook.ack,
        m.InvocationsObserved: hook.reported,
        m.LocalInvocationStats: hook.local_stats,
    }
    for cls, fn in routes.items():
        bus.route(cls, _deferred(bus, fn))
    install_builtins(bus, hook.table)
    return hook
