"""The connection thread under the RabbitMQ queue adapter (``storage.queue_rabbitmq``) and how
trio and it hand work to each other: the part that knows AMQP connections, not queues.

pika's ``BlockingConnection`` lives in one thread owned by the adapter. The thread runs
``process_data_events`` (which also keeps heartbeats), executes the operations trio hands it,
and hands trio what arrived (deliveries, finished operations) in one
``TrioToken.run_sync_soon`` per turn of its loop.

* trio → thread: trio's tasks queue operations and acks; one courier task hands them over
  once per trio batch and wakes the thread (``add_callback_threadsafe``) only while it waits
  in ``process_data_events``, once per wait. Acks alone wait up to ``ACK_DELAY`` to ride with
  the next operation.
* thread → trio: deliveries are taken in the consuming channel's callback and confirms in the
  publishing channel's; both ask ``process_data_events`` to return, and what the turn brought
  goes to trio at once.
* Declarations and counts go on a blocking channel; every publish goes on a second channel in
  confirm mode whose confirms are pipelined: publishes are sent without waiting for the one
  before, ``storage.queue_confirms`` matches each ``basic.ack``/``nack`` (and
  ``basic.return``) to its publish, and an operation is answered at its own confirm. Acks of
  deliveries are coalesced per channel (``storage.queue_rabbitmq_acks``) and not waited for
  (an ack has no reply). What a turn writes goes out as one buffer (``_Cork``).
* When the connection drops (the broker restarts), the thread reconnects with backoff and
  calls ``_on_connected`` (the adapter declares everything again and resumes consuming);
  operations wait for the connection (up to ``OP_TIMEOUT``) and publishes not yet confirmed
  are sent again first, so an acknowledged publish is never lost. Acks of deliveries from the
  old connection are dropped: the broker redelivers those messages (at-least-once).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import attrs
import pika
import pika.exceptions
import structlog
import trio

from storage.errors import StorageUnavailableError
from storage.queue_broker import Delivery, QueueNotFoundError
from storage.queue_confirms import ConfirmTracker
from storage.queue_rabbitmq_acks import AckWindow

__all__ = ["ACK_DELAY", "CONNECTION_ERRORS", "OP_TIMEOUT", "AmqpLink", "Publish", "Token"]

log = structlog.get_logger("storage.queue_rabbitmq")

OP_TIMEOUT: Final = 30.0  # how long an operation waits for a (re)connection
# How long a finished delivery's ack may wait in trio for a hand-over to ride with (an
# operation's, or that of half a prefetch window of acks) before it is handed over alone. An
# ack waiting holds its prefetch slot, so the wait is short and bounded by the window.
ACK_DELAY: Final = 0.002
RECONNECT_BACKOFF: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
_PRECONDITION_FAILED: Final = 406  # a declaration whose arguments differ from the queue's
_NOT_FOUND: Final = 404  # AMQP reply code of a channel closed for a missing queue or exchange
CONNECTION_ERRORS: Final = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.StreamLostError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ChannelClosed,
    OSError,
)

Channel = Any  # pika.adapters.blocking_connection.BlockingChannel (pika ships no types)


@attrs.frozen
class Publish:
    exchange: str
    routing_key: str
    body: bytes
    properties: Any
    prepare: Callable[[], None] | None = None  # run in the thread first (a declaration)


@attrs.define(eq=False)
class _Op:
    """Work for the connection thread. ``run`` is called there and answered at once; a
    ``publish`` is sent and answered (``result``: routed or not) at the broker's confirm.
    Trio learns of the answer by ``done`` (an awaiting task) or ``callback`` (called in trio
    with the finished op); neither is set for the thread's own waits."""

    run: Callable[[], Any] | None
    done: trio.Event | None
    deadline: float
    replay: bool  # sent again after a reconnect (publishes, declarations)
    publish: Publish | None = None
    result: Any = None
    error: BaseException | None = None
    finished: bool = False
    callback: Callable[[_Op], None] | None = None

    @property
    def awaited(self) -> bool:
        return self.done is not None or self.callback is not None


