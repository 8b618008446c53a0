"""The message bus as a synchronous core: registries, routing and the in-flight table.

Everything here is plain calls driven by decoded messages (``handle``) and by time passed in
(``tick(now)``: deadlines, the namespace grace, the functions-available event); what it sends
goes through ``Connection.send``, which only enqueues. The trio edge (``edge.py``) reads and
writes the sockets and calls ``tick`` when ``next_wakeup`` says so. PROTOCOL.md §4–§9, §12.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import structlog

from supervisor.engine.acks import NoObservers, ObserverDirectory
from supervisor.engine.builtin_call import run_builtin
from supervisor.engine.channels import ChannelRegistry
from supervisor.engine.connection import Connection
from supervisor.engine.enqueue import enqueue
from supervisor.engine.errors import (
    DEFAULT,
    INVALID_NAMESPACE_MSG,
    blank,
    error,
)
from supervisor.engine.features import ENGINE_FEATURES
from supervisor.engine.functions import FunctionEntry, FunctionTable
from supervisor.engine.hooks import Hooks
from supervisor.engine.invocations import InvocationTable, Outcome, Pending
from supervisor.engine.metrics import CallMetrics
from supervisor.engine.observe.envelope import CallWire, observe_fields
from supervisor.engine.registration import Registrar
from supervisor.engine.triggers import Binding, Provider, TriggerTable
from supervisor.engine.views import BusEvent, WorkerView
from transport import messages as m
from transport.tracecontext import trace_fields

log = structlog.get_logger(__name__)

FUNCTIONS_AVAILABLE_INTERVAL = 1.0  # engine::functions-available fires at most once a second
Spawn = Callable[..., None]


@attrs.define(eq=False)
class CallContext:
    """What a built-in function sees of its call."""

    bus: Bus
    caller: Connection | None
    function_id: str
    namespace: str


class Bus:
    def __init__(
        self,
        *,
        namespace_grace_ms: int = 5000,
        invocation_deadline: float | None = 300.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: bool = True,
    ) -> None:
        self.namespace_grace = namespace_grace_ms / 1000
        self.invocation_deadline = invocation_deadline
        self.clock = clock
        self.started_at = time.time()
        self.connections: dict[str, Connection] = {}
        self.functions = FunctionTable()
        self.triggers = TriggerTable(self.live)
        self.names: dict[tuple[str, str], Connection] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.table = InvocationTable()
        self.channels = ChannelRegistry(clock)
        self.hooks = Hooks()
        self.metrics = CallMetrics() if metrics else None  # RED metrics (metrics.py)
        if self.metrics is not None:
            self.hooks.add(self.metrics)
        self.tracing: Any = None  # the span hook (tracing.py), installed by runner.build_bus
        self.observer_directory: ObserverDirectory = NoObservers()  # acks.py: the seam
        self.timers: list[Any] = []  # tables with tick(now) / next_wakeup() (observe/table.py)
        self.registrar = Registrar(self)
        # Set by the edge: run an async function in its nursery; be told to flush "changed"
        # events; be told an earlier wake-up is due.
        self.spawn: Spawn | None = None
        self.on_changes: Callable[[], None] | None = None
        self.on_wakeup: Callable[[float], None] | None = None
        self._observers: list[Callable[[BusEvent], None]] = []
        self._changed: dict[str, Connection] = {}
        self._awaiting_namespace: deque[Connection] = deque()
        self._functions_seen = self.functions.revision
        self._functions_due: float | None = None
        self._pong_waiters: dict[tuple[str, int], Callable[[], None]] = {}
        self._handlers: dict[type, Callable[[Connection, Any], None]] = {
            m.InvokeFunction: self.invoke,
            m.InvocationResult: self.complete,
            m.TriggerRegistrationResult: self.triggers.acknowledge,
            m.Reattach: self.registrar.reattach,
            m.Ping: self._pong,
            m.SupPong: self._sup_pong,
        }
        for cls in self.registrar.HANDLED:
            self._handlers[cls] = self.registrar.handle
        # Pong, SupPing, WorkerRegistered, RegistrationRejected from a worker: ignored.

    # -- tables the built-ins read ---------------------------------------------------------

    @property
    def providers(self) -> dict[tuple[str, str], Provider]:
        return self.triggers.providers

    @property
    def bindings(self) -> dict[str, Binding]:
        return self.triggers.bindings

    # -- observers -------------------------------------------------------------------------

    def add_observer(self, fn: Callable[[BusEvent], None]) -> None:
        self._observers.append(fn)

    def emit(self, kind: str, conn: Connection) -> None:
        if not self._observers:
            return
        event = BusEvent(kind, WorkerView(conn))
        for fn in list(self._observers):
            try:
                fn(event)
            except Exception:
                log.exception("bus observer failed", event=kind)

    def touch(self, conn: Connection) -> None:
        """A connection's registrations changed: one "changed" event at the next flush."""
        conn.revision += 1
        if not self._observers or conn.worker_id in self._changed:
            return
        self._changed[conn.worker_id] = conn
        if len(self._changed) == 1 and self.on_changes is not None:
            self.on_changes()

    def flush_changes(self) -> None:
        """Emit the coalesced "changed" events: at most one per connection per flush."""
        changed, self._changed = self._changed, {}
        for conn in changed.values():
            if not conn.closing:
                self.emit("changed", conn)

    def functions_changed(self) -> None:
        if self._functions_due is None:
            self._functions_due = self.clock() + FUNCTIONS_AVAILABLE_INTERVAL
            self._wake(self._functions_due)

    def view(self, conn: Connection) -> WorkerView:
        return WorkerView(conn)

    def workers(self) -> list[WorkerView]:
        return [WorkerView(c) for c in self.connections.values() if not c.closing]

    def in_flight_to(self, worker_id: str) -> int:
        conn = self.connections.get(worker_id)
        return len(conn.calls_in) if conn else 0

    def set_draining(self, worker_id: str) -> None:
        """A worker being stopped: calls already running finish, new ones fail at once."""
        conn = self.connections.get(worker_id)
        if conn is None or conn.draining:
            return
        conn.draining = True
        if not conn.calls_in:
            self.emit("drained", conn)

    def close_worker(self, worker_id: str) -> None:
        """Tear a connection down abnormally (code 1012), so an SDK worker reconnects."""
        conn = self.connections.get(worker_id)
        if conn is not None and conn.cancel_scope is not None:
            conn.cancel_scope.cancel()

    def live(self, conn: Connection | None) -> bool:
        return conn is not None and not conn.closing and conn.worker_id in self.connections

    # -- time ------------------------------------------------------------------------------

    def _wake(self, at: float) -> None:
        if self.on_wakeup is not None:
            self.on_wakeup(at)

    def next_wakeup(self) -> float | None:
        """The earliest time ``tick`` has work: a deadline, a grace, a functions event."""
        times = [t for t in (self.table.next_deadline(), self._functions_due) if t is not None]
        times += [t for t in (timer.next_wakeup() for timer in self.timers) if t is not None]
        while self._awaiting_namespace:
            head = self._awaiting_namespace[0]
            if head.namespace is None and not head.closing and head.grace_until is not None:
                times.append(head.grace_until)
                break
            self._awaiting_namespace.popleft()
        return min(times) if times else None

    def tick(self, now: float) -> float | None:
        """Everything due at ``now``; returns when to call again."""
        self.expire(now)
        self.pin_overdue(now)
        self.publish_functions(now)
        for timer in self.timers:
            timer.tick(now)
        return self.next_wakeup()

    def expire(self, now: float) -> int:
        """Fail the calls whose engine deadline has passed; returns how many."""
        expired = self.table.expired(now)
        ms = int((self.invocation_deadline or 0) * 1000)
        for pending in expired:
            text = f"Invocation of {pending.function_id} exceeded the engine deadline of {ms} ms"
            self.finish(pending, None, pending.expiry or error("invocation_timeout", text))
        return len(expired)

    def pin_overdue(self, now: float) -> int:
        """Pin to ``default`` every connection whose namespace grace ran out (§4.4)."""
        pinned = 0
        queue = self._awaiting_namespace
        while queue:
            conn = queue[0]
            if conn.namespace is not None or conn.closing:
                queue.popleft()
                continue
            if conn.grace_until is None or conn.grace_until > now:
                break
            queue.popleft()
            log.info(
                "no engine::workers::register within grace; pinning to default",
                worker_id=conn.worker_id,
            )
            self.registrar.pin(conn, DEFAULT)
            pinned += 1
        return pinned

    def publish_functions(self, now: float) -> bool:
        """Fire engine::functions-available if the set changed and a second has passed."""
        if self._functions_due is None or now < self._functions_due:
            return False
        self._functions_due = None
        if self.functions.revision == self._functions_seen:
            return False
        self._functions_seen = self.functions.revision
        if not self.triggers.count_bound((DEFAULT, "engine::functions-available")):
            return False  # nobody listens: do not build the list
        summaries = [e.summary() for _, e in sorted(self.functions.items(), key=lambda i: i[0])]
        self.fire_event(
            "engine::functions-available", {"event": "functions_changed", "functions": summaries}
        )
        return True

    # -- connections -----------------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        """A new link: greet it, start its namespace grace, tell who listens."""
        self.connections[conn.worker_id] = conn
        conn.grace_until = self.clock() + self.namespace_grace
        self._awaiting_namespace.append(conn)
        if len(self._awaiting_namespace) == 1:
            self._wake(conn.grace_until)
        conn.send(m.WorkerRegistered(conn.worker_id, conn.reattach_token, list(ENGINE_FEATURES)))
        self.fire_event("engine::workers-available", worker_event("worker_connected", conn))
        self.emit("connected", conn)
        log.debug("worker connected", worker_id=conn.worker_id, kind=conn.kind, peer=conn.peer)

    def route(self, cls: type, fn: Callable[[Connection, Any], None]) -> None:
        self._handlers[cls] = fn

    def handle(self, conn: Connection, msg: Any) -> None:
        handler = self._handlers.get(type(msg))
        if handler is not None:
            handler(conn, msg)

    def expect_pong(self, conn: Connection, seq: int, fn: Callable[[], None]) -> None:
        self._pong_waiters[(conn.worker_id, seq)] = fn

    def forget_pong(self, conn: Connection, seq: int) -> None:
        self._pong_waiters.pop((conn.worker_id, seq), None)

    def _pong(self, conn: Connection, msg: m.Ping) -> None:
        conn.send(m.Pong())

    def _sup_pong(self, conn: Connection, msg: m.SupPong) -> None:
        waiter = self._pong_waiters.pop((conn.worker_id, msg.seq), None)
        if waiter is not None:
            waiter()

    def cleanup(self, conn: Connection) -> None:
        """Disconnect clean-up (§4.6); runs once per connection, O(what it owned)."""
        if conn.cleaned.is_set():
            return
        conn.closing = True
        conn.buffered = None
        self.registrar.forget(conn)
        stopped = error("invocation_stopped", "Invocation stopped")
        for inv_id in list(conn.calls_in) + list(conn.calls_out):
            pending = self.table.get(inv_id)
            if pending is not None:
                self.finish(pending, None, stopped)
        self.connections.pop(conn.worker_id, None)
        self._changed.pop(conn.worker_id, None)
        conn.close_outbox()
        conn.cleaned.set()
        self.fire_event("engine::workers-available", worker_event("worker_disconnected", conn))
        self.emit("disconnected", conn)
        log.debug("worker disconnected", worker_id=conn.worker_id, name=conn.name)

    # -- built-ins -------------------------------------------------------------------------

    def add_builtin(
        self,
        function_id: str,
        handler: Callable[..., Any],
        *,
        description: str | None = None,
        component: str = "iii-engine-functions",
        request_format: Any = None,
        response_format: Any = None,
    ) -> None:
        self.functions.put(
            FunctionEntry(
                function_id=function_id,
                namespace=DEFAULT,
                description=description,
                builtin=handler,
                component=component,
                request_format=request_format,
                response_format=response_format,
            )
        )
        self._functions_seen = self.functions.revision

    def add_builtin_trigger_type(
        self,
        type_id: str,
        description: str,
        *,
        component: str,
        on_register: Callable[[Binding], str | None] | None = None,
        on_unregister: Callable[[Binding], None] | None = None,
    ) -> None:
        self.triggers.add_provider(
            Provider(
                type_id=type_id,
                namespace=DEFAULT,
                description=description,
                conn=None,
                component=component,
                on_register=on_register,
                on_unregister=on_unregister,
            )
        )

    def fire_event(self, type_id: str, payload: Any) -> None:
        """Fire an in-process trigger type at every live binding (void, engine-internal)."""
        for binding in self.triggers.bound_to((DEFAULT, type_id)):
            self.internal_invoke(
                binding.function_id, payload, namespace=binding.target_ns, metadata=binding.metadata
            )

    # -- invocations -----------------------------------------------------------------------

    def resolve(self, function_id: str, namespace: str) -> FunctionEntry | None:
        return self.functions.get((namespace, function_id))

    def not_found(self, function_id: str, namespace: str, *, internal: bool = False) -> m.ErrorBody:
        if internal:
            return error(
                "function_not_found", f"Function {function_id} not found in namespace {namespace}"
            )
        others = [ns for ns in self.functions.namespaces_of(function_id) if ns != namespace]
        text = f"Function {function_id} not found in namespace {namespace}."
        if others:
            text += f" It is registered in namespace(s): {', '.join(others)}."
        return error("function_not_found", text)

    def invoke(self, conn: Connection, msg: m.InvokeFunction) -> None:
        action = msg.action
        reply_id = msg.invocation_id
        if action is not None and action.type == "void":
            reply_id = None
        namespace = msg.namespace
        if namespace is None:
            namespace = DEFAULT
        elif blank(namespace):
            err = error("INVALID_NAMESPACE", INVALID_NAMESPACE_MSG.format(field="namespace"))
            self.reply(conn, reply_id, msg, None, err)
            return
        if action is not None and action.type != "void":
            if action.type == "enqueue":
                enqueue(self, conn, msg, namespace, reply_id)
            else:
                err = error("invalid_action", f"Unknown action type {action.type!r}")
                self.reply(conn, reply_id, msg, None, err)
            return
        entry = self.functions.get((namespace, msg.function_id))
        if entry is None:
            if reply_id is None:
                log.info(
                    "void call to unknown function",
                    function_id=msg.function_id,
                    ns=namespace,
                    **trace_fields(msg.traceparent),
                )
            self.reply(conn, reply_id, msg, None, self.not_found(msg.function_id, namespace))
            return
        data = msg.data
        if conn.kind != "local" and type(data) is dict:
            # Local links are our built-in actors: like upstream's in-process components
            # their calls (trigger fires above all) carry no _caller_worker_id (§7.10).
            data = {**data, "_caller_worker_id": conn.worker_id}
        self.dispatch(
            entry,
            data,
            caller=conn,
            caller_invocation_id=reply_id,
            downstream_id=msg.invocation_id,
            metadata=msg.metadata,
            traceparent=msg.traceparent,
            baggage=msg.baggage,
            wire=CallWire.of(msg),
        )

    def reply(
        self,
        conn: Connection,
        invocation_id: str | None,
        msg: m.InvokeFunction,
        result: Any,
        err: m.ErrorBody | None,
    ) -> None:
        if invocation_id is None:
            if err is not None:
                log.info(
                    "call failed (no reply wanted)",
                    function_id=msg.function_id,
                    code=err.code,
                    message=err.message,
                    **trace_fields(msg.traceparent),
                )
            return
        conn.send(
            m.InvocationResult(
                invocation_id, msg.function_id, result, err, msg.traceparent, msg.baggage
            )
        )

    def internal_invoke(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = DEFAULT,
        metadata: Any = None,
        on_done: Outcome | None = None,
        timeout: float | None = None,
        expiry: m.ErrorBody | None = None,
    ) -> None:
        """An engine-originated call (§7.10): no caller connection, no _caller_worker_id.
        ``timeout`` (seconds) replaces the engine deadline; ``expiry`` is the error it ends
        with when the deadline passes (default: ``invocation_timeout``)."""
        entry = self.functions.get((namespace, function_id))
        if entry is None:
            if on_done is not None:
                on_done(None, self.not_found(function_id, namespace, internal=True))
            return
        self.dispatch(
            entry,
            data,
            caller=None,
            caller_invocation_id=None,
            metadata=metadata,
            on_done=on_done,
            timeout=timeout,
            expiry=expiry,
        )

    def dispatch(
        self,
        entry: FunctionEntry,
        data: Any,
        *,
        caller: Connection | None,
        caller_invocation_id: str | None,
        downstream_id: str | None = None,
        metadata: Any = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        on_done: Outcome | None = None,
        wire: CallWire | None = None,
        timeout: float | None = None,
        expiry: m.ErrorBody | None = None,
    ) -> None:
        inv_id = downstream_id
        if inv_id is None or inv_id in self.table:
            inv_id = str(uuid.uuid4())
        now = self.clock()
        limit = self.invocation_deadline if timeout is None else timeout
        deadline = now + limit if limit else None
        callee = entry.pick()
        pending = Pending(
            inv_id,
            entry.function_id,
            entry.namespace,
            caller if caller_invocation_id is not None else None,
            caller_invocation_id,
            callee,
            now,
            deadline,
            on_done,
            traceparent,
            baggage,
            origin=caller,
            wire=wire,
            expiry=expiry,
        )
        self.table.add(pending)
        if deadline is not None and self.on_wakeup is not None:
            self.on_wakeup(deadline)  # O(1): the edge only moves its timer earlier
        if self.hooks.dispatch:
            for hook in self.hooks.dispatch:
                refusal = hook(pending, data)
                if refusal is not None:
                    self.finish(pending, None, refusal)
                    return
        if callee is None:
            ctx = CallContext(self, caller, entry.function_id, entry.namespace)
            run_builtin(self, entry, pending, data, ctx)
            return
        if callee.draining:
            who = callee.name or callee.worker_id
            self.finish(pending, None, error("invocation_stopped", f"Worker '{who}' is stopping"))
            return
        sent = callee.send(
            m.InvokeFunction(
                entry.function_id,
                data,
                inv_id,
                None,
                None,
                metadata,
                pending.traceparent,
                pending.baggage,
                *observe_fields(pending, callee),
            ),
            batch=len(callee.calls_in) > 1,  # a busy callee gets its calls in one write
        )
        if not sent:
            err = error(
                "channel_send_failed", f"Worker hosting {entry.function_id} is disconnecting"
            )
            self.finish(pending, None, err)

    def complete(self, conn: Connection, msg: m.InvocationResult) -> None:
        pending = self.table.get(msg.invocation_id)
        if pending is None:
            return  # late, halted or void: ignored (§6.12)
        if pending.callee is not None and pending.callee is not conn:
            log.warning(
                "invocationresult from a worker that is not the callee ignored",
                invocation_id=msg.invocation_id,
                sender=conn.worker_id,
                **trace_fields(pending.traceparent),
            )
            return
        self.finish(pending, msg.result, msg.error, msg.traceparent, msg.baggage)

    def finish(
        self,
        pending: Pending,
        result: Any,
        err: m.ErrorBody | None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> None:
        """Complete a call exactly once: hooks, then the waiter or the caller's reply."""
        if self.table.pop(pending.invocation_id) is None:
            return
        if self.hooks.completion:
            now = self.clock()
            for hook in self.hooks.completion:
                hook(pending, None if err is not None else result, err, now)
        callee = pending.callee
        if callee is not None and callee.draining and not callee.calls_in:
            self.emit("drained", callee)
        if pending.on_done is not None:
            try:
                pending.on_done(result, err)
            except Exception:
                fields = trace_fields(pending.traceparent)
                log.exception("invocation waiter failed", function_id=pending.function_id, **fields)
            return
        caller = pending.caller
        if caller is None or pending.caller_invocation_id is None:
            return
        caller.send(
            m.InvocationResult(
                pending.caller_invocation_id,
                pending.function_id,
                None if err is not None else result,
                err,
                traceparent or pending.traceparent,
                baggage or pending.baggage,
            ),
            batch=bool(caller.calls_out),  # more replies are due to it: one write for them
        )

    def shutdown(self) -> None:
        for conn in list(self.connections.values()):
            conn.closing = True
            if conn.cancel_scope is not None:
                conn.cancel_scope.cancel()


def worker_event(event: str, conn: Connection) -> dict[str, Any]:
    return {"event": event, "worker_id": conn.worker_id}


__all__ = ["Bus", "BusEvent", "CallContext", "WorkerView", "worker_event"]
