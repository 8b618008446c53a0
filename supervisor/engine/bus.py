"""The message bus: registries, routing and the in-flight table (PROTOCOL.md §4–§9, §12).

The bus is a plain object driven by decoded messages (``handle``); everything it sends goes
through ``Connection.send``, which only enqueues. Trio appears only in ``serve`` (one reader
and one writer per connection) and ``run`` (deadline sweeper, engine events), so the routing
tables are tested without sockets (tests/unit/bus).
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import structlog
import trio

from supervisor.engine.channels import ChannelRegistry
from supervisor.engine.connection import Connection
from supervisor.engine.invocations import InvocationTable, Pending
from transport import codec
from transport import messages as m
from transport.carrier import CLOSE_RECONNECT, TELEMETRY_PREFIXES, CarrierClosed, StreamCarrier

log = structlog.get_logger(__name__)

DEFAULT = "default"
_BUFFERED = (
    m.RegisterFunction,
    m.UnregisterFunction,
    m.RegisterService,
    m.RegisterTrigger,
    m.UnregisterTrigger,
    m.RegisterTriggerType,
    m.UnregisterTriggerType,
)
INVALID_NAMESPACE_MSG = (
    "`{field}` is empty: it was named and left blank. Give it a name, or omit it to use `default`."
)


class InvocationFailed(Exception):
    """An in-process call through the bus ended with an error body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def error(code: str, message: str) -> m.ErrorBody:
    return m.ErrorBody(code=code, message=message)


def _blank(value: str | None) -> bool:
    return value is not None and not value.strip()


# ---------------------------------------------------------------------------------------------
# Records


@attrs.define(eq=False)
class FunctionRecord:
    function_id: str
    namespace: str
    owner: Connection | None  # None: built into the bus
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    builtin: Callable[..., Any] | None = None
    component: str | None = None  # worker_name for built-ins

    @property
    def worker_name(self) -> str:
        if self.owner is not None and self.owner.name:
            return self.owner.name
        if self.component:
            return self.component
        return self.function_id.split("::", 1)[0]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "function_id": self.function_id,
            "namespace": self.namespace,
            "worker_name": self.worker_name,
        }
        if self.description is not None:
            out["description"] = self.description
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


@attrs.define(eq=False)
class Provider:
    type_id: str
    namespace: str
    description: str
    conn: Connection | None  # None: in-process provider
    trigger_request_format: Any = None
    call_request_format: Any = None
    component: str | None = None
    on_register: Callable[[Binding], str | None] | None = None
    on_unregister: Callable[[Binding], None] | None = None

    @property
    def worker_name(self) -> str:
        if self.conn is not None and self.conn.name:
            return self.conn.name
        return self.component or self.type_id.split("::", 1)[0]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.type_id,
            "namespace": self.namespace,
            "worker_name": self.worker_name,
            "description": self.description,
        }


@attrs.define(eq=False)
class Binding:
    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any
    owner: Connection | None  # None: durable (engine::register_trigger)
    target_ns: str
    trigger_namespace: str | None
    home: str
    bound_to: tuple[str, str] | None = None  # provider key when live, None when parked

    def summary(self, worker_name: str) -> dict[str, Any]:
        compact = codec.orjson.dumps(self.config).decode()
        if len(compact) > 80:
            compact = compact[:80] + "…"
        return {
            "id": self.id,
            "trigger_type": self.trigger_type,
            "function_id": self.function_id,
            "worker_name": worker_name,
            "config": self.config,
            "config_summary": compact,
        }


@attrs.frozen
class WorkerView:
    """A read-only snapshot of one connection, for the supervisor and introspection."""

    worker_id: str
    name: str | None
    namespace: str
    pid: int | None
    label: str | None
    kind: str
    function_ids: tuple[str, ...]
    trigger_type_ids: tuple[str, ...]
    trigger_ids: tuple[str, ...]
    connected_at: float
    registered: bool
    active_invocations: int
    peer: str | None = None
    draining: bool = False


@attrs.frozen
class BusEvent:
    kind: str  # "connected" | "registered" | "changed" (registrations) | "disconnected"
    worker: WorkerView


@attrs.define(eq=False)
class CallContext:
    """What a built-in function sees of its call."""

    bus: Bus
    caller: Connection | None
    function_id: str
    namespace: str


# ---------------------------------------------------------------------------------------------


