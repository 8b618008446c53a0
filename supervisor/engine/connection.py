"""One worker link as the bus sees it: identity, namespace state, leases, outbound queue.

A connection never blocks the bus. ``send`` writes straight to the socket when nothing is
queued or being written and the kernel takes the whole frame (no task switch: the hot path);
otherwise it enqueues, and a writer task per connection drains the queue onto its carrier in
order, batching what has piled up. Either way messages leave in the order they were sent.
A message over ``LARGE`` bytes always goes through the writer, which hands it to the carrier
whole (fragmented there, written from views: no copies); one over the connection's limit is
not sent but handed to ``on_oversized`` (the bus answers ``payload_too_large``).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import structlog
import trio

from transport import codec
from transport.carrier import CarrierClosed
from transport.oversize import MAX_MESSAGE

log = structlog.get_logger(__name__)

OUTBOX_LIMIT = 100_000  # messages queued for one slow worker before it is cut off
LARGE = 1024 * 1024  # encoded messages longer than this skip the direct write


@attrs.frozen
class _Large:
    """An encoded message too long for the direct write, queued for the writer."""

    payload: bytes


@attrs.define(eq=False)
class Session:
    """Per-connection authorization (RBAC arrives with a later milestone: permissive today)."""

    allow_function_registration: bool = True
    allow_trigger_type_registration: bool = True
    context: Any = attrs.field(factory=dict)

    def local_dispatch_allowed(self, namespace: str, function_id: str) -> bool:
        """May this connection run ``function_id`` in-process (OBSERVE.md §4.2 rules 3, 4)?

        False where a routed call would be diverted or refused: the listener has a
        ``middleware_function_id``, or the session fails the allow check for the function.
        Permissive here; RBAC sessions (``supervisor.engine.rbac.RbacSession``) answer it.
        """
        return True

    def sent_id(self, stored_id: str) -> str:
        """The id the worker sent for a function stored as ``stored_id`` (an RBAC prefix or
        hook may have changed it, PROTOCOL.md §13.6, §13.8)."""
        return stored_id


@attrs.define(eq=False)
class Connection:
    kind: str  # "websocket" | "local"
    label: str | None = None
    peer: str | None = None
    worker_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    reattach_token: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    session: Session = attrs.field(factory=Session)
    connected_at: float = attrs.field(factory=time.time)
    namespace: str | None = None  # pinned namespace; None while pending (§4.4)
    buffered: list[Any] | None = attrs.field(factory=list)  # registrations held while pending
    registered: bool = False
    name: str | None = None
    pid: int | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    # Capability flags declared in the first engine::workers::register (features.py);
    # fixed for the life of the connection (OBSERVE.md §2.1).
    features: frozenset[str] = frozenset()
    # The last worker resource sample from its MTRC frames (workermetrics.py).
    latest_metrics: dict[str, Any] | None = None
    closing: bool = False
    draining: bool = False  # being stopped by the supervisor: no new calls
    revision: int = 0  # bumped whenever this connection's registrations change
    grace_until: float | None = None  # bus clock: pinned to default after this (§4.4)
    functions: set[tuple[str, str]] = attrs.field(factory=set)
    trigger_types: set[tuple[str, str]] = attrs.field(factory=set)
    triggers: set[str] = attrs.field(factory=set)
    calls_in: set[str] = attrs.field(factory=set)
    calls_out: set[str] = attrs.field(factory=set)
    cancel_scope: trio.CancelScope | None = None
    pinger: Callable[[float], Awaitable[bool]] | None = None
    max_message: int = MAX_MESSAGE  # the longest encoded message this peer is sent
    on_oversized: Callable[[Connection, Any, int], None] | None = None
    cleaned: trio.Event = attrs.field(factory=trio.Event)
    _send: trio.MemorySendChannel[Any] | None = None
    _recv: trio.MemoryReceiveChannel[Any] | None = None
    _queued: int = 0
    _writing: bool = False  # the writer holds frames it has not finished writing
    _frame: Callable[[bytes], bytes] | None = None
    _try_write: Callable[[bytes], bytes | None] | None = None
    _write_raw: Callable[[bytes], Awaitable[None]] | None = None
    _write_large: Callable[[bytes], Awaitable[None]] | None = None

    def __attrs_post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel(math.inf)

    @property
    def ns(self) -> str:
        return self.namespace or "default"

    def use_carrier(self, carrier: Any) -> None:
        """Write frames ourselves (and directly when possible) if the carrier allows it."""
        frame = getattr(carrier, "frame", None)
        try_write = getattr(carrier, "try_write", None)
        write_raw = getattr(carrier, "write_raw", None)
        if frame is not None and try_write is not None and write_raw is not None:
            self._frame, self._try_write, self._write_raw = frame, try_write, write_raw
        self._write_large = getattr(carrier, "write_large", None)

    def send(self, msg: Any, *, batch: bool = False) -> bool:
        """Send or queue a message; False if the connection is closing or hopelessly behind.

        ``batch``: the peer is busy anyway, so queue the message for the writer, which writes
        everything queued in this scheduler pass at once (one syscall for a burst of calls).
        """
        if self.closing or self._send is None:
            return False
        if not batch and self._try_write is not None and not self._queued and not self._writing:
            assert self._frame is not None
            try:
                payload = codec.encode(msg)
            except TypeError as exc:
                log.error("unencodable message dropped", tag=msg.TAG, error=str(exc))
                return False
            if len(payload) > LARGE:
                if len(payload) > self.max_message:
                    self._oversized(msg, len(payload))
                    return False
                return self._enqueue(_Large(payload))
            data = self._frame(payload)
            try:
                rest = self._try_write(data)
            except CarrierClosed:
                self.closing = True
                if self.cancel_scope is not None:
                    self.cancel_scope.cancel()
                return False
            if rest is None:
                rest = data  # another writer holds the socket: queue the frame
            elif not rest:
                return True
            msg = bytes(rest)  # the unsent tail goes first, before anything queued later
        return self._enqueue(msg)

    def _enqueue(self, msg: Any) -> bool:
        assert self._send is not None
        if self._queued >= OUTBOX_LIMIT:
            log.warning("outbox full, cutting off slow worker", worker_id=self.worker_id)
            self.closing = True
            if self.cancel_scope is not None:
                self.cancel_scope.cancel()
            return False
        try:
            self._send.send_nowait(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self._queued += 1
        return True

    def _oversized(self, msg: Any, size: int) -> None:
        if self.on_oversized is not None:
            self.on_oversized(self, msg, size)
        else:
            log.warning(
                "oversized message dropped", tag=msg.TAG, size=size, worker_id=self.worker_id
            )

    async def write_loop(self, carrier: Any) -> None:
        """Drain the outbox onto the carrier, batching whatever is already queued."""
        assert self._recv is not None
        recv = self._recv
        async for first in recv:
            self._writing = True
            msgs = [first]
            del first  # nothing here may keep a written message alive (64 MiB ones too)
            while len(msgs) < 256:
                try:
                    msgs.append(recv.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            self._queued -= len(msgs)
            try:
                await self._write_batch(carrier, msgs)
            finally:
                self._writing = False
            del msgs

    async def _write_batch(self, carrier: Any, msgs: list[Any]) -> None:
        frame = self._frame
        batch: list[bytes] = []
        msgs.reverse()
        while msgs:
            msg = msgs.pop()
            if type(msg) is bytes:  # already framed (the tail of a direct write)
                batch.append(msg)
                continue
            if type(msg) is _Large:
                payload = msg.payload
            else:
                try:
                    payload = codec.encode(msg)
                except TypeError as exc:
                    log.error("unencodable message dropped", tag=msg.TAG, error=str(exc))
                    continue
                if len(payload) > LARGE and len(payload) > self.max_message:
                    self._oversized(msg, len(payload))
                    continue
            if len(payload) > LARGE and self._write_large is not None:
                await self._flush(carrier, batch)
                batch = []
                del msg
                await self._write_large(payload)
                del payload
                continue
            batch.append(frame(payload) if frame is not None else payload)
        await self._flush(carrier, batch)

    async def _flush(self, carrier: Any, batch: list[bytes]) -> None:
        if not batch:
            return
        if self._write_raw is not None:
            await self._write_raw(b"".join(batch))
        else:
            await carrier.send_many(batch)

    def close_outbox(self) -> None:
        if self._send is not None:
            self._send.close()

    def describe(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "name": self.name, "kind": self.kind}
