"""The stream WebSocket server (WORKERS.md §6.3): clients join and leave subscriptions on
``ws://<host>:<port>/`` and get a ``sync`` frame, then every matching change frame.

Each connection has a bounded send buffer (``send_buffer`` frames). Delivery never waits for a
client: a frame that does not fit drops that connection — it gets a Close with
:data:`CLOSE_SLOW_CONSUMER` once its pending write completes, or is cut after
:data:`DROP_GRACE` seconds if it does not read at all — and every other client keeps receiving.

Frames of a subscription that is still fetching its ``sync`` are held and sent right after it,
so a client never sees a change before the snapshot it applies to (a change that happened
during the fetch may then arrive twice; frames carry whole values, so applying one twice is
harmless).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import attrs
import orjson
import structlog
import trio

from actors.runtime.fanout import run_handler
from actors.stream.events import (
    SYNC,
    UNAUTHORIZED,
    ClientMessageError,
    Join,
    Leave,
    Subscription,
    auth_payload,
    change_frame,
    item_frame,
    parse_client_message,
    reaches,
)
from transport.carrier import CarrierClosed
from transport.client import BusClient, FunctionError, TriggerBinding
from transport.oversize import Oversized
from transport.wsframes import encode_close
from transport.wsserver import HandshakeFailed, WebSocketServerConnection

__all__ = ["CLOSE_SLOW_CONSUMER", "DROP_GRACE", "StreamConnection", "StreamServer"]

log = structlog.get_logger("iii-stream.ws")

CLOSE_SLOW_CONSUMER: Final = 1008  # policy violation: the client did not keep up
CLOSE_GOING_AWAY: Final = 1001
DROP_GRACE: Final = 1.0  # a dropped client whose pending write does not finish is cut after this
HANDSHAKE_TIMEOUT: Final = 10.0
AUTH_TIMEOUT: Final = 10.0
JOIN_TIMEOUT: Final = 30.0
SYNC_TIMEOUT: Final = 30.0
BATCH: Final = 64


class Hooks(Protocol):
    """What the server needs from the service: reading items and groups for ``sync``, the
    join/leave bindings, and the clock (epoch milliseconds)."""

    join_bindings: dict[str, TriggerBinding]
    leave_bindings: dict[str, TriggerBinding]
    clock: Callable[[], int]

    async def read_item(self, stream: str, group: str, item: str) -> Any: ...

    async def read_group(self, stream: str, group: str) -> Any: ...


@attrs.define(eq=False)
class StreamConnection:
    """One client: its subscriptions and its bounded outgoing queue (sans I/O)."""

    peer: str
    send_buffer: int
    context: Any = None
    subs: dict[str, Subscription] = attrs.Factory(dict)
    pending: dict[str, list[bytes]] = attrs.Factory(dict)  # held until the sub's sync is sent
    dropped: bool = False
    outgoing: trio.MemorySendChannel[bytes] = attrs.field(init=False)
    incoming: trio.MemoryReceiveChannel[bytes] = attrs.field(init=False)
    on_drop: Callable[[], None] = lambda: None

    def __attrs_post_init__(self) -> None:
        self.outgoing, self.incoming = trio.open_memory_channel[bytes](self.send_buffer)

    def offer(self, payload: bytes) -> None:
        """Queue a frame; one that does not fit drops the connection."""
        if self.dropped:
            return
        try:
            self.outgoing.send_nowait(payload)
        except trio.WouldBlock:
            self.dropped = True
            self.on_drop()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def deliver(self, frame: dict[str, Any], payload: bytes) -> None:
        """A change frame to every matching subscription (once per match, §6.3 [quirk])."""
        for sub in self.subs.values():
            if reaches(sub, frame):
                held = self.pending.get(sub.id)
                if held is not None:
                    held.append(payload)
                else:
                    self.offer(payload)


class StreamServer:
    def __init__(
        self,
        client: BusClient,
        hooks: Hooks,
        *,
        auth_function: str | None,
        send_buffer: int,
    ) -> None:
        self.client = client
        self.hooks = hooks
        self.auth_function = auth_function
        self.send_buffer = send_buffer
        self.connections: dict[StreamConnection, WebSocketServerConnection] = {}
        # (stream, group) → the connections with a subscription there, and how many each has
        self._by_group: dict[tuple[str, str], dict[StreamConnection, int]] = {}
        self._nursery: trio.Nursery | None = None

    # -- events from the pub/sub ---------------------------------------------------------

    def dispatch(self, frame: Any) -> None:
        if not isinstance(frame, dict):
            return
        stream, group = frame.get("streamName"), frame.get("groupId")
        if not isinstance(stream, str) or not isinstance(group, str):
            return
        conns = self._by_group.get((stream, group))
        if not conns:
            return
        payload = orjson.dumps(frame)
        for conn in list(conns):
            conn.deliver(frame, payload)

    def _subscribe(self, conn: StreamConnection, sub: Subscription) -> None:
        """Record ``sub`` (replacing one with the same id)."""
        self._unsubscribe(conn, sub.id)
        conn.subs[sub.id] = sub
        counts = self._by_group.setdefault((sub.stream_name, sub.group_id), {})
        counts[conn] = counts.get(conn, 0) + 1

    def _unsubscribe(self, conn: StreamConnection, sub_id: str) -> Subscription | None:
        sub = conn.subs.pop(sub_id, None)
        conn.pending.pop(sub_id, None)
        if sub is None:
            return None
        key = (sub.stream_name, sub.group_id)
        counts = self._by_group.get(key, {})
        left = counts.get(conn, 1) - 1
        if left > 0:
            counts[conn] = left
        else:
            counts.pop(conn, None)
            if not counts:
                self._by_group.pop(key, None)
        return sub

    async def shutdown(self, timeout: float = DROP_GRACE) -> None:
        """Tell every client the server is going away (close 1001), bounded by ``timeout``."""
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for ws in list(self.connections.values()):
                    nursery.start_soon(_say_going_away, ws)

    # -- listening -----------------------------------------------------------------------

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        binds = [_shown(listener) for listener in listeners]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for listener in listeners:
                nursery.start_soon(self._accept, listener, nursery)
            task_status.started(binds)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    log.warning("cannot accept a stream connection", error=str(exc))
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._guarded, stream)

    async def _guarded(self, stream: trio.SocketStream) -> None:
        """One connection; a failure in it is logged and ends only that connection."""
        try:
            await self._connection(stream)
        except Exception:
            log.exception("stream connection failed", peer=_peer(stream))

    async def _connection(self, stream: trio.SocketStream) -> None:
        ws = WebSocketServerConnection(stream)
        peer = _peer(stream)
        with trio.move_on_after(HANDSHAKE_TIMEOUT) as handshake:
            try:
                request = await ws.handshake()
            except (HandshakeFailed, CarrierClosed):
                return
        if handshake.cancelled_caught:
            await ws.reject(408, b"handshake timed out")
            return
        if urlsplit(request.target).path != "/":
            await ws.reject(404, b"Not Found")
            return
        # Every header the client sent (wsproto's request leaves out host and the
        # sec-websocket-* ones it consumed): the auth function sees them all (§6.3).
        context = await self._authenticate(request.target, ws.request_headers(), peer)
        try:
            await ws.accept()
        except CarrierClosed:
            return
        conn = StreamConnection(peer=peer, send_buffer=self.send_buffer, context=context)
        self.connections[conn] = ws
        log.debug("stream client connected", peer=peer)
        try:
            async with trio.open_nursery() as nursery:

                def drop() -> None:
                    log.warning(
                        "stream client too slow; dropped",
                        peer=peer,
                        send_buffer=self.send_buffer,
                        close_code=CLOSE_SLOW_CONSUMER,
                    )
                    self.connections.pop(conn, None)
                    conn.outgoing.close()
                    # Cut it if its pending write does not finish in time (it never reads).
                    scope = nursery.cancel_scope
                    scope.deadline = min(scope.deadline, trio.current_time() + DROP_GRACE)

                conn.on_drop = drop
                nursery.start_soon(self._sender, conn, ws, nursery.cancel_scope)
                await self._reader(conn, ws)
                nursery.cancel_scope.cancel()
        finally:
            self.connections.pop(conn, None)
            held = [sub for sid in list(conn.subs) if (sub := self._unsubscribe(conn, sid))]
            await _hard_close(ws)
            if held and self._nursery is not None:
                self._nursery.start_soon(self._leave_all, conn, held)
            log.debug("stream client gone", peer=peer, dropped=conn.dropped)

    async def _sender(
        self, conn: StreamConnection, ws: WebSocketServerConnection, scope: trio.CancelScope
    ) -> None:
        try:
            async for first in conn.incoming:
                batch = [first]
                while len(batch) < BATCH:
                    try:
                        batch.append(conn.incoming.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await ws.send_many(batch)
            if conn.dropped:  # the last write got through: say why before closing
                await ws.write_raw(encode_close(CLOSE_SLOW_CONSUMER, "send buffer full"))
        except CarrierClosed:
            pass
        scope.cancel()

    async def _reader(self, conn: StreamConnection, ws: WebSocketServerConnection) -> None:
        while True:
            try:
                raw = await ws.receive()
            except CarrierClosed:
                return
            if isinstance(raw, Oversized | bytearray):  # only after serve_protocol(), not here
                continue
            try:
                msg = parse_client_message(raw)
            except ClientMessageError as exc:
                log.warning("stream client frame ignored", peer=conn.peer, error=str(exc))
                continue
            if isinstance(msg, Join):
                await self._join(conn, msg.subscription)
            elif isinstance(msg, Leave):
                sub = conn.subs.get(msg.subscription_id)
                if sub is not None:
                    await self._fire(self.hooks.leave_bindings, sub, conn.context)
                    self._unsubscribe(conn, msg.subscription_id)

    # -- join / leave --------------------------------------------------------------------

    async def _join(self, conn: StreamConnection, sub: Subscription) -> None:
        refused = await self._fire(self.hooks.join_bindings, sub, conn.context)
        now = self.hooks.clock
        if refused:
            frame = item_frame(
                now(), sub.stream_name, sub.group_id, sub.item_id, {"type": UNAUTHORIZED}
            )
            conn.offer(orjson.dumps(frame))
            return
        self._subscribe(conn, sub)  # replaces a subscription with the same id
        held: list[bytes] = []
        conn.pending[sub.id] = held
        data: Any = None
        with trio.move_on_after(SYNC_TIMEOUT):
            try:
                if sub.item_id is not None:
                    data = await self.hooks.read_item(sub.stream_name, sub.group_id, sub.item_id)
                else:
                    data = await self.hooks.read_group(sub.stream_name, sub.group_id)
            except FunctionError as exc:
                log.warning("stream sync read failed", code=exc.code, error=exc.message)
        if sub.item_id is None and data is None:
            data = []
        if conn.pending.get(sub.id) is held:
            del conn.pending[sub.id]
        frame = change_frame(now(), sub.stream_name, sub.group_id, sub.item_id, SYNC, data)
        conn.offer(orjson.dumps(frame))
        for payload in held:
            conn.offer(payload)

    async def _fire(
        self, bindings: dict[str, TriggerBinding], sub: Subscription, context: Any
    ) -> bool:
        """Invoke each join/leave binding in turn; true if one refused (``unauthorized``)."""
        payload = {
            "subscription_id": sub.id,
            "stream_name": sub.stream_name,
            "group_id": sub.group_id,
            "id": sub.item_id,
            "context": context,
        }
        for binding in list(bindings.values()):
            ok, result = await run_handler(
                self.client, binding, payload, timeout=JOIN_TIMEOUT, trigger_id=binding.id
            )
            if not ok:
                continue
            if isinstance(result, dict) and result.get("unauthorized") is True:
                return True
        return False

    async def _leave_all(self, conn: StreamConnection, subs: list[Subscription]) -> None:
        for sub in subs:
            await self._fire(self.hooks.leave_bindings, sub, conn.context)

    async def _authenticate(self, target: str, headers: Any, peer: str) -> Any:
        """The auth function's ``context`` (None when unset, failed or malformed: the upgrade
        is never refused by it, §6.3)."""
        if not self.auth_function:
            return None
        payload = auth_payload(target, headers, peer)
        try:
            result = await self.client.invoke(self.auth_function, payload, timeout=AUTH_TIMEOUT)
        except FunctionError as exc:
            log.warning("stream auth function failed", code=exc.code, error=exc.message)
            return None
        return result.get("context") if isinstance(result, dict) else None


async def _say_going_away(ws: WebSocketServerConnection) -> None:
    try:
        await ws.write_raw(encode_close(CLOSE_GOING_AWAY, "server stopping"))
    except CarrierClosed:
        pass


async def _hard_close(ws: WebSocketServerConnection) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            await ws.stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"


def _shown(listener: trio.SocketListener) -> str:
    addr = listener.socket.getsockname()
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"ws://{host}:{addr[1]}"