class Bus:
    def __init__(
        self,
        *,
        namespace_grace_ms: int = 5000,
        invocation_deadline: float | None = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace_grace = namespace_grace_ms / 1000
        self.invocation_deadline = invocation_deadline
        self.clock = clock
        self.connections: dict[str, Connection] = {}
        self.functions: dict[tuple[str, str], FunctionRecord] = {}
        self.providers: dict[tuple[str, str], Provider] = {}
        self.bindings: dict[str, Binding] = {}
        self.names: dict[tuple[str, str], Connection] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.table = InvocationTable(clock)
        self._observers: list[Callable[[BusEvent], None]] = []
        self._nursery: trio.Nursery | None = None
        self._deadline_changed = trio.Event()
        self._functions_dirty = False
        self._ack_waiters: dict[str, Callable[[m.TriggerRegistrationResult], None]] = {}
        self._ping_waiters: dict[tuple[str, int], trio.Event] = {}
        self._ping_seq = 0
        self.started_at = time.time()
        self.channels = ChannelRegistry()
        from supervisor.engine import builtins  # registers engine::* on this bus

        builtins.install(self)

    # -- observers -------------------------------------------------------------------------

    def add_observer(self, fn: Callable[[BusEvent], None]) -> None:
        self._observers.append(fn)

    def _emit(self, kind: str, conn: Connection) -> None:
        if not self._observers:
            return
        event = BusEvent(kind, self.view(conn))
        for fn in list(self._observers):
            try:
                fn(event)
            except Exception:
                log.exception("bus observer failed", event=kind)

    def view(self, conn: Connection) -> WorkerView:
        return WorkerView(
            worker_id=conn.worker_id,
            name=conn.name,
            namespace=conn.ns,
            pid=conn.pid,
            label=conn.label,
            kind=conn.kind,
            function_ids=tuple(sorted(fid for _, fid in conn.functions)),
            trigger_type_ids=tuple(sorted(tid for _, tid in conn.trigger_types)),
            trigger_ids=tuple(sorted(conn.triggers)),
            connected_at=conn.connected_at,
            registered=conn.registered,
            active_invocations=len(conn.calls_in),
            peer=conn.peer,
            draining=conn.draining,
        )

    def workers(self) -> list[WorkerView]:
        return [self.view(c) for c in self.connections.values() if not c.closing]

    def in_flight_to(self, worker_id: str) -> int:
        conn = self.connections.get(worker_id)
        return len(conn.calls_in) if conn else 0

    def set_draining(self, worker_id: str) -> None:
        """A worker being stopped: calls already running finish, new ones fail at once."""
        conn = self.connections.get(worker_id)
        if conn is not None:
            conn.draining = True

    def close_worker(self, worker_id: str) -> None:
        """Tear a connection down abnormally (code 1012), so an SDK worker reconnects."""
        conn = self.connections.get(worker_id)
        if conn is not None and conn.cancel_scope is not None:
            conn.cancel_scope.cancel()

    # -- running ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background duties: invocation deadlines, engine::functions-available sampling."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._deadline_loop)
            nursery.start_soon(self._functions_available_loop)
            nursery.start_soon(self.channels.run_sweeper)
            task_status.started()
            await trio.sleep_forever()

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("Bus.run() is not running")
        self._nursery.start_soon(fn, *args)

    async def _deadline_loop(self) -> None:
        while True:
            nxt = self.table.next_deadline()
            self._deadline_changed = trio.Event()
            if nxt is None:
                await self._deadline_changed.wait()
                continue
            with trio.move_on_after(max(0.0, nxt - self.clock()) + 0.001):
                await self._deadline_changed.wait()
            for inv_id in self.table.expired():
                pending = self.table.get(inv_id)
                ms = int((self.invocation_deadline or 0) * 1000)
                if pending is not None:
                    self._finish(
                        pending,
                        None,
                        error(
                            "invocation_timeout",
                            f"Invocation of {pending.function_id} exceeded the engine deadline "
                            f"of {ms} ms",
                        ),
                    )

    async def _functions_available_loop(self) -> None:
        last: set[tuple[str, str]] = set(self.functions)
        while True:
            await trio.sleep(1.0)
            if not self._functions_dirty:
                continue
            self._functions_dirty = False
            now = set(self.functions)
            if now == last:
                continue
            last = now
            summaries = [r.summary() for _, r in sorted(self.functions.items())]
            self.fire_event(
                "engine::functions-available",
                {"event": "functions_changed", "functions": summaries},
            )

    async def serve_local(self, stream: trio.abc.Stream, *, label: str) -> None:
        """Run one actor's local link until it closes, then clean it up."""
        carrier = StreamCarrier(stream, peer=f"local:{label}")
        await self.serve(carrier, label=label)

    async def serve(
        self,
        carrier: Any,
        *,
        label: str | None = None,
        session: Any = None,
        task_status: trio.TaskStatus[Connection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        conn = Connection(kind=carrier.kind, label=label, peer=carrier.peer)
        if session is not None:
            conn.session = session
        if isinstance(carrier, StreamCarrier):
            carrier.ping_handler = lambda timeout: self._local_ping(conn, timeout)
        conn.pinger = carrier.ping
        self.connections[conn.worker_id] = conn
        conn.send(m.WorkerRegistered(worker_id=conn.worker_id, reattach_token=conn.reattach_token))
        self.fire_event("engine::workers-available", self._worker_event("worker_connected", conn))
        self._emit("connected", conn)
        log.debug("worker connected", worker_id=conn.worker_id, kind=conn.kind, peer=conn.peer)
        task_status.started(conn)
        try:
            async with trio.open_nursery() as nursery:
                conn.cancel_scope = nursery.cancel_scope
                nursery.start_soon(self._writer, conn, carrier, nursery.cancel_scope)
                nursery.start_soon(self._grace_timer, conn)
                await self._reader(conn, carrier)
                nursery.cancel_scope.cancel()
        finally:
            self.cleanup(conn)
            with trio.CancelScope(shield=True):
                await carrier.aclose(CLOSE_RECONNECT)

    async def _writer(self, conn: Connection, carrier: Any, scope: trio.CancelScope) -> None:
        try:
            await conn.write_loop(carrier)
        except CarrierClosed:
            pass
        conn.closing = True
        scope.cancel()

    async def _reader(self, conn: Connection, carrier: Any) -> None:
        while True:
            try:
                raw = await carrier.receive()
            except CarrierClosed:
                conn.closing = True  # leases are free for a reconnecting worker from now on
                return
            if conn.closing:
                return
            if isinstance(raw, bytes | bytearray) and raw[:4] in TELEMETRY_PREFIXES:
                continue
            try:
                msg = codec.decode(raw)
            except codec.DecodeError as exc:
                self._bad_frame(conn, exc)
                continue
            if msg is None:
                continue
            try:
                self.handle(conn, msg)
            except Exception:
                log.exception("message handling failed", tag=msg.TAG, worker_id=conn.worker_id)

    def _bad_frame(self, conn: Connection, exc: codec.DecodeError) -> None:
        log.warning(
            "dropped undecodable frame",
            worker_id=conn.worker_id,
            worker=conn.name,
            reason=exc.reason,
        )
        # A call we cannot decode but can correlate gets an answer instead of a silent
        # timeout (PROTOCOL.md §19.1 item 2).
        if exc.tag == "invokefunction" and exc.invocation_id:
            try:
                uuid.UUID(exc.invocation_id)
            except ValueError:
                return
            conn.send(
                m.InvocationResult(
                    invocation_id=exc.invocation_id,
                    function_id="",
                    error=error("deserialization_error", f"Malformed invokefunction: {exc.reason}"),
                )
            )

    async def _grace_timer(self, conn: Connection) -> None:
        await trio.sleep(self.namespace_grace)
        if conn.namespace is None and not conn.closing:
            log.info(
                "no engine::workers::register within grace; pinning to default",
                worker_id=conn.worker_id,
            )
            self._pin(conn, DEFAULT)

    async def _local_ping(self, conn: Connection, timeout: float) -> bool:
        self._ping_seq += 1
        key = (conn.worker_id, self._ping_seq)
        event = self._ping_waiters[key] = trio.Event()
        try:
            if not conn.send(m.SupPing(seq=self._ping_seq)):
                return False
            with trio.move_on_after(timeout):
                await event.wait()
                return True
            return False
        finally:
            self._ping_waiters.pop(key, None)

    async def ping(self, worker_id: str, timeout: float) -> bool:
        """Liveness of one worker: WebSocket ping, or sup_ping on a local link."""
        conn = self.connections.get(worker_id)
        if conn is None or conn.closing:
            return False
        if conn.pinger is None:
            return True
        return bool(await conn.pinger(timeout))

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, conn: Connection, msg: Any) -> None:
        if isinstance(msg, m.InvokeFunction):
            self.invoke(conn, msg)
        elif isinstance(msg, m.InvocationResult):
            self.complete(conn, msg)
        elif isinstance(msg, _BUFFERED):
            if conn.namespace is None:
                assert conn.buffered is not None
                conn.buffered.append(msg)
            else:
                self._apply_registration(conn, msg)
                if self._observers:
                    self._emit("changed", conn)
        elif isinstance(msg, m.TriggerRegistrationResult):
            self._trigger_ack(conn, msg)
        elif isinstance(msg, m.Reattach):
            self._reattach(conn, msg)
        elif isinstance(msg, m.Ping):
            conn.send(m.Pong())
        elif isinstance(msg, m.SupPong):
            waiter = self._ping_waiters.get((conn.worker_id, msg.seq))
            if waiter is not None:
                waiter.set()
        # Pong, SupPing, WorkerRegistered, RegistrationRejected from a worker: ignored.

    def _apply_registration(self, conn: Connection, msg: Any) -> None:
        if isinstance(msg, m.RegisterFunction):
            self.register_function(conn, msg)
        elif isinstance(msg, m.UnregisterFunction):
            rec = self.functions.get((conn.ns, msg.id))
            if rec is not None and rec.owner is conn:
                self._remove_function(conn, rec)
        elif isinstance(msg, m.RegisterTriggerType):
            self.register_trigger_type(conn, msg)
        elif isinstance(msg, m.UnregisterTriggerType):
            ns = msg.namespace or conn.ns
            provider = self.providers.get((ns, msg.id))
            if provider is not None and provider.conn is conn:
                self._remove_provider(provider)
        elif isinstance(msg, m.RegisterTrigger):
            self.register_trigger(conn, msg)
        elif isinstance(msg, m.UnregisterTrigger):
            self.unregister_trigger(msg.id)
        elif isinstance(msg, m.RegisterService):
            self.services[(conn.ns, msg.id)] = {
                "id": msg.id,
                "name": msg.name or msg.id,
                "description": msg.description,
                "parent_service_id": msg.parent_service_id,
            }

    # -- namespaces and worker identity ----------------------------------------------------

    def _pin(self, conn: Connection, namespace: str) -> None:
        if conn.namespace is not None:
            return
        conn.namespace = namespace
        queued, conn.buffered = conn.buffered or [], None
        for msg in queued:
            try:
                self._apply_registration(conn, msg)
            except Exception:
                log.exception("buffered registration failed", tag=msg.TAG)

    def _live(self, conn: Connection | None) -> bool:
        return conn is not None and not conn.closing and conn.worker_id in self.connections

    def register_worker(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """engine::workers::register (§12.2.10)."""
        declared = data.get("namespace")
        name = _sanitize(data.get("name"))
        if isinstance(declared, str) and not declared.strip():
            raise InvocationFailed(
                "INVALID_NAMESPACE",
                f"namespace is empty: worker '{name or ''}' declared \"{declared}\". Give it a "
                "name, or omit the field to register in 'default'.",
            )
        namespace = declared if isinstance(declared, str) else DEFAULT
        if conn.namespace is not None and conn.namespace != namespace:
            log.warning(
                "namespace already pinned; ignoring declared namespace",
                worker_id=conn.worker_id,
                pinned=conn.namespace,
                declared=namespace,
            )
            namespace = conn.namespace
        if name:
            holder = self.names.get((namespace, name))
            if holder is not None and holder is not conn and self._live(holder):
                conn.send(
                    m.RegistrationRejected(
                        code="WORKER_NAMESPACE_CONFLICT",
                        namespace=namespace,
                        worker_name=name,
                        owner_worker_id=holder.worker_id,
                    )
                )
                log.warning(
                    "worker name conflict",
                    name=name,
                    namespace=namespace,
                    owner=holder.worker_id,
                    rejected=conn.worker_id,
                )
                conn.buffered = []
                conn.closing = True
                conn.close_outbox()  # the writer flushes the rejection, then the link closes
                return {"success": False}
            if conn.name and conn.name != name and self.names.get((conn.ns, conn.name)) is conn:
                del self.names[(conn.ns, conn.name)]
            self.names[(namespace, name)] = conn
            conn.name = name
        pid = data.get("pid")
        conn.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
        conn.metadata = {
            k: data.get(k)
            for k in ("runtime", "version", "os", "isolation", "telemetry", "features")
            if k in data
        }
        conn.metadata["description"] = _sanitize(data.get("description")) or None
        self._pin(conn, namespace)
        conn.registered = True
        self.fire_event(
            "engine::workers-available", self._worker_event("worker_metadata_updated", conn)
        )
        self._emit("registered", conn)
        return {"success": True}

    def _reattach(self, conn: Connection, msg: m.Reattach) -> None:
        prev = self.connections.get(msg.previous_worker_id)
        if prev is None or prev is conn:
            return
        if not msg.reattach_token or msg.reattach_token != prev.reattach_token:
            log.warning("reattach with a wrong token ignored", previous=msg.previous_worker_id)
            return
        log.info(
            "reattach: evicting previous connection", previous=prev.worker_id, new=conn.worker_id
        )
        prev.closing = True
        self.cleanup(prev)
        if prev.cancel_scope is not None:
            prev.cancel_scope.cancel()

    # -- functions ------------------------------------------------------------------------

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
        self.functions[(DEFAULT, function_id)] = FunctionRecord(
            function_id=function_id,
            namespace=DEFAULT,
            owner=None,
            description=description,
            builtin=handler,
            component=component,
            request_format=request_format,
            response_format=response_format,
        )

    def register_function(self, conn: Connection, msg: m.RegisterFunction) -> None:
        ns = conn.ns
        if not conn.session.allow_function_registration:
            log.info("function registration not allowed for this session", id=msg.id)
            return
        if msg.id.startswith("engine::") and ns != DEFAULT:
            conn.send(
                m.RegistrationRejected(
                    code="FUNCTION_NAMESPACE_CONFLICT",
                    namespace=ns,
                    function_id=msg.id,
                    owner_worker_id="",
                )
            )
            return
        key = (ns, msg.id)
        current = self.functions.get(key)
        if current is not None and current.owner is not None and current.owner is not conn:
            if self._live(current.owner):
                conn.send(
                    m.RegistrationRejected(
                        code="FUNCTION_NAMESPACE_CONFLICT",
                        namespace=ns,
                        function_id=msg.id,
                        owner_worker_id=current.owner.worker_id,
                    )
                )
                log.warning(
                    "function id conflict",
                    function_id=msg.id,
                    namespace=ns,
                    owner=current.owner.worker_id,
                    rejected=conn.worker_id,
                )
                return
            current.owner.functions.discard(key)
        if msg.invocation is not None:
            log.warning(
                "HTTP-invoked function dropped: iii-http-functions is not available yet",
                function_id=msg.id,
            )
            return
        self.functions[key] = FunctionRecord(
            function_id=msg.id,
            namespace=ns,
            owner=conn,
            description=msg.description,
            request_format=msg.request_format,
            response_format=msg.response_format,
            metadata=msg.metadata,
        )
        conn.functions.add(key)
        self._functions_dirty = True

    def _remove_function(self, conn: Connection, rec: FunctionRecord) -> None:
        key = (rec.namespace, rec.function_id)
        if self.functions.get(key) is rec:
            del self.functions[key]
            self._functions_dirty = True
        conn.functions.discard(key)

    def resolve(self, function_id: str, namespace: str) -> FunctionRecord | None:
        return self.functions.get((namespace, function_id))

    def not_found(self, function_id: str, namespace: str, *, internal: bool = False) -> m.ErrorBody:
        if internal:
            return error(
                "function_not_found", f"Function {function_id} not found in namespace {namespace}"
            )
        others = sorted(ns for ns, fid in self.functions if fid == function_id and ns != namespace)
        text = f"Function {function_id} not found in namespace {namespace}."
        if others:
            text += f" It is registered in namespace(s): {', '.join(others)}."
        return error("function_not_found", text)

    # -- invocations ----------------------------------------------------------------------

    def invoke(self, conn: Connection, msg: m.InvokeFunction) -> None:
        action = msg.action
        is_void = action is not None and action.type == "void"
        reply_id = None if is_void else msg.invocation_id
        if _blank(msg.namespace):
            self._reply(
                conn,
                reply_id,
                msg,
                None,
                error("INVALID_NAMESPACE", INVALID_NAMESPACE_MSG.format(field="namespace")),
            )
            return
        ns = msg.namespace or DEFAULT
        if action is not None and action.type == "enqueue":
            self._enqueue(conn, msg, ns, reply_id)
            return
        if action is not None and action.type not in ("void", "enqueue"):
            self._reply(
                conn,
                reply_id,
                msg,
                None,
                error("invalid_action", f"Unknown action type {action.type!r}"),
            )
            return
        rec = self.resolve(msg.function_id, ns)
        if rec is None:
            if reply_id is None:
                log.info("void call to unknown function", function_id=msg.function_id, namespace=ns)
            self._reply(conn, reply_id, msg, None, self.not_found(msg.function_id, ns))
            return
        data = msg.data
        if isinstance(data, dict) and conn.kind != "local":
            # Local links are our built-in actors: like upstream's in-process components
            # their calls (trigger fires above all) carry no _caller_worker_id (§7.10).
            data = {**data, "_caller_worker_id": conn.worker_id}
        self._dispatch(
            rec,
            data,
            caller=conn,
            caller_invocation_id=reply_id,
            downstream_id=msg.invocation_id,
            metadata=msg.metadata,
            traceparent=msg.traceparent,
            baggage=msg.baggage,
        )

    def _reply(
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
                )
            return
        conn.send(
            m.InvocationResult(
                invocation_id=invocation_id,
                function_id=msg.function_id,
                result=result,
                error=err,
                traceparent=msg.traceparent,
                baggage=msg.baggage,
            )
        )

    def _dispatch(
        self,
        rec: FunctionRecord,
        data: Any,
        *,
        caller: Connection | None,
        caller_invocation_id: str | None,
        downstream_id: str | None = None,
        metadata: Any = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        on_done: Callable[[Any, m.ErrorBody | None], None] | None = None,
    ) -> None:
        inv_id = downstream_id
        if inv_id is None or inv_id in self.table:
            inv_id = str(uuid.uuid4())
        now = self.clock()
        deadline = now + self.invocation_deadline if self.invocation_deadline else None
        callee = rec.owner
        pending = Pending(
            invocation_id=inv_id,
            function_id=rec.function_id,
            namespace=rec.namespace,
            caller=caller if caller_invocation_id is not None else None,
            caller_invocation_id=caller_invocation_id,
            callee=callee,
            started=now,
            deadline=deadline,
            on_done=on_done,
            traceparent=traceparent,
            baggage=baggage,
        )
        self.table.add(pending)
        if deadline is not None and self.table.next_deadline() == deadline:
            self._deadline_changed.set()  # only an earlier wake-up needs the sweeper
        if rec.builtin is not None:
            self._run_builtin(rec, pending, data, caller)
            return
        assert callee is not None
        if callee.draining:
            who = callee.name or callee.worker_id
            self._finish(pending, None, error("invocation_stopped", f"Worker '{who}' is stopping"))
            return
        sent = callee.send(
            m.InvokeFunction(
                function_id=rec.function_id,
                data=data,
                invocation_id=inv_id,
                metadata=metadata,
                traceparent=traceparent,
                baggage=baggage,
            )
        )
        if not sent:
            self._finish(
                pending,
                None,
                error("channel_send_failed", f"Worker hosting {rec.function_id} is disconnecting"),
            )

    def _run_builtin(
        self, rec: FunctionRecord, pending: Pending, data: Any, caller: Connection | None
    ) -> None:
        ctx = CallContext(self, caller, rec.function_id, rec.namespace)
        assert rec.builtin is not None
        try:
            if data is not None and not isinstance(data, dict):
                raise InvocationFailed(
                    "deserialization_error",
                    f"Failed to deserialize input for {rec.function_id}: expected an object",
                )
            result = rec.builtin(ctx, data or {})
        except InvocationFailed as exc:
            self._finish(pending, None, error(exc.code, exc.message))
            return
        except Exception as exc:
            log.exception("built-in function failed", function_id=rec.function_id)
            self._finish(pending, None, error("invocation_failed", str(exc)))
            return
        if inspect.isawaitable(result):
            self.spawn(self._await_builtin, pending, result)
        else:
            self._finish(pending, result, None)

    async def _await_builtin(self, pending: Pending, awaitable: Any) -> None:
        try:
            result = await awaitable
        except InvocationFailed as exc:
            self._finish(pending, None, error(exc.code, exc.message))
        except Exception as exc:
            log.exception("built-in function failed", function_id=pending.function_id)
            self._finish(pending, None, error("invocation_failed", str(exc)))
        else:
            self._finish(pending, result, None)

    def complete(self, conn: Connection, msg: m.InvocationResult) -> None:
        pending = self.table.get(msg.invocation_id)
        if pending is None:
            return  # late, halted or void: ignored (§6.12)
        if pending.callee is not None and pending.callee is not conn:
            log.warning(
                "invocationresult from a worker that is not the callee ignored",
                invocation_id=msg.invocation_id,
                sender=conn.worker_id,
            )
            return
        self._finish(pending, msg.result, msg.error, msg.traceparent, msg.baggage)

    def _finish(
        self,
        pending: Pending,
        result: Any,
        err: m.ErrorBody | None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> None:
        if self.table.pop(pending.invocation_id) is None:
            return
        if err is not None:
            self.table.record_error(pending)
        if pending.on_done is not None:
            try:
                pending.on_done(result, err)
            except Exception:
                log.exception("invocation waiter failed", function_id=pending.function_id)
            return
        caller = pending.caller
        if caller is None or pending.caller_invocation_id is None:
            return
        caller.send(
            m.InvocationResult(
                invocation_id=pending.caller_invocation_id,
                function_id=pending.function_id,
                result=None if err is not None else result,
                error=err,
                traceparent=traceparent or pending.traceparent,
                baggage=baggage or pending.baggage,
            )
        )

    def _enqueue(
        self, conn: Connection, msg: m.InvokeFunction, ns: str, reply_id: str | None
    ) -> None:
        assert msg.action is not None
        receipt = str(uuid.uuid4())
        payload: dict[str, Any] = {
            "queue": msg.action.queue,
            "function_id": msg.function_id,
            "data": msg.data,
            "messageReceiptId": receipt,
            "traceparent": msg.traceparent,
            "baggage": msg.baggage,
        }
        if ns != DEFAULT:
            payload["namespace"] = ns

        def done(result: Any, err: m.ErrorBody | None) -> None:
            if err is None:
                self._reply(conn, reply_id, msg, {"messageReceiptId": receipt}, None)
            elif err.code == "function_not_found":
                self._reply(
                    conn,
                    reply_id,
                    msg,
                    None,
                    error(
                        "enqueue_error",
                        "No queue provider is installed: engine::queue::enqueue is not registered "
                        f"(add the `queue` worker). {err.message}",
                    ),
                )
            else:
                self._reply(
                    conn, reply_id, msg, None, error("enqueue_error", f"{err.code}: {err.message}")
                )

        self.internal_invoke("engine::queue::enqueue", payload, on_done=done)

    def internal_invoke(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = DEFAULT,
        metadata: Any = None,
        on_done: Callable[[Any, m.ErrorBody | None], None] | None = None,
    ) -> None:
        """An engine-originated call (§7.10): no caller connection, no _caller_worker_id."""
        rec = self.resolve(function_id, namespace)
        if rec is None:
            if on_done is not None:
                on_done(None, self.not_found(function_id, namespace, internal=True))
            return
        self._dispatch(
            rec, data, caller=None, caller_invocation_id=None, metadata=metadata, on_done=on_done
        )

    async def call(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = DEFAULT,
        metadata: Any = None,
        timeout: float = 30.0,
    ) -> Any:
        """Call a function through the bus from supervisor code; raises InvocationFailed."""
        done = trio.Event()
        box: list[Any] = []

        def on_done(result: Any, err: m.ErrorBody | None) -> None:
            box.append((result, err))
            done.set()

        self.internal_invoke(
            function_id, data, namespace=namespace, metadata=metadata, on_done=on_done
        )
        with trio.move_on_after(timeout):
            await done.wait()
        if not box:
            raise InvocationFailed("timeout", f"invocation timed out after {int(timeout * 1000)}ms")
        result, err = box[0]
        if err is not None:
            raise InvocationFailed(err.code, err.message)
        return result

    # -- trigger types and triggers -------------------------------------------------------

    def add_builtin_trigger_type(
        self,
        type_id: str,
        description: str,
        *,
        component: str,
        on_register: Callable[[Binding], str | None] | None = None,
        on_unregister: Callable[[Binding], None] | None = None,
    ) -> None:
        self.providers[(DEFAULT, type_id)] = Provider(
            type_id=type_id,
            namespace=DEFAULT,
            description=description,
            conn=None,
            component=component,
            on_register=on_register,
            on_unregister=on_unregister,
        )

    def register_trigger_type(self, conn: Connection, msg: m.RegisterTriggerType) -> None:
        if _blank(msg.namespace):
            log.error("registertriggertype with a blank namespace dropped", id=msg.id)
            return
        if not conn.session.allow_trigger_type_registration:
            log.info("trigger type registration not allowed for this session", id=msg.id)
            return
        ns = msg.namespace or conn.ns
        key = (ns, msg.id)
        old = self.providers.get(key)
        if old is not None and old.conn is not None and old.conn is not conn:
            old.conn.trigger_types.discard(key)
        self.providers[key] = Provider(
            type_id=msg.id,
            namespace=ns,
            description=msg.description,
            conn=conn,
            trigger_request_format=msg.trigger_request_format,
            call_request_format=msg.call_request_format,
        )
        conn.trigger_types.add(key)
        for binding in list(self.bindings.values()):
            if binding.trigger_type != msg.id:
                continue
            if binding.bound_to == key:
                self._deliver(binding, key)  # re-deliver to the replacing provider
            elif binding.bound_to is None and self._resolve_provider(binding) == key:
                self._deliver(binding, key)
            elif (
                ns != DEFAULT
                and binding.bound_to == (DEFAULT, msg.id)
                and binding.home == ns
                and binding.trigger_namespace is None
            ):
                self._undeliver(binding)
                self._deliver(binding, key)

    def _resolve_provider(self, binding: Binding) -> tuple[str, str] | None:
        if binding.trigger_namespace is not None:
            key = (binding.trigger_namespace, binding.trigger_type)
            return key if key in self.providers else None
        for ns in (binding.home, DEFAULT):
            key = (ns, binding.trigger_type)
            if key in self.providers:
                return key
        return None

    def _deliver(self, binding: Binding, key: tuple[str, str]) -> str | None:
        """Activate a binding at a provider; returns an in-process provider's refusal."""
        provider = self.providers[key]
        if provider.conn is None:
            reason = provider.on_register(binding) if provider.on_register else None
            if reason is not None:
                binding.bound_to = None
                return reason
            binding.bound_to = key
            return None
        sent = provider.conn.send(
            m.RegisterTrigger(
                id=binding.id,
                trigger_type=binding.trigger_type,
                function_id=binding.function_id,
                config=binding.config,
                metadata=binding.metadata,
                namespace=binding.target_ns if binding.target_ns != DEFAULT else None,
                trigger_namespace=key[0] if key[0] != DEFAULT else None,
            )
        )
        binding.bound_to = key if sent else None
        return None

    def _undeliver(self, binding: Binding) -> None:
        key = binding.bound_to
        binding.bound_to = None
        if key is None:
            return
        provider = self.providers.get(key)
        if provider is None:
            return
        if provider.conn is None:
            if provider.on_unregister is not None:
                provider.on_unregister(binding)
        else:
            provider.conn.send(
                m.UnregisterTrigger(id=binding.id, trigger_type=binding.trigger_type)
            )

    def register_trigger(self, conn: Connection, msg: m.RegisterTrigger) -> None:
        for field in ("namespace", "trigger_namespace"):
            if _blank(getattr(msg, field)):
                conn.send(
                    m.TriggerRegistrationResult(
                        id=msg.id,
                        trigger_type=msg.trigger_type,
                        function_id=msg.function_id,
                        error=error("INVALID_NAMESPACE", INVALID_NAMESPACE_MSG.format(field=field)),
                    )
                )
                return
        reason = self.add_binding(
            Binding(
                id=msg.id,
                trigger_type=msg.trigger_type,
                function_id=msg.function_id,
                config=msg.config,
                metadata=msg.metadata,
                owner=conn,
                target_ns=msg.namespace or DEFAULT,
                trigger_namespace=msg.trigger_namespace,
                home=conn.ns,
            )
        )
        if reason is not None:
            conn.send(
                m.TriggerRegistrationResult(
                    id=msg.id,
                    trigger_type=msg.trigger_type,
                    function_id=msg.function_id,
                    error=error("trigger_registration_failed", reason),
                )
            )

    def add_binding(self, binding: Binding) -> str | None:
        """Record and deliver a binding; an in-process provider's refusal is returned."""
        if binding.id in self.bindings:
            self.unregister_trigger(binding.id)
        key = self._resolve_provider(binding)
        if key is not None:
            reason = self._deliver(binding, key)
            if reason is not None:
                return reason
        else:
            log.info(
                "trigger parked until its type has a provider",
                id=binding.id,
                trigger_type=binding.trigger_type,
            )
        self.bindings[binding.id] = binding
        if binding.owner is not None:
            binding.owner.triggers.add(binding.id)
        return None

    def unregister_trigger(self, binding_id: str) -> bool:
        binding = self.bindings.pop(binding_id, None)
        if binding is None:
            return False
        self._undeliver(binding)
        if binding.owner is not None:
            binding.owner.triggers.discard(binding_id)
        return True

    def _trigger_ack(self, conn: Connection, msg: m.TriggerRegistrationResult) -> None:
        waiter = self._ack_waiters.pop(msg.id, None)
        if waiter is not None:
            waiter(msg)
            return
        binding = self.bindings.get(msg.id)
        if binding is None or binding.bound_to is None:
            return
        provider = self.providers.get(binding.bound_to)
        if provider is None or provider.conn is not conn or msg.error is None:
            return
        binding.bound_to = None  # parked until the type is registered again
        if self._live(binding.owner):
            assert binding.owner is not None
            binding.owner.send(
                m.TriggerRegistrationResult(
                    id=binding.id,
                    trigger_type=binding.trigger_type,
                    function_id=binding.function_id,
                    error=msg.error,
                )
            )

    def _remove_provider(self, provider: Provider) -> None:
        key = (provider.namespace, provider.type_id)
        if self.providers.get(key) is not provider:
            return
        del self.providers[key]
        if provider.conn is not None:
            provider.conn.trigger_types.discard(key)
        for binding in self.bindings.values():
            if binding.bound_to != key:
                continue
            binding.bound_to = None
            other = self._resolve_provider(binding)
            if other is not None:
                self._deliver(binding, other)

    def bindings_of(self, type_id: str, namespace: str = DEFAULT) -> list[Binding]:
        key = (namespace, type_id)
        return [b for b in self.bindings.values() if b.bound_to == key]

    def fire_event(self, type_id: str, payload: Any) -> None:
        """Fire an in-process trigger type at every live binding (void, engine-internal)."""
        for binding in self.bindings_of(type_id):
            self.internal_invoke(
                binding.function_id,
                payload,
                namespace=binding.target_ns,
                metadata=binding.metadata,
            )

    def _worker_event(self, event: str, conn: Connection) -> dict[str, Any]:
        return {"event": event, "worker_id": conn.worker_id}

    # -- clean-up --------------------------------------------------------------------------

    def cleanup(self, conn: Connection) -> None:
        """Disconnect clean-up (§4.6); runs once per connection."""
        if conn.cleaned.is_set():
            return
        conn.closing = True
        conn.buffered = None
        for key in list(conn.functions):
            rec = self.functions.get(key)
            if rec is not None and rec.owner is conn:
                del self.functions[key]
                self._functions_dirty = True
        conn.functions.clear()
        stopped = error("invocation_stopped", "Invocation stopped")
        for inv_id in list(conn.calls_in) + list(conn.calls_out):
            pending = self.table.get(inv_id)
            if pending is not None:
                self._finish(pending, None, stopped)
        for binding_id in list(conn.triggers):
            binding = self.bindings.get(binding_id)
            if binding is not None and binding.owner is conn:
                self.unregister_trigger(binding_id)
        conn.triggers.clear()
        for key in list(conn.trigger_types):
            provider = self.providers.get(key)
            if provider is not None and provider.conn is conn:
                self._remove_provider(provider)
        conn.trigger_types.clear()
        for key, holder in list(self.names.items()):
            if holder is conn:
                del self.names[key]
        self.connections.pop(conn.worker_id, None)
        conn.close_outbox()
        conn.cleaned.set()
        self.fire_event(
            "engine::workers-available", self._worker_event("worker_disconnected", conn)
        )
        self._emit("disconnected", conn)
        log.debug("worker disconnected", worker_id=conn.worker_id, name=conn.name)

    async def shutdown(self) -> None:
        for conn in list(self.connections.values()):
            conn.closing = True
            if conn.cancel_scope is not None:
                conn.cancel_scope.cancel()


def _sanitize(value: Any) -> str | None:
    """Worker name/description sanitising (§8.3)."""
    if not isinstance(value, str):
        return None
    cleaned = "".join(
        ch
        for ch in value
        if not (ord(ch) < 32 or ord(ch) == 127 or 0x80 <= ord(ch) < 0xA0)
        and ch
        not in "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
    ).strip()[:280]
    return cleaned or None


__all__ = [
    "Bus",
    "BusEvent",
    "WorkerView",
    "InvocationFailed",
    "FunctionRecord",
    "Binding",
    "Provider",
    "CallContext",
]
