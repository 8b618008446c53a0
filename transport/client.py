"""The small bus client every built-in actor uses: register, serve invocations, call others.

It speaks the same protocol as the SDKs over either carrier: the inherited socketpair named
by ``III_BUS_FD`` when the supervisor spawned us, or a WebSocket to ``III_URL`` otherwise
(handy for running an actor by hand against a running engine).

Two lighter forms serve an actor's per-message hot path (the queue's deliveries): an *inline*
function runs in the reader itself, without a task of its own, and answers at once or later
with ``reply``; ``call`` sends an invocation and hands its outcome to a callback, with one
timer for every call's deadline instead of a task and a cancel scope each.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import os
import socket
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import structlog
import trio

from transport import codec
from transport import messages as m
from transport.carrier import Carrier, CarrierClosed, StreamCarrier, WebSocketCarrier
from transport.framing import encode_frame
from transport.oversize import MAX_MESSAGE, Oversized, too_large_text
from transport.tracecontext import current, trace_fields

log = structlog.get_logger(__name__)

__all__ = [
    "DEFERRED",
    "BusClient",
    "FunctionError",
    "InvocationContext",
    "TriggerBinding",
    "connect_from_env",
]


class FunctionError(Exception):
    """Raised by a handler (or by ``invoke``) to carry a specific error code."""

    def __init__(self, code: str, message: str, stacktrace: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.stacktrace = stacktrace


@attrs.frozen
class InvocationContext:
    invocation_id: str | None
    function_id: str
    metadata: Any = None
    traceparent: str | None = None
    baggage: str | None = None


@attrs.frozen
class TriggerBinding:
    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: str | None = None  # target function namespace; pass it back when firing


REGISTRATION_QUIET = 0.02
ANNOUNCE_WAIT = 5.0

Handler = Callable[[Any, InvocationContext], Awaitable[Any]]
# Runs in the reader (no task): returns the result, raises FunctionError, or returns DEFERRED
# and answers later with BusClient.reply. It must not block and sees no trace context.
InlineHandler = Callable[[Any, InvocationContext], Any]
BindingHandler = Callable[[TriggerBinding], Awaitable[None]]
# A call's outcome: its result, or the error (then the result is None).
CallDone = Callable[[Any, "FunctionError | None"], None]

DEFERRED: Final = object()  # an inline handler's "I answer later, with reply()"


@attrs.define(eq=False)
class _TriggerType:
    message: m.RegisterTriggerType
    on_register: BindingHandler
    on_unregister: BindingHandler


@attrs.frozen
class _Framed:
    """Bytes already framed for the link: the rest of a direct write."""

    data: bytes


class _InvocationIds:
    """The ids of our calls: a random UUID4 whose last 12 hex digits count up. Unique as a
    uuid4 is for all practical purposes (74 random bits per client) at a tenth of its cost
    (``uuid4`` reads the kernel's random source per id, a syscall each)."""

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]  # 8-4-4-4- with the version and variant bits
        self._count = itertools.count(int(uuid.uuid4().hex[-12:], 16))

    def next(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"


class _Waiter:
    """One call's answer slot (lighter than a memory channel per call)."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: m.InvocationResult | None = None

    def settle(self, result: m.InvocationResult) -> bool:
        """Keep the first answer; whether this one was it. The waiting task takes it out."""
        if self.result is not None:
            return False
        self.result = result
        self.done.set()
        return True


class _Callback:
    """One ``call``'s answer slot: the callback (run once: the slot leaves ``_waiters``
    before it runs) and the call's deadline."""

    __slots__ = ("deadline", "on_done", "timeout")

    def __init__(self, on_done: CallDone, deadline: float, timeout: float) -> None:
        self.on_done = on_done
        self.deadline = deadline
        self.timeout = timeout

    def settle(self, result: m.InvocationResult) -> bool:
        error = result.error
        if error is None:
            self._run(result.result, None)
        else:
            self._run(None, FunctionError(error.code, error.message, error.stacktrace))
        return True

    def expire(self) -> None:
        ms = int(self.timeout * 1000)
        self._run(None, FunctionError("TIMEOUT", f"invocation timed out after {ms}ms"))

    def _run(self, result: Any, error: FunctionError | None) -> None:
        try:
            self.on_done(result, error)
        except Exception:  # a bug in one callback must not end the reader (and the actor)
            log.exception("call callback failed")


