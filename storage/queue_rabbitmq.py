"""The ``rabbitmq`` queue adapter (WORKERS.md §7.9, §14): durable broker queues shared by every
engine that points at the broker (competing consumers).

Names (``<base>`` below):

* named queue ``<name>``: direct exchange ``iii.__fn_queue::<name>``, ``<base>`` =
  ``iii.__fn_queue::<name>``;
* durable subscriber of ``<topic>`` (function ``<fn>`` in namespace ``<ns>``): fanout exchange
  ``iii.<topic>.exchange``, ``<base>`` = ``iii.<topic>.<fn>@<ns>``;
* then the main queue ``<base>.queue``, the DLQ ``<base>.dlq`` and one retry queue per delay,
  ``<base>.retry.<ms>``, whose ``x-message-ttl`` is that delay and which dead-letters back to the
  main queue. Every queue is durable (``queue_type: quorum`` makes them quorum queues) and every
  message persistent.

Attempts follow the one rule of ``storage.queue_core`` (``max_attempts`` handler calls, retry
after ``backoff × 2^(attempts − 1)``): the ``x-attempt`` header counts failed attempts; a failure
publishes the message to the retry queue of its delay (exponential, unlike upstream's single
fixed-TTL queue: one queue per delay keeps TTL expiry in order) or to the DLQ with ``x-error``
and ``x-failed-at``, and only once the broker confirmed that publish is the delivery acked, so
a crash in between duplicates a message, never loses it. FIFO queues consume with prefetch 1
(global order, as upstream; groups are not kept apart and a retry lets later messages pass).

Threading: pika's ``BlockingConnection`` lives in one thread owned by the adapter. The thread
runs ``process_data_events`` (which also keeps heartbeats), executes the operations trio hands
it (woken by ``add_callback_threadsafe`` only while it waits there, once per wait), and hands
trio what arrived (deliveries, finished operations) in one ``TrioToken.run_sync_soon`` per turn.
Declarations and counts go on a blocking channel; every publish goes on a second channel in
confirm mode whose confirms are pipelined: publishes are sent without waiting for the one
before, ``storage.queue_confirms`` matches each ``basic.ack``/``nack`` (and ``basic.return``)
to its publish, and an enqueue is answered only once its own publish is confirmed. Acks of
deliveries are sent without waiting (an ack has no reply). When the connection drops (the
broker restarts), the thread reconnects with backoff, declares everything again and resumes
consuming; operations wait for the connection (up to ``OP_TIMEOUT``) and publishes not yet
confirmed are sent again first, so an acknowledged publish is never lost. Acks of deliveries
from the old connection are dropped: the broker redelivers those messages (at-least-once).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import attrs
import orjson
import pika
import pika.exceptions
import structlog
import trio

from storage.errors import StorageUnavailableError
from storage.queue_broker import (
    DeadMessage,
    Delivery,
    Message,
    QueueNotFoundError,
    QueueSpec,
)
from storage.queue_confirms import ConfirmTracker
from storage.queue_core import QueueCounts, retry_delay_ms
from storage.queue_rabbitmq_acks import AckWindow
from storage.queue_rabbitmq_dlq import Seen, dead_message, first_with_id, pick_all, scan_dlq

__all__ = ["OP_TIMEOUT", "RabbitBroker", "names_of", "open_rabbitmq_broker"]

log = structlog.get_logger(__name__)

OP_TIMEOUT: Final = 30.0  # how long an operation waits for a (re)connection
# How long a finished delivery's ack may wait in trio for a hand-over to ride with (an
# operation's, or that of half a prefetch window of acks) before it is handed over alone. An
# ack waiting holds its prefetch slot, so the wait is short and bounded by the window.
ACK_DELAY: Final = 0.002
RECONNECT_BACKOFF: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
_PRECONDITION_FAILED: Final = 406  # a declaration whose arguments differ from the queue's
_NOT_FOUND: Final = 404  # AMQP reply code of a channel closed for a missing queue or exchange
_CONNECTION_ERRORS: Final = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.StreamLostError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ChannelClosed,
    OSError,
)

ScanAction = Literal["list", "redrive", "discard"]
Channel = Any  # pika.adapters.blocking_connection.BlockingChannel (pika ships no types)


@attrs.frozen
class Names:
    exchange: str
    exchange_type: Literal["direct", "fanout"]
    queue: str
    dlq: str
    base: str

    def retry(self, delay_ms: int) -> str:
        return f"{self.base}.retry.{delay_ms}"


def names_of(spec: QueueSpec) -> Names:
    if spec.topic is not None:
        ns = spec.namespace or "default"
        base = f"iii.{spec.topic}.{spec.function_id}@{ns}"
        return Names(f"iii.{spec.topic}.exchange", "fanout", f"{base}.queue", f"{base}.dlq", base)
    base = f"iii.__fn_queue::{spec.name}"
    return Names(base, "direct", f"{base}.queue", f"{base}.dlq", base)


class _Stale(Exception):
    """A delivery of a connection or channel that is gone: nothing to settle."""


@attrs.frozen
class _Publish:
    exchange: str
    routing_key: str
    body: bytes
    properties: Any
    prepare: Callable[[], None] | None = None  # run in the thread first (a declaration)


@attrs.define(eq=False)
class _Op:
    """Work for the connection thread. ``run`` is called there and answered at once; a
    ``publish`` is sent and answered (``result``: routed or not) at the broker's confirm.
    ``done`` is ``None`` for the thread's own waits."""

    run: Callable[[], Any] | None
    done: trio.Event | None
    deadline: float
    replay: bool  # sent again after a reconnect (publishes, declarations)
    publish: _Publish | None = None
    result: Any = None
    error: BaseException | None = None
    finished: bool = False


