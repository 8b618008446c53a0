"""The trio edge that drives the synchronous bus: sockets in and out, timers, async calls.

One reader and one writer task per connection; one timer task that calls ``Bus.tick`` when
``Bus.next_wakeup`` is due (its deadline moves earlier when the core asks); one task that
flushes coalesced "changed" events once per scheduler pass. ``BusEdge`` is also what the
supervisor's child manager sees of the engine (its ``BusLike``).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

import structlog
import trio

from supervisor.engine.bus import Bus
from supervisor.engine.connection import Connection
from supervisor.engine.errors import DEFAULT, InvocationFailed, error
from supervisor.engine.oversize import OversizeGuard
from supervisor.engine.telemetry import TelemetryForwarder
from supervisor.engine.views import BusEvent, WorkerView
from transport import codec
from transport import messages as m
from transport.carrier import CLOSE_RECONNECT, TELEMETRY_PREFIXES, CarrierClosed, StreamCarrier
from transport.oversize import MAX_MESSAGE, Oversized

log = structlog.get_logger(__name__)

YIELD_EVERY = 64  # a reader checkpoints after this many buffered frames: floods cannot starve


class BusEdge:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._nursery: trio.Nursery | None = None
        self._timer_scope: trio.CancelScope | None = None
        self._changes = trio.Event()
        self._ping_seq = 0
        self.telemetry = TelemetryForwarder(bus)  # SDK telemetry frames → iii-observability
        self.oversize = OversizeGuard(bus)
        bus.spawn = self._spawn
        bus.on_changes = self._changes_due
        bus.on_wakeup = self._wake_at

    # -- BusLike: what the supervisor sees ---------------------------------------------------

    def add_observer(self, fn: Callable[[BusEvent], None]) -> None:
        self.bus.add_observer(fn)

    def workers(self) -> list[WorkerView]:
        return self.bus.workers()

    def in_flight_to(self, worker_id: str) -> int:
        return self.bus.in_flight_to(worker_id)

    def set_draining(self, worker_id: str) -> None:
        self.bus.set_draining(worker_id)

    def close_worker(self, worker_id: str) -> None:
        self.bus.close_worker(worker_id)

    async def ping(self, worker_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        """Liveness of one worker: WebSocket ping, or sup_ping on a local link."""
        conn = self.bus.connections.get(worker_id)
        if conn is None or conn.closing:
            return False
        if conn.pinger is None:
            return True
        return bool(await conn.pinger(timeout))

    # -- running ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background duties: the core's timers, "changed" flushes, the channel sweeper."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._flush_loop)
            nursery.start_soon(self.bus.channels.run_sweeper)
            task_status.started()
            await trio.sleep_forever()

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("BusEdge.run() is not running")
        self._nursery.start_soon(fn, *args)

    def _changes_due(self) -> None:
        self._changes.set()

    def _wake_at(self, at: float) -> None:
        scope = self._timer_scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at

    async def _timer_loop(self) -> None:
        while True:
            nxt = self.bus.tick(trio.current_time())
            with trio.CancelScope(deadline=math.inf if nxt is None else nxt) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None

    async def _flush_loop(self) -> None:
        while True:
            await self._changes.wait()
            self._changes = trio.Event()
            self.bus.flush_changes()

    # -- connections -----------------------------------------------------------------------

    async def serve_local(self, stream: trio.abc.Stream, *, label: str) -> None:
        """Run one actor's local link until it closes, then clean it up."""
        carrier = StreamCarrier(stream, peer=f"local:{label}", refuse_oversized=True)
        await self.serve(carrier, label=label)

    async def serve(
        self,
        carrier: Any,
        *,
        label: str | None = None,
        session: Any = None,
        guard: Any = None,
        task_status: trio.TaskStatus[Connection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """``guard`` (an RBAC listener's ``RbacGuard``) sees every message before the bus."""
        if guard is not None:
            conn = guard.connection_for(session, kind=carrier.kind, label=label, peer=carrier.peer)
        else:
            conn = Connection(kind=carrier.kind, label=label, peer=carrier.peer)
            if session is not None:
                conn.session = session
        if isinstance(carrier, StreamCarrier):
            carrier.ping_handler = lambda timeout: self._local_ping(conn, timeout)
        conn.pinger = carrier.ping
        conn.max_message = getattr(carrier, "max_message", MAX_MESSAGE)
        conn.on_oversized = self.oversize.outbound
        conn.use_carrier(carrier)
        self.bus.attach(conn)
        task_status.started(conn)
        try:
            async with trio.open_nursery() as nursery:
                conn.cancel_scope = nursery.cancel_scope
                nursery.start_soon(self._writer, conn, carrier, nursery.cancel_scope)
                await self._reader(conn, carrier, guard)
                nursery.cancel_scope.cancel()
        finally:
            self.bus.cleanup(conn)
            with trio.CancelScope(shield=True):
                await carrier.aclose(CLOSE_RECONNECT)

    async def _writer(self, conn: Connection, carrier: Any, scope: trio.CancelScope) -> None:
        try:
            await conn.write_loop(carrier)
        except CarrierClosed:
            pass
        conn.closing = True
        scope.cancel()

    async def _reader(self, conn: Connection, carrier: Any, guard: Any = None) -> None:
        handle = self.bus.handle
        decode = codec.decode
        telemetry = self.telemetry
        since_yield = 0
        while True:
            try:
                raw = await carrier.receive()
            except CarrierClosed:
                conn.closing = True  # leases are free for a reconnecting worker from now on
                return
            if conn.closing:
                return
            since_yield += 1
            if since_yield >= YIELD_EVERY:
                since_yield = 0
                await trio.lowlevel.checkpoint()
            if type(raw) is not str:
                if type(raw) is Oversized:
                    self.oversize.inbound(conn, raw)
                    continue
                if type(raw) is bytes and raw[:4] in TELEMETRY_PREFIXES:
                    telemetry.offer(raw, conn.worker_id)
                    continue
            try:
                msg = decode(raw)
            except codec.DecodeError as exc:
                self._bad_frame(conn, exc)
                continue
            finally:
                del raw  # a large message must not outlive its decoding (peak memory)
            if msg is None:
                continue
            try:
                if guard is None:
                    handle(conn, msg)
                else:
                    await guard.handle(conn, msg)
            except Exception:
                log.exception("message handling failed", tag=msg.TAG, worker_id=conn.worker_id)
            msg = None

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

    async def _local_ping(self, conn: Connection, timeout: float) -> bool:  # noqa: ASYNC109
        self._ping_seq += 1
        seq = self._ping_seq
        answered = trio.Event()
        self.bus.expect_pong(conn, seq, answered.set)
        try:
            if not conn.send(m.SupPing(seq=seq)):
                return False
            with trio.move_on_after(timeout):
                await answered.wait()
                return True
            return False
        finally:
            self.bus.forget_pong(conn, seq)

    # -- calls from supervisor code ----------------------------------------------------------

    async def call(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = DEFAULT,
        metadata: Any = None,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> Any:
        """Call a function through the bus; raises InvocationFailed."""
        done = trio.Event()
        box: list[tuple[Any, m.ErrorBody | None]] = []

        def on_done(result: Any, err: m.ErrorBody | None) -> None:
            box.append((result, err))
            done.set()

        expiry = m.ErrorBody("timeout", f"invocation timed out after {int(timeout * 1000)}ms")
        self.bus.internal_invoke(
            function_id,
            data,
            namespace=namespace,
            metadata=metadata,
            on_done=on_done,
            timeout=timeout,  # the bus ends the call then: nothing of it stays in flight
            expiry=expiry,
        )
        with trio.move_on_after(timeout):  # the bus ends the call at the same instant
            await done.wait()
        result, err = box[0] if box else (None, expiry)
        if err is not None:
            raise InvocationFailed(err.code, err.message)
        return result

    async def shutdown(self) -> None:
        self.bus.shutdown()