class BusClient:
    def __init__(self, carrier: Carrier, *, name: str, description: str | None = None) -> None:
        self.carrier = carrier
        self.name = name
        self.description = description
        self.worker_id: str | None = None
        self._functions: dict[str, tuple[m.RegisterFunction, Handler | None]] = {}
        self._inline: dict[str, InlineHandler] = {}
        self._trigger_types: dict[str, _TriggerType] = {}
        self._bindings: dict[str, TriggerBinding] = {}
        self._waiters: dict[str, _Waiter | _Callback] = {}
        self._deadlines: list[tuple[float, str]] = []  # heap of the calls' (deadline, id)
        self._timer: trio.CancelScope | None = None
        self._ids = _InvocationIds()
        # What goes to the bus: messages, or a framed rest a direct write left (_Framed).
        self._outbox: collections.deque[Any] = collections.deque()
        self._outbox_filled = trio.Event()  # the writer's wake-up
        self._writing = False  # the writer holds messages it has not finished writing
        self._in_burst = False  # the reader is handling frames that arrived together
        # A local link is written from the reader at the end of each burst (below).
        self._direct = isinstance(carrier, StreamCarrier) and carrier.writes_directly
        self._binding_send, self._binding_recv = trio.open_memory_channel[Any](math.inf)
        self._triggers: dict[str, m.RegisterTrigger] = {}
        self._connected = False
        self._registrations = 0
        self._last_registration = 0.0
        self._announce_early = False
        self._nursery: trio.Nursery | None = None
        self.registered = trio.Event()

    # -- registration ------------------------------------------------------------------

    def register_function(
        self,
        function_id: str,
        handler: Handler,
        *,
        description: str | None = None,
        metadata: Any = None,
        request_format: Any = None,
        response_format: Any = None,
    ) -> None:
        msg = m.RegisterFunction(
            id=function_id,
            description=description,
            metadata=metadata,
            request_format=request_format,
            response_format=response_format,
        )
        self._inline.pop(function_id, None)
        self._functions[function_id] = (msg, handler)
        self._noted()
        if self._connected:
            self._queue(msg)

    def register_inline(
        self,
        function_id: str,
        handler: InlineHandler,
        *,
        description: str | None = None,
        metadata: Any = None,
    ) -> None:
        """A function whose handler runs in the reader, without a task: for the hot path of
        an actor whose handler does not wait (``InlineHandler`` says what it may do)."""
        msg = m.RegisterFunction(id=function_id, description=description, metadata=metadata)
        self._functions[function_id] = (msg, None)
        self._inline[function_id] = handler
        self._noted()
        if self._connected:
            self._queue(msg)

    def reply(
        self, ctx: InvocationContext, result: Any = None, error: FunctionError | None = None
    ) -> None:
        """Answer an invocation an inline handler deferred (``DEFERRED``)."""
        if ctx.invocation_id is None:
            return
        err = None if error is None else m.ErrorBody(error.code, error.message, error.stacktrace)
        self._queue(
            m.InvocationResult(
                invocation_id=ctx.invocation_id,
                function_id=ctx.function_id,
                result=None if err is not None else result,
                error=err,
                traceparent=ctx.traceparent,
            )
        )

    def register_trigger_type(
        self,
        type_id: str,
        description: str,
        *,
        on_register: BindingHandler,
        on_unregister: BindingHandler,
        trigger_request_format: Any = None,
        call_request_format: Any = None,
    ) -> None:
        msg = m.RegisterTriggerType(
            id=type_id,
            description=description,
            trigger_request_format=trigger_request_format,
            call_request_format=call_request_format,
        )
        self._trigger_types[type_id] = _TriggerType(msg, on_register, on_unregister)
        self._noted()
        if self._connected:
            self._queue(msg)

    def register_trigger(
        self,
        trigger_type: str,
        function_id: str,
        config: Any = None,
        *,
        metadata: Any = None,
        namespace: str | None = None,
        trigger_id: str | None = None,
    ) -> str:
        """Bind one of our functions to a trigger type; returns the binding id."""
        msg = m.RegisterTrigger(
            id=trigger_id or str(uuid.uuid4()),
            trigger_type=trigger_type,
            function_id=function_id,
            config=config,
            metadata=metadata,
            namespace=namespace,
        )
        self._triggers[msg.id] = msg
        self._noted()
        if self._connected:
            self._queue(msg)
        return msg.id

    def unregister_trigger(self, trigger_id: str) -> None:
        msg = self._triggers.pop(trigger_id, None)
        if msg is not None and self._connected:
            self._queue(m.UnregisterTrigger(id=trigger_id, trigger_type=msg.trigger_type))

    def bindings(self, trigger_type: str | None = None) -> list[TriggerBinding]:
        return [
            b
            for b in self._bindings.values()
            if trigger_type is None or b.trigger_type == trigger_type
        ]

    def _noted(self) -> None:
        self._registrations += 1
        try:
            self._last_registration = trio.current_time()
        except RuntimeError:  # registered before trio.run: nothing to time
            pass

    def announce_early(self) -> None:
        """Announce (and start reading replies) without waiting for registrations: for an
        actor that must call the bus before it knows what to register (iii-observability reads
        its stored settings first). Its registrations follow as they are made."""
        self._announce_early = True

    async def _registrations_settled(self) -> None:
        """Return once the actor has registered something and then been quiet briefly."""
        while not (  # noqa: ASYNC110 - a quiet period is a matter of time, not an event
            self._announce_early
            or self._registrations
            and trio.current_time() - self._last_registration >= REGISTRATION_QUIET
        ):
            await trio.sleep(REGISTRATION_QUIET / 2)

    # -- calls -------------------------------------------------------------------------

    async def invoke(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str | None = None,
        metadata: Any = None,
        timeout: float = 30.0,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """Call a function and wait for its result; errors raise ``FunctionError``. The
        trace context is the given one, else that of the call this task is handling."""
        if traceparent is None and baggage is None:
            traceparent, baggage = current.get()
        inv_id = self._ids.next()
        waiter = _Waiter()
        self._waiters[inv_id] = waiter
        try:
            self._queue(
                m.InvokeFunction(
                    function_id=function_id,
                    data=data,
                    invocation_id=inv_id,
                    namespace=namespace,
                    metadata=metadata,
                    traceparent=traceparent,
                    baggage=baggage,
                )
            )
            with trio.move_on_after(timeout):
                await waiter.done.wait()
                result = waiter.result
                assert result is not None
                if result.error is not None:
                    raise FunctionError(
                        result.error.code, result.error.message, result.error.stacktrace
                    )
                return result.result
            raise FunctionError("TIMEOUT", f"invocation timed out after {int(timeout * 1000)}ms")
        finally:
            self._waiters.pop(inv_id, None)

    def call(
        self,
        function_id: str,
        data: Any,
        on_done: CallDone,
        *,
        namespace: str | None = None,
        timeout: float = 30.0,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> None:
        """``invoke`` without a task: send the call now, hand its outcome to ``on_done`` (from
        the reader, or from the timer with a ``TIMEOUT`` error) exactly once; an answer after
        the deadline is ignored. ``on_done`` must not block."""
        if traceparent is None and baggage is None:
            traceparent, baggage = current.get()
        inv_id = self._ids.next()
        deadline = trio.current_time() + timeout
        self._waiters[inv_id] = _Callback(on_done, deadline, timeout)
        if len(self._deadlines) > 2 * len(self._waiters) + 1024:
            self._compact_deadlines()
        heapq.heappush(self._deadlines, (deadline, inv_id))
        if self._timer is not None and deadline < self._timer.deadline:
            self._timer.deadline = deadline
        self._queue(
            m.InvokeFunction(
                function_id=function_id,
                data=data,
                invocation_id=inv_id,
                namespace=namespace,
                traceparent=traceparent,
                baggage=baggage,
            )
        )

    async def _expire_calls(self) -> None:
        """The one timer of every ``call``: fail each one whose deadline has passed."""
        while True:
            with trio.CancelScope() as scope:
                self._timer = scope
                scope.deadline = self._deadlines[0][0] if self._deadlines else math.inf
                await trio.sleep_forever()
            self._timer = None
            now = trio.current_time()
            heap = self._deadlines
            while heap and heap[0][0] <= now:
                deadline, inv_id = heapq.heappop(heap)
                slot = self._waiters.get(inv_id)
                if isinstance(slot, _Callback) and slot.deadline == deadline:
                    del self._waiters[inv_id]
                    slot.expire()

    def _compact_deadlines(self) -> None:
        """Keep only the live calls' deadlines: an answered call's entry would otherwise stay
        until its deadline (with 300 s timeouts, a busy actor would hold a million)."""
        self._deadlines = [
            (slot.deadline, inv_id)
            for inv_id, slot in self._waiters.items()
            if isinstance(slot, _Callback)
        ]
        heapq.heapify(self._deadlines)

    def invoke_void(
        self, function_id: str, data: Any, *, namespace: str | None = None, metadata: Any = None
    ) -> None:
        traceparent, baggage = current.get()
        self._queue(
            m.InvokeFunction(
                function_id=function_id,
                data=data,
                action=m.TriggerAction(type="void"),
                namespace=namespace,
                metadata=metadata,
                traceparent=traceparent,
                baggage=baggage,
            )
        )

    def fire(self, binding: TriggerBinding, data: Any) -> None:
        """Fire one trigger binding: a void call to its function, with its metadata."""
        self.invoke_void(
            binding.function_id, data, namespace=binding.namespace, metadata=binding.metadata
        )

    # -- running -----------------------------------------------------------------------

    def _queue(self, msg: Any) -> None:
        self._outbox.append(msg)
        if not self._in_burst:  # the reader flushes at the end of its burst
            self._outbox_filled.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the bus link closes (EOF means the supervisor is gone: we exit)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._writer)
            nursery.start_soon(self._binding_loop)
            nursery.start_soon(self._expire_calls)
            # Announce with the registrations in the same burst, so "registered" on the bus
            # means "serving" for the supervisor's readiness check (actors register right
            # after opening their storage; one that registers nothing announces after 5 s).
            with trio.move_on_after(ANNOUNCE_WAIT):
                await self._registrations_settled()
            self._announce()
            task_status.started()
            try:
                await self._reader()
            finally:
                nursery.cancel_scope.cancel()

    def _announce(self) -> None:
        self._connected = True
        self._queue(
            m.InvokeFunction(
                function_id="engine::workers::register",
                action=m.TriggerAction(type="void"),
                data={
                    "runtime": "python",
                    "version": "iii-supervisor",
                    "name": self.name,
                    "description": self.description,
                    "os": os.uname().sysname,
                    "pid": os.getpid(),
                    "isolation": "process",
                    "namespace": None,
                },
            )
        )
        for tt in self._trigger_types.values():
            self._queue(tt.message)
        for msg, _ in self._functions.values():
            self._queue(msg)
        for trigger in self._triggers.values():
            self._queue(trigger)

    async def _writer(self) -> None:
        outbox = self._outbox
        while True:
            await self._outbox_filled.wait()
            self._outbox_filled = trio.Event()
            if not outbox:
                continue  # the reader wrote it meanwhile
            msgs = [outbox.popleft() for _ in range(min(len(outbox), 256))]
            if outbox:
                self._outbox_filled.set()
            self._writing = True
            try:
                if self._direct:
                    await self.carrier.write_raw(self._frames(msgs))  # type: ignore[attr-defined]
                else:
                    batch = [p for p in map(self._encode, msgs) if p is not None]
                    if batch:
                        await self.carrier.send_many(batch)
            except CarrierClosed:
                return
            finally:
                self._writing = False

    def _frames(self, msgs: list[Any]) -> bytes:
        """The messages framed for a local link, in order (a _Framed rest as it is)."""
        parts = []
        for msg in msgs:
            if type(msg) is _Framed:
                parts.append(msg.data)
            else:
                payload = self._encode(msg)
                if payload is not None:
                    parts.append(encode_frame(payload))
        return b"".join(parts)

    def _flush_burst(self) -> None:
        """The end of a burst of input on a local link: write what handling it queued now,
        from the reader, instead of waking the writer for it (a task switch per burst). A rest
        the socket did not take, or a busy writer, leaves the rest to the writer, in order."""
        self._in_burst = False
        outbox = self._outbox
        if not outbox:
            return
        if self._writing or len(outbox) > 256:
            self._outbox_filled.set()
            return
        msgs = list(outbox)
        outbox.clear()  # what _frames queues meanwhile (an oversize answer's callback) stays
        data = self._frames(msgs)
        if not data:
            return
        try:
            rest = self.carrier.try_write(data)  # type: ignore[attr-defined]
        except CarrierClosed:
            return  # the reader sees the link close next
        if rest:
            outbox.append(_Framed(rest))
            self._outbox_filled.set()
        elif rest is None:  # cannot happen while the writer is idle; keep the order anyway
            outbox.append(_Framed(data))
            self._outbox_filled.set()

    def _encode(self, msg: Any) -> bytes | None:
        """The message's bytes; over the bus's limit, what SDK 0.25 sends instead: an error
        result for a result, nothing for a call (whose caller gets the error at once)."""
        payload = codec.encode(msg)
        if len(payload) <= MAX_MESSAGE:
            return payload
        what = msg.TAG
        if isinstance(msg, m.InvocationResult):
            what = f"invocationresult of {msg.function_id}"
        elif isinstance(msg, m.InvokeFunction):
            what = f"invokefunction for {msg.function_id}"
        text = too_large_text(what, len(payload), MAX_MESSAGE)
        log.warning("message over the size limit not sent", tag=msg.TAG, size=len(payload))
        err = m.ErrorBody("payload_too_large", text)
        if isinstance(msg, m.InvocationResult):
            return codec.encode(
                m.InvocationResult(msg.invocation_id, msg.function_id, None, err, msg.traceparent)
            )
        if isinstance(msg, m.InvokeFunction) and msg.invocation_id is not None:
            self._answer(m.InvocationResult(msg.invocation_id, msg.function_id, None, err))
        return None

    def _answer(self, result: m.InvocationResult) -> None:
        """Hand a call's answer to its slot; the first answer counts."""
        slot = self._waiters.get(result.invocation_id)
        if slot is None:
            return
        if isinstance(slot, _Callback):
            del self._waiters[result.invocation_id]
        slot.settle(result)

    async def _reader(self) -> None:
        while True:
            try:
                raw = await self.carrier.receive()
            except CarrierClosed:
                log.info("bus link closed")
                return
            if self._direct:
                self._in_burst = True
                try:
                    self._take(raw)
                finally:
                    if not self.carrier.has_buffered():  # type: ignore[attr-defined]
                        self._flush_burst()
            else:
                self._take(raw)

    def _take(self, raw: Any) -> None:
        if isinstance(raw, Oversized):  # only on a carrier told to refuse, not ours
            return
        try:
            msg = codec.decode(raw)
        except codec.DecodeError as exc:
            log.warning("undecodable frame from the bus", reason=exc.reason)
            return
        if msg is not None:
            self._handle(msg)

    def _handle(self, msg: Any) -> None:
        assert self._nursery is not None
        if isinstance(msg, m.InvokeFunction):
            inline = self._inline.get(msg.function_id)
            if inline is None:
                self._nursery.start_soon(self._run_handler, msg)
            else:
                self._run_inline(inline, msg)
        elif isinstance(msg, m.InvocationResult):
            self._answer(msg)
        elif isinstance(msg, m.SupPing):
            self._queue(m.SupPong(seq=msg.seq))
        elif isinstance(msg, m.RegisterTrigger | m.UnregisterTrigger):
            # One task applies binding changes in arrival order: an unregister must never
            # overtake the register it undoes.
            self._binding_send.send_nowait(msg)
        elif isinstance(msg, m.WorkerRegistered):
            self.worker_id = msg.worker_id
            self.registered.set()
        elif isinstance(msg, m.RegistrationRejected):
            log.error(
                "registration rejected",
                code=msg.code,
                function_id=msg.function_id,
                worker_name=msg.worker_name,
            )
        elif isinstance(msg, m.Ping):
            self._queue(m.Pong())

    async def _run_handler(self, msg: m.InvokeFunction) -> None:
        # This task's log lines and the calls it makes belong to the caller's trace.
        current.set((msg.traceparent, msg.baggage))
        if msg.traceparent is not None:
            structlog.contextvars.bind_contextvars(**trace_fields(msg.traceparent))
        entry = self._functions.get(msg.function_id)
        handler = entry[1] if entry is not None else None
        ctx = InvocationContext(
            invocation_id=msg.invocation_id,
            function_id=msg.function_id,
            metadata=msg.metadata,
            traceparent=msg.traceparent,
            baggage=msg.baggage,
        )
        result: Any = None
        err: m.ErrorBody | None = None
        if handler is None:
            err = m.ErrorBody("function_not_found", f"Function '{msg.function_id}' not found")
        else:
            try:
                result = await handler(msg.data, ctx)
            except FunctionError as exc:
                err = m.ErrorBody(exc.code, exc.message, exc.stacktrace)
            except Exception as exc:
                log.exception("handler failed", function_id=msg.function_id)
                err = m.ErrorBody(
                    "invocation_failed", str(exc) or type(exc).__name__, traceback.format_exc()
                )
        if msg.invocation_id is not None:
            self._queue(
                m.InvocationResult(
                    invocation_id=msg.invocation_id,
                    function_id=msg.function_id,
                    result=result,
                    error=err,
                    traceparent=msg.traceparent,
                )
            )

    def _run_inline(self, handler: InlineHandler, msg: m.InvokeFunction) -> None:
        ctx = InvocationContext(
            invocation_id=msg.invocation_id,
            function_id=msg.function_id,
            metadata=msg.metadata,
            traceparent=msg.traceparent,
            baggage=msg.baggage,
        )
        if msg.traceparent is None and msg.baggage is None:
            self._call_inline(handler, msg, ctx)
            return
        # As in a handler task: its log lines and what it fires belong to the caller's trace.
        token = current.set((msg.traceparent, msg.baggage))
        try:
            with structlog.contextvars.bound_contextvars(**trace_fields(msg.traceparent)):
                self._call_inline(handler, msg, ctx)
        finally:
            current.reset(token)

    def _call_inline(
        self, handler: InlineHandler, msg: m.InvokeFunction, ctx: InvocationContext
    ) -> None:
        try:
            result = handler(msg.data, ctx)
        except FunctionError as exc:
            self.reply(ctx, error=exc)
        except Exception as exc:
            log.exception("handler failed", function_id=msg.function_id)
            text = str(exc) or type(exc).__name__
            self.reply(ctx, error=FunctionError("invocation_failed", text, traceback.format_exc()))
        else:
            if result is not DEFERRED:
                self.reply(ctx, result)

    async def _binding_loop(self) -> None:
        async for msg in self._binding_recv:
            if isinstance(msg, m.RegisterTrigger):
                await self._bind(msg)
            else:
                await self._unbind(msg)

    async def _bind(self, msg: m.RegisterTrigger) -> None:
        binding = TriggerBinding(
            id=msg.id,
            trigger_type=msg.trigger_type,
            function_id=msg.function_id,
            config=msg.config,
            metadata=msg.metadata,
            namespace=msg.namespace,
        )
        tt = self._trigger_types.get(msg.trigger_type)
        err: m.ErrorBody | None = None
        if tt is None:
            err = m.ErrorBody(
                "trigger_type_not_found", f"Trigger type {msg.trigger_type} not found"
            )
        else:
            try:
                await tt.on_register(binding)
                self._bindings[binding.id] = binding
            except FunctionError as exc:
                err = m.ErrorBody(exc.code, exc.message)
            except Exception as exc:
                err = m.ErrorBody("trigger_registration_failed", str(exc) or type(exc).__name__)
        self._queue(
            m.TriggerRegistrationResult(
                id=msg.id, trigger_type=msg.trigger_type, function_id=msg.function_id, error=err
            )
        )

    async def _unbind(self, msg: m.UnregisterTrigger) -> None:
        binding = self._bindings.pop(msg.id, None)
        tt = self._trigger_types.get(msg.trigger_type or "")
        if binding is None or tt is None:
            return
        try:
            await tt.on_unregister(binding)
        except Exception:
            log.exception("unregister_trigger handler failed", id=msg.id)


@asynccontextmanager
async def connect_from_env(
    name: str, *, description: str | None = None
) -> AsyncIterator[BusClient]:
    """A client on ``III_BUS_FD`` (spawned by the supervisor) or ``III_URL`` (by hand)."""
    fd = os.environ.get("III_BUS_FD")
    if fd:
        sock = socket.socket(fileno=int(fd))
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        async with stream:
            yield BusClient(StreamCarrier(stream, peer="bus"), name=name, description=description)
        return
    url = os.environ.get("III_URL", "ws://127.0.0.1:49134")
    import trio_websocket  # only actors run by hand need it: keep it off the restart path

    async with trio_websocket.open_websocket_url(url, max_message_size=64 * 1024 * 1024) as ws:
        yield BusClient(WebSocketCarrier(ws), name=name, description=description)