@attrs.define(eq=False)
class _Token:
    channel: Any  # the consuming pika.channel.Channel (asynchronous, under a blocking one)
    window: AckWindow  # that channel's
    urgent: int  # this many acks waiting are handed to the thread at once (half the prefetch)
    tag: int
    generation: int
    headers: dict[str, Any]
    properties: Any
    body: bytes


class _Cork:
    """Holds what pika writes to the connection's socket while held, and writes it as one
    buffer on release: pika writes every frame on its own (a publish is three), each a send
    of its own and a turn of its I/O loop. It replaces the connection's
    ``_adapter_emit_data``, the hook through which pika's protocol layer hands frames to its
    transport. Only for writes that wait for nothing: a blocking call releases first."""

    def __init__(self, impl: Any) -> None:
        self._impl = impl
        self._emit: Callable[[bytes], None] = impl._adapter_emit_data
        self._held: list[bytes] = []
        self._holding = False
        impl._adapter_emit_data = self._write

    def _write(self, data: bytes) -> None:
        if self._holding:
            self._held.append(data)
        else:
            self._emit(data)

    def hold(self) -> None:
        self._holding = True

    def release(self) -> None:
        self._holding = False
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            try:
                self._emit(data)
            except Exception:
                if self._impl.is_open:
                    raise
                # the connection is gone: its unconfirmed publishes go again after the
                # reconnect and its deliveries come again, so nothing held is missed