@attrs.define(eq=False)
class Token:
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


class AmqpLink:
    """One AMQP connection in a thread of its own, and the hand-overs between it and trio."""

    def __init__(
        self,
        url: str,
        trio_token: trio.lowlevel.TrioToken,
        *,
        heartbeat: int = 30,
    ) -> None:
        self.url = url
        self._params = pika.URLParameters(url)
        self._params.heartbeat = heartbeat
        self._params.blocked_connection_timeout = 30
        self._params.connection_attempts = 1
        self._token = trio_token
        self._send, self._recv = trio.open_memory_channel[Delivery](math.inf)
        # Handed from trio to the thread (deque appends and pops are atomic): operations, and
        # the deliveries to ack.
        self._ops: deque[_Op] = deque()
        self._acks: deque[Token] = deque()
        # (trio) What trio tasks queued since the courier last handed it over, and the courier
        # while it waits for more.
        self._outbox: list[_Op] = []
        self._ack_box: list[Token] = []
        self._courier: trio.lowlevel.Task | None = None
        self._courier_timed = False  # the courier waits ACK_DELAY for acks to ride along
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
        self._generation = 0
        self.connected = threading.Event()
        self.settled = threading.Event()  # connected once, or failed for good (``fatal``)
        self.fatal: StorageUnavailableError | None = None
        self._thread = threading.Thread(target=self._run, name="iii-queue-rabbitmq", daemon=True)

    @property
    def deliveries(self) -> trio.MemoryReceiveChannel[Delivery]:
        return self._recv

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
            except CONNECTION_ERRORS as exc:
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
        self._cork = _Cork(conn._impl)
        self._admin = conn.channel()
        self._publisher = self._open_publisher(conn)
        self._on_connected()
        self.connected.set()
        self.settled.set()

    def _on_connected(self) -> None:
        """(thread) The connection and its channels are open: declare, consume."""

    def _on_dropped(self) -> None:
        """(thread) The connection is gone, with every channel of it."""

    def _later(self, run: Callable[[], None]) -> None:
        """(thread, in an I/O loop callback, which must not wait for the broker) Run ``run``
        at the next turn of the thread's loop, where it may."""
        self._ops.append(_Op(run, None, math.inf, False))
        self._ask_return()

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
        except CONNECTION_ERRORS as exc:
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
        if op.awaited:
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
            if op.done is not None:
                op.done.set()
                continue
            assert op.callback is not None
            try:
                op.callback(op)
            except Exception:  # one caller's bug must not drop the other answers
                log.exception("rabbitmq operation callback failed")

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
        self._on_dropped()
        # Unconfirmed publishes go again (or fail, per ``_fail_expired``); a wait of the
        # thread's own (a DLQ scan) fails with its operation instead.
        unconfirmed = [op for op in self._confirms.drain() if op.awaited]
        self._confirms = ConfirmTracker()
        self._requeue_front(unconfirmed)
        if conn is not None:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:  # already broken: nothing more to do
                pass

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
        self, run: Callable[[], Any] | None, *, replay: bool = True, publish: Publish | None = None
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

    def _post_nowait(
        self,
        run: Callable[[], Any] | None,
        answer: Callable[[_Op], None],
        *,
        publish: Publish | None = None,
    ) -> None:
        """``_call`` for a caller without a task to wait in: ``answer`` gets the finished
        operation (``error`` or ``result``), in trio."""
        self._post(_Op(run, None, time.monotonic() + OP_TIMEOUT, True, publish, callback=answer))

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
            Publish(exchange, routing_key, body, props),
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

    async def ack(self, delivery: Delivery) -> None:
        """Not waited for: the thread acks with the next hand-over (``_send_acks``), within
        ``ACK_DELAY`` (see ``courier``)."""
        token: Token = delivery.token
        self._ack_box.append(token)
        if len(self._ack_box) >= token.urgent or not self._courier_timed:
            self._kick()


def _noop() -> None:
    return None