class RabbitBroker:
    broker_type = "rabbitmq"

    def __init__(
        self,
        url: str,
        trio_token: trio.lowlevel.TrioToken,
        *,
        queue_type: Literal["classic", "quorum"] = "classic",
        prefetch_count: int = 10,
        heartbeat: int = 30,
    ) -> None:
        self.url = url
        self.queue_type = queue_type
        self.prefetch_count = prefetch_count
        self._params = pika.URLParameters(url)
        self._params.heartbeat = heartbeat
        self._params.blocked_connection_timeout = 30
        self._params.connection_attempts = 1
        self._token = trio_token
        self._send, self._recv = trio.open_memory_channel[Delivery](math.inf)
        # Handed from trio to the thread (deque appends and pops are atomic): operations, and
        # the deliveries to ack.
        self._ops: deque[_Op] = deque()
        self._acks: deque[_Token] = deque()
        # (trio) What trio tasks queued since the courier last handed it over, and the courier
        # while it waits for more.
        self._outbox: list[_Op] = []
        self._ack_box: list[_Token] = []
        self._courier: trio.lowlevel.Task | None = None
        self._courier_timed = False  # the courier waits ACK_DELAY for acks to ride along
        self._specs: dict[str, QueueSpec] = {}
        self._consumed: set[str] = set()
        self._retry_delays: dict[str, set[int]] = {}
        self._declared_exchanges: set[str] = set()
        self._stopping = threading.Event()
        self._conn: pika.BlockingConnection | None = None
        self._admin: Channel | None = None  # declarations and counts (blocking channel)
        self._publisher: Any = None  # pika.channel.Channel in confirm mode: every publish
        self._confirms: ConfirmTracker[_Op] = ConfirmTracker()
        self._cork: _Cork | None = None  # the connection's writes, held while ops run
        self._inbox: list[Delivery] = []  # deliveries, handed to trio in one go
        self._answered: list[_Op] = []  # finished operations, likewise
        self._wake_pending = False  # woken since the thread last drained the queue
        self._polling = False  # the thread waits in process_data_events (trio must wake it)
        self._return_asked = False  # a callback asked process_data_events to return
        self._consumers: dict[str, Channel] = {}
        self._generation = 0
        self.connected = threading.Event()
        self.settled = threading.Event()  # connected once, or failed for good (``fatal``)
        self.fatal: StorageUnavailableError | None = None
        self._thread = threading.Thread(target=self._run, name="iii-queue-rabbitmq", daemon=True)

    @property
    def deliveries(self) -> trio.MemoryReceiveChannel[Delivery]:
        return self._recv

    # -- the connection thread --------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                self._connect()
                attempt = 0
                self._serve()
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != _PRECONDITION_FAILED or self._conn is None:
                    attempt = self._backoff(exc, attempt)
                    continue
                # PRECONDITION_FAILED: a queue exists with other arguments (another
                # queue_type, priority or TTL). Reconnecting cannot fix that: stop, say why.
                self.fatal = StorageUnavailableError(
                    f"rabbitmq refused a declaration: {exc.reply_text}; the queue exists with "
                    "other arguments (queue_type?): delete it or use its settings"
                )
                log.error("rabbitmq declaration refused", error=exc.reply_text)
                self._stopping.set()
                self.settled.set()
            except _CONNECTION_ERRORS as exc:
                attempt = self._backoff(exc, attempt)
            except Exception:  # a bug: log it and keep the thread alive
                log.exception("rabbitmq adapter thread error")
                self._drop_connection()
                self._stopping.wait(1.0)
        self._drop_connection()
        self._fail_all(self.fatal or StorageUnavailableError("the rabbitmq adapter is closed"))

    def _backoff(self, exc: BaseException, attempt: int) -> int:
        """The connection (or a channel) is lost: drop it, wait, say the next attempt."""
        if self._stopping.is_set():
            return attempt
        delay = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
        log.warning(
            "rabbitmq connection lost; reconnecting",
            error=str(exc) or type(exc).__name__,
            retry_in_s=delay,
        )
        self._drop_connection()
        self._fail_expired()
        self._stopping.wait(delay)
        return attempt + 1

    def _connect(self) -> None:
        conn = pika.BlockingConnection(self._params)
        self._conn = conn
        self._generation += 1
        self._declared_exchanges.clear()
        self._cork = _Cork(conn._impl)
        self._admin = conn.channel()
        self._publisher = self._open_publisher(conn)
        for spec in list(self._specs.values()):
            self._declare_sync(spec)
            if spec.name in self._consumed:
                self._consume_sync(spec)
        self.connected.set()
        self.settled.set()
        log.info("rabbitmq connected", url=_safe_url(self.url), queues=len(self._specs))

    def _open_publisher(self, conn: pika.BlockingConnection) -> Any:
        """A channel in confirm mode whose publishes are not waited for one by one: the
        asynchronous channel under a blocking one (pika's ``BlockingChannel`` would wait for
        each confirm before sending the next publish). Its frames are handled by this thread's
        ``process_data_events`` like every other."""
        channel = conn.channel()._impl
        tracker: ConfirmTracker[_Op] = ConfirmTracker()
        ready: list[bool] = []
        channel.confirm_delivery(
            ack_nack_callback=lambda frame: self._on_confirm(tracker, frame),
            callback=lambda _frame: ready.append(True),
        )
        channel.add_on_close_callback(lambda _ch, _reason: self._ask_return())
        channel.add_on_return_callback(
            lambda _ch, method, props, _body: tracker.returned(props.message_id, method.routing_key)
        )
        deadline = time.monotonic() + OP_TIMEOUT
        while not ready:
            if time.monotonic() > deadline:
                raise pika.exceptions.AMQPConnectionError("confirm mode was not acknowledged")
            conn.process_data_events(time_limit=0.5)
        self._confirms = tracker
        return channel

    def _on_confirm(self, tracker: ConfirmTracker[_Op], frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        for op, routed in tracker.confirmed(method.delivery_tag, method.multiple):
            if acked:
                op.result = routed
            else:
                op.error = StorageUnavailableError("rabbitmq refused the message (nack)")
            self._finish(op)
        self._ask_return()

    def _ask_return(self) -> None:
        """(a callback in the I/O loop) Return from ``process_data_events`` once the frames
        at hand are handled, so that what they brought is handed to trio in one go."""
        if not self._return_asked and self._conn is not None:
            self._return_asked = True
            self._conn.call_later(0, _noop)

    def _serve(self) -> None:
        conn = self._conn
        assert conn is not None
        while not self._stopping.is_set():
            self._run_ops()
            self._flush()
            if not self._publisher.is_open:
                raise pika.exceptions.ChannelWrongStateError("the publishing channel closed")
            # Trio wakes this thread only while it waits in process_data_events: set before
            # the last look at the queue, so an operation queued after that look wakes it.
            self._polling = True
            try:
                if not self._ops and not self._acks:
                    self._return_asked = False
                    # No time limit: each limit is a pika timer, and pika keeps a removed timer
                    # in its heap until its deadline, waking the loop for nothing then. What
                    # this loop waits for asks it to return (``_ask_return``, ``_wake``).
                    conn.process_data_events(time_limit=None)
            finally:
                self._polling = False

    def _run_ops(self) -> None:
        self._wake_pending = False
        cork = self._cork
        assert cork is not None
        cork.hold()
        try:
            self._send_acks()
            while self._ops:
                op = self._ops.popleft()
                if op.publish is not None and op.publish.prepare is None:
                    self._run_op(op)  # written with the others, at the release
                    continue
                cork.release()  # it waits for the broker: what is held goes first
                try:
                    self._run_op(op)
                finally:
                    cork.hold()
        finally:
            cork.release()

    def _run_op(self, op: _Op) -> None:
        try:
            if op.publish is not None:
                if op.publish.prepare is not None:
                    op.publish.prepare()
                self._start_publish(op)
                return  # answered at its confirm
            assert op.run is not None
            op.result = op.run()
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != _NOT_FOUND:
                self._lost(op, exc)
                raise
            # A queue this call named is gone (a passive declare, a basic.get): an error for
            # this call only; the broker closed the channel it used, so reopen that.
            op.error = QueueNotFoundError(f"rabbitmq: {exc.reply_text}")
            self._reopen_admin()
        except _CONNECTION_ERRORS as exc:
            self._lost(op, exc)
            raise
        except BaseException as exc:
            op.error = exc
        self._finish(op)

    def _lost(self, op: _Op, exc: BaseException) -> None:
        """``op`` failed with its connection (or channel): again after the reconnect, or
        failed now."""
        if op.replay and time.monotonic() < op.deadline and not self._stopping.is_set():
            self._ops.appendleft(op)  # after the reconnect; the loop raises to get there
            return
        op.error = StorageUnavailableError(f"rabbitmq: {exc or type(exc).__name__}")
        self._finish(op)

    def _reopen_admin(self) -> None:
        conn = self._conn
        if conn is not None and (self._admin is None or not self._admin.is_open):
            self._admin = conn.channel()

    def _finish(self, op: _Op) -> None:
        op.finished = True
        if op.done is not None:
            self._answered.append(op)

    def _flush(self) -> None:
        """Hand trio what arrived and what finished since the last flush, in one callback."""
        if not self._inbox and not self._answered:
            return
        inbox, answered = self._inbox, self._answered
        self._inbox, self._answered = [], []
        try:
            self._token.run_sync_soon(self._arrive, inbox, answered)
        except trio.RunFinishedError:  # stopping: unacked deliveries stay with the broker
            pass

    def _arrive(self, inbox: list[Delivery], answered: list[_Op]) -> None:
        """(trio) The deliveries and answers of one flush."""
        for delivery in inbox:
            self._send.send_nowait(delivery)
        for op in answered:
            assert op.done is not None
            op.done.set()

    def _send_acks(self) -> None:
        """Ack the deliveries trio finished, coalesced per channel (``AckWindow``). An ack
        has no reply; one lost with its connection or channel only means the broker delivers
        the message again (at-least-once)."""
        if not self._acks:
            return
        windows: dict[int, tuple[Any, AckWindow]] = {}
        stale = 0
        while self._acks:
            token = self._acks.popleft()
            if token.generation != self._generation or not token.channel.is_open:
                stale += 1
                continue
            token.window.finished(token.tag)
            windows[id(token.window)] = (token.channel, token.window)
        if stale:
            log.debug("deliveries from a previous connection; the broker redelivers them", n=stale)
        for channel, window in windows.values():
            for tag, multiple in window.acks():
                channel.basic_ack(tag, multiple=multiple)  # written with the next frames

    def _requeue_front(self, ops: list[_Op]) -> None:
        """Put ``ops`` back ahead of everything queued (publishes a lost channel never
        confirmed: they are sent again, in their order, after the reconnect)."""
        self._ops.extendleft(reversed(ops))

    def _fail_expired(self) -> None:
        kept: list[_Op] = []
        now = time.monotonic()
        while self._ops:
            op = self._ops.popleft()
            if now >= op.deadline or not op.replay:
                op.error = StorageUnavailableError("rabbitmq is unreachable")
                self._finish(op)
            else:
                kept.append(op)
        self._requeue_front(kept)
        self._flush()

    def _fail_all(self, error: Exception) -> None:
        while self._ops:
            op = self._ops.popleft()
            op.error = error
            self._finish(op)
        self._acks.clear()
        self._flush()

    def _drop_connection(self) -> None:
        self.connected.clear()
        conn, self._conn = self._conn, None
        self._admin = self._publisher = None
        self._consumers.clear()
        # Unconfirmed publishes go again (or fail, per ``_fail_expired``); a wait of the
        # thread's own (a DLQ scan) fails with its operation instead.
        unconfirmed = [op for op in self._confirms.drain() if op.done is not None]
        self._confirms = ConfirmTracker()
        self._requeue_front(unconfirmed)
        if conn is not None:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:  # already broken: nothing more to do
                pass

    # -- trio side ---------------------------------------------------------------------------

    def _post(self, op: _Op) -> None:
        self._outbox.append(op)
        self._kick()

    def _kick(self) -> None:
        courier = self._courier
        if courier is not None:
            self._courier = None
            trio.lowlevel.reschedule(courier)

    async def courier(self) -> None:
        """(trio, one task) Hand the thread, in one go, what trio's tasks queued since the
        last hand-over: woken by the first of them, it runs after the whole batch of tasks
        that trio is running, so a burst of calls costs one wake-up of the thread. Acks alone
        wait up to ``ACK_DELAY`` (or until half a prefetch window of them waits) to ride with
        the next operation: a wake-up saved per delivery while publishes flow."""

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._courier = None
            return trio.lowlevel.Abort.SUCCEEDED

        async def park() -> None:
            self._courier = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(abort)

        while True:
            if not self._outbox and not self._ack_box:
                await park()  # kicked by the next operation or ack
                continue
            if not self._outbox and len(self._ack_box) < self._ack_box[0].urgent:
                # Only a few acks: they wait for an operation (which kicks), for more acks
                # (the urgent one kicks), or for ACK_DELAY; then all go.
                self._courier_timed = True
                try:
                    with trio.move_on_after(ACK_DELAY):
                        await park()
                finally:
                    self._courier_timed = False
            ops, acks = self._outbox, self._ack_box
            self._outbox, self._ack_box = [], []
            self._ops.extend(ops)
            self._acks.extend(acks)
            # A busy thread drains the queues on its own; one wake-up per wait is enough.
            if self._polling and not self._wake_pending:
                self._wake_pending = True
                self._wake()

    async def _call(
        self, run: Callable[[], Any] | None, *, replay: bool = True, publish: _Publish | None = None
    ) -> Any:
        op = _Op(run, trio.Event(), time.monotonic() + OP_TIMEOUT, replay, publish)
        assert op.done is not None
        self._post(op)
        # Not shielded: a caller cancelled (the actor stopping) stops waiting; the thread still
        # finishes or fails the operation on its own.
        with trio.move_on_after(OP_TIMEOUT + 5):
            await op.done.wait()
        if not op.done.is_set():
            raise StorageUnavailableError("rabbitmq operation timed out")
        if op.error is not None:
            raise op.error
        return op.result

    def _wake(self) -> None:
        conn = self._conn
        if conn is not None:
            try:
                conn.add_callback_threadsafe(_noop)
            except Exception:  # closing: the loop notices on its own
                pass

    async def aclose(self) -> None:
        self._stopping.set()
        self._wake()
        await trio.to_thread.run_sync(self._thread.join, 10.0)

    # -- declarations (thread) ---------------------------------------------------------------

    def _queue_args(self, spec: QueueSpec | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.queue_type == "quorum":
            args["x-queue-type"] = "quorum"
        elif spec is not None and spec.max_priority:
            args["x-max-priority"] = spec.max_priority
        return args

    def _declare_sync(self, spec: QueueSpec) -> Names:
        ch = self._admin
        assert ch is not None
        names = names_of(spec)
        ch.exchange_declare(names.exchange, exchange_type=names.exchange_type, durable=True)
        ch.queue_declare(names.queue, durable=True, arguments=self._queue_args(spec))
        ch.queue_bind(names.queue, names.exchange, routing_key=names.queue)
        ch.queue_declare(names.dlq, durable=True, arguments=self._queue_args())
        for delay in self._retry_delays.get(spec.name, ()):
            self._declare_retry(names, delay)
        return names

    def _declare_retry(self, names: Names, delay_ms: int) -> str:
        ch = self._admin
        assert ch is not None
        name = names.retry(delay_ms)
        args = {
            **self._queue_args(),
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.queue,
        }
        ch.queue_declare(name, durable=True, arguments=args)
        return name

    def _consume_sync(self, spec: QueueSpec) -> None:
        conn = self._conn
        assert conn is not None
        old = self._consumers.pop(spec.name, None)
        if old is not None and old.is_open:
            old.close()
        ch = conn.channel()
        prefetch = 1 if spec.settings.fifo else spec.settings.concurrency
        ch.basic_qos(prefetch_count=prefetch)
        generation, window, urgent = self._generation, AckWindow(), max(1, prefetch // 2)
        # On the asynchronous channel: each delivery is taken in the I/O loop's callback, no
        # event queued for the blocking wrapper to dispatch later.
        ch._impl.basic_consume(
            names_of(spec).queue,
            on_message_callback=lambda c, m, p, b: self._on_message(
                spec.name, generation, window, urgent, c, m, p, b
            ),
        )
        self._consumers[spec.name] = ch

    def _stop_consuming_sync(self, name: str) -> None:
        ch = self._consumers.pop(name, None)
        if ch is not None and ch.is_open:
            ch.close()  # its unacked messages go back to the queue

    def _on_message(
        self,
        name: str,
        generation: int,
        window: AckWindow,
        urgent: int,
        ch: Any,
        method: Any,
        props: Any,
        body: bytes,
    ) -> None:
        headers = dict(props.headers or {})
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = body.decode("utf-8", "replace")
        target = {
            k: headers[k]
            for k in ("function_id", "namespace", "traceparent", "baggage")
            if isinstance(headers.get(k), str)
        }
        delivery = Delivery(
            queue=name,
            id=props.message_id or f"rabbitmq-{method.delivery_tag}",
            data=data,
            attempt=int(headers.get("x-attempt") or 0) + 1,
            target=target,
            token=_Token(ch, window, urgent, method.delivery_tag, generation, headers, props, body),
        )
        window.delivered(method.delivery_tag)
        self._inbox.append(delivery)  # handed over at the next flush
        self._ask_return()

    # -- publishing (thread) -----------------------------------------------------------------

    def _properties(self, message_id: str, headers: dict[str, Any], priority: int | None) -> Any:
        return pika.BasicProperties(
            message_id=message_id,
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
            headers=headers,
            priority=priority,
        )

    def _start_publish(self, op: _Op) -> None:
        """Send ``op``'s publish (mandatory, persistent); its confirm answers it."""
        publish = op.publish
        assert publish is not None
        if publish.prepare is not None:
            publish.prepare()
        ch = self._publisher
        if ch is None:
            raise pika.exceptions.AMQPConnectionError("not connected")
        ch.basic_publish(
            publish.exchange, publish.routing_key, publish.body, publish.properties, mandatory=True
        )
        self._confirms.sent(op, publish.properties.message_id, publish.routing_key)

    def _publish_wait(self, exchange: str, routing_key: str, body: bytes, props: Any) -> bool:
        """(thread) Publish and wait for the confirm here: whether it was routed."""
        op = _Op(
            None,
            None,
            time.monotonic() + OP_TIMEOUT,
            False,
            _Publish(exchange, routing_key, body, props),
        )
        self._start_publish(op)
        conn = self._conn
        assert conn is not None
        while not op.finished:
            if time.monotonic() > op.deadline:
                raise StorageUnavailableError("rabbitmq did not confirm a publish in time")
            conn.process_data_events(time_limit=0.5)
        if op.error is not None:
            raise op.error
        return bool(op.result)

    def _priority(self, spec: QueueSpec, data: Any) -> int | None:
        if not spec.max_priority or not spec.priority_field or not isinstance(data, dict):
            return None
        value = data.get(spec.priority_field)
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return max(0, min(value, spec.max_priority))

    # -- the broker interface ----------------------------------------------------------------

    async def declare(self, spec: QueueSpec, *, consume: bool = True) -> None:
        self._specs[spec.name] = spec
        if consume:
            self._consumed.add(spec.name)
        else:
            self._consumed.discard(spec.name)

        def run() -> None:
            self._declare_sync(spec)
            if consume:
                self._consume_sync(spec)
            else:
                self._stop_consuming_sync(spec.name)

        await self._call(run)

    def queue_names(self) -> list[str]:
        return list(self._specs)

    def topics(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for spec in self._specs.values():
            if spec.topic is not None:
                out.setdefault(spec.topic, []).append(spec.name)
        return out

    def _spec(self, queue: str) -> QueueSpec:
        spec = self._specs.get(queue)
        if spec is None:
            raise QueueNotFoundError(f"Queue '{queue}' not found")
        return spec

    async def enqueue(self, queue: str, message: Message) -> None:
        spec = self._spec(queue)
        names = names_of(spec)
        headers = {**message.target(), "x-attempt": 0}
        if message.group is not None:
            headers["x-group"] = message.group
        props = self._properties(message.id, headers, self._priority(spec, message.data))
        publish = _Publish(names.exchange, names.queue, orjson.dumps(message.data), props)
        if await self._call(None, publish=publish):
            return
        await self._call(lambda: self._declare_sync(spec))  # deleted behind our back: again
        if not await self._call(None, publish=publish):
            raise StorageUnavailableError(f"rabbitmq could not route to {names.queue}")

    async def publish(self, topic: str, message: Message) -> int:
        exchange = f"iii.{topic}.exchange"
        headers = {
            k: v
            for k, v in (("traceparent", message.traceparent), ("baggage", message.baggage))
            if v is not None
        }
        props = self._properties(message.id, {**headers, "x-attempt": 0}, None)

        def prepare() -> None:
            ch = self._admin
            assert ch is not None
            if exchange not in self._declared_exchanges:
                ch.exchange_declare(exchange, exchange_type="fanout", durable=True)
                self._declared_exchanges.add(exchange)

        publish = _Publish(exchange, "", orjson.dumps(message.data), props, prepare)
        return -1 if await self._call(None, publish=publish) else 0

    async def ack(self, delivery: Delivery) -> None:
        """Not waited for: the thread acks with the next hand-over (``_send_acks``), within
        ``ACK_DELAY`` (see ``courier``)."""
        token: _Token = delivery.token
        self._ack_box.append(token)
        if len(self._ack_box) >= token.urgent or not self._courier_timed:
            self._kick()

    async def fail(self, delivery: Delivery, error: str) -> None:
        token: _Token = delivery.token
        spec = self._specs.get(delivery.queue)
        if spec is None:
            return
        names = names_of(spec)
        attempts = delivery.attempt
        headers = {**token.headers, "x-attempt": attempts}
        if attempts >= spec.settings.max_attempts:
            headers.update({"x-error": error, "x-failed-at": int(time.time() * 1000)})
            target = names.dlq
            delay = None
        else:
            delay = retry_delay_ms(spec.settings.backoff_ms, attempts)
            target = names.retry(delay)
        props = pika.BasicProperties(
            message_id=token.properties.message_id,
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
            headers=headers,
        )

        def prepare() -> None:
            self._settle_channel(token)
            if delay is not None and delay not in self._retry_delays.get(spec.name, set()):
                self._declare_retry(names, delay)
                self._retry_delays.setdefault(spec.name, set()).add(delay)

        if delay is None:
            log.warning(
                "job dead-lettered", queue=delivery.queue, message_id=delivery.id, error=error
            )
        try:
            routed = await self._call(
                None, replay=False, publish=_Publish("", target, token.body, props, prepare)
            )
        except _Stale:
            log.debug("delivery from a previous connection; the broker redelivers it")
            return
        if not routed:
            raise StorageUnavailableError(f"rabbitmq could not route to {target}")
        await self.ack(delivery)  # only once the retry or DLQ copy is confirmed

    def _settle_channel(self, token: _Token) -> Channel:
        if token.generation != self._generation or not token.channel.is_open:
            raise _Stale()
        return token.channel

    # -- the DLQ (``storage.queue_rabbitmq_dlq``, in the thread on a channel of its own) -----

    def _scan(
        self, spec: QueueSpec, pick: Callable[[Any], bool] | None, action: ScanAction
    ) -> tuple[list[Seen], int]:
        conn = self._conn
        assert conn is not None
        names = names_of(spec)
        return scan_dlq(
            conn.channel(),
            names.dlq,
            pick,
            action,
            main_queue=names.queue,
            publish_wait=lambda key, body, props: self._publish_wait("", key, body, props),
        )

    async def _scan_call(
        self, queue: str, pick: Callable[[Any], bool] | None, action: ScanAction
    ) -> tuple[list[Seen], int]:
        spec = self._specs.get(queue)
        if spec is None:
            return [], 0
        result: tuple[list[Seen], int] = await self._call(
            lambda: self._scan(spec, pick, action), replay=False
        )
        return result

    async def dead_messages(self, queue: str, offset: int, limit: int) -> list[DeadMessage]:
        seen, _ = await self._scan_call(queue, None, "list")
        out = [dead_message(props, body) for _method, props, body in reversed(seen)]
        return out[offset : offset + limit]

    async def redrive(self, queue: str, message_id: str | None = None) -> int:
        pick = pick_all if message_id is None else first_with_id(message_id)
        _, moved = await self._scan_call(queue, pick, "redrive")
        return moved

    async def discard(self, queue: str, message_id: str) -> int:
        _, moved = await self._scan_call(queue, first_with_id(message_id), "discard")
        return moved

    async def counts(self, queue: str) -> QueueCounts:
        spec = self._specs.get(queue)
        if spec is None:
            return QueueCounts(0, 0, 0, 0)
        names = names_of(spec)

        def run() -> QueueCounts:
            ch = self._admin
            assert ch is not None
            waiting = ch.queue_declare(names.queue, passive=True).method.message_count
            delayed = sum(
                ch.queue_declare(names.retry(d), passive=True).method.message_count
                for d in self._retry_delays.get(spec.name, ())
            )
            dead = ch.queue_declare(names.dlq, passive=True).method.message_count
            return QueueCounts(waiting, 0, delayed, dead)

        result: QueueCounts = await self._call(run)
        return result


def _noop() -> None:
    return None


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    params = pika.URLParameters(url)
    return f"amqp://{params.host}:{params.port}{params.virtual_host if params.virtual_host != '/' else ''}"


@asynccontextmanager
async def open_rabbitmq_broker(
    url: str,
    *,
    queue_type: Literal["classic", "quorum"] = "classic",
    prefetch_count: int = 10,
    heartbeat: int = 30,
    connect_timeout: float = 15.0,
) -> AsyncIterator[RabbitBroker]:
    """Connect (the first connection must succeed within ``connect_timeout``), run, close."""
    broker = RabbitBroker(
        url,
        trio.lowlevel.current_trio_token(),
        queue_type=queue_type,
        prefetch_count=prefetch_count,
        heartbeat=heartbeat,
    )
    broker.start()
    try:
        settled = await trio.to_thread.run_sync(broker.settled.wait, connect_timeout)
        if broker.fatal is not None:
            raise broker.fatal
        if not settled:
            raise StorageUnavailableError(f"cannot connect to rabbitmq at {_safe_url(url)}")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.courier)
            try:
                yield broker
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await broker.aclose()
