"""One ``iii-worker-manager`` listener: a WebSocket server in front of the shared bus.

Routes (PROTOCOL.md §3.2): ``/`` is a worker connection, ``/otel`` a telemetry socket (no
worker; its binary frames go to the observability actor, §15), ``/ws/channels/{id}?key=&dir=`` a data channel side; anything else is
HTTP 404. trio's ``SocketStream`` turns TCP_NODELAY on for every accepted socket, so small
protocol frames are never held back by Nagle's algorithm.
"""

from __future__ import annotations

import errno
import socket
from urllib.parse import parse_qs, urlsplit

import structlog
import trio

from supervisor.config.model import ListenerConfig
from supervisor.engine.channels import WRITER_CLOSE_GRACE, Channel
from supervisor.engine.edge import BusEdge
from supervisor.engine.errors import error
from supervisor.engine.rbac import ListenerPolicy, RbacSession
from supervisor.engine.rbac_guard import AuthRefused, RbacGuard
from supervisor.engine.telemetry import TelemetryForwarder
from transport import codec
from transport import messages as m
from transport.carrier import TELEMETRY_PREFIXES, CarrierClosed
from transport.oversize import Oversized
from transport.wsserver import MAX_FRAME, HandshakeFailed, WebSocketServerConnection

log = structlog.get_logger(__name__)


class BindError(OSError):
    """The listener could not bind its address; ``str()`` is the sentence for the operator."""

    def __str__(self) -> str:
        return str(self.strerror)


class Listener:
    def __init__(self, bus: BusEdge, config: ListenerConfig) -> None:
        self.bus = bus
        self.config = config
        self.port: int | None = None
        policy = ListenerPolicy.from_config(config)
        self.guard = RbacGuard(bus, policy) if policy is not None else None

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        try:
            listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host or None)
        except OSError as exc:
            where = f"{cfg.host or '0.0.0.0'}:{cfg.port}"
            if exc.errno == errno.EADDRINUSE:
                text = f"{where} is already in use: another process listens on it"
            else:
                text = f"cannot listen for workers on {where}: {exc.strerror}"
            raise BindError(exc.errno, text) from exc
        for lst in listeners:
            lst.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("listening for workers", host=cfg.host, port=self.port)
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        # One connection's failure must never take the listener (and everyone else) down.
        ws = WebSocketServerConnection(
            stream,
            max_message=self.config.max_message_bytes,
            max_frame=min(MAX_FRAME, self.config.max_message_bytes),
        )
        try:
            with trio.move_on_after(self.config.handshake_timeout_ms / 1000) as scope:
                request = await ws.handshake()
            if scope.cancelled_caught:
                log.info("handshake timed out", peer=ws.peer)
                await ws.aclose()
                return
            await self._route(ws, request.target)
        except (HandshakeFailed, CarrierClosed):
            await ws.aclose()
        except Exception:
            log.exception("connection handler failed", peer=ws.peer)
            await ws.aclose(1011)

    async def _route(self, ws: WebSocketServerConnection, target: str) -> None:
        parts = urlsplit(target)
        path = parts.path or "/"
        if path == "/":
            await ws.accept(keep_head=self.guard is not None)  # for the auth function
            ws.serve_protocol()  # oversized messages are answered, not fatal
            if self.guard is None:
                await self.bus.serve(ws)
                return
            session = await self._authenticate(ws, parts.query)
            if session is not None:
                await self.bus.serve(ws, session=session, guard=self.guard)
        elif path == "/otel":
            await self._telemetry(ws, parts.query)
        elif path.startswith("/ws/channels/"):
            await self._channel(ws, path.removeprefix("/ws/channels/"), parts.query)
        else:
            await ws.reject(404, b"Not Found")

    async def _telemetry(self, ws: WebSocketServerConnection, query: str) -> None:
        """A ``/otel`` socket: no worker is created. RBAC listeners authenticate it after
        ``accept``, with the same refusal as ``/`` (PROTOCOL.md §15)."""
        await ws.accept(keep_head=self.guard is not None)
        if self.guard is not None and await self._authenticate(ws, query) is None:
            return
        await _forward_telemetry(ws, self.bus.telemetry)

    async def _authenticate(self, ws: WebSocketServerConnection, query: str) -> RbacSession | None:
        """The session for an accepted socket, or None after refusing it (§4.1 step 4):
        one AUTH_ERROR frame, then a Close without a status code. Frames the client sends
        meanwhile wait unread in the socket, so none is lost. The auth function sees every
        header of the upgrade request (§13.3), also those wsproto consumes."""
        assert self.guard is not None
        try:
            return await self.guard.authenticate(ws.request_headers(), query, ws.peer)
        except AuthRefused as exc:
            log.info("connection refused by the auth function", peer=ws.peer, reason=exc.message)
            frame = m.ErrorFrame(error=error("AUTH_ERROR", exc.message))
            try:
                await ws.send_message(codec.encode_str(frame))
            except CarrierClosed:
                pass
            await ws.aclose(None)
            return None

    async def _channel(self, ws: WebSocketServerConnection, channel_id: str, query: str) -> None:
        params = parse_qs(query)
        direction = next(iter(params.get("dir") or ()), None)
        key = next(iter(params.get("key") or ()), None)
        if direction not in ("read", "write"):
            await ws.reject(400, b"Invalid query: dir must be read or write")
            return
        channel = self.bus.bus.channels.lookup(channel_id, key)
        if channel is None:
            await ws.reject(404, b"Channel not found")
            return
        await ws.accept()
        taken = channel.writer_taken if direction == "write" else channel.reader_taken
        if taken:
            await ws.aclose(1008, "channel side already taken")
            return
        if direction == "write":
            channel.writer_taken = True
            await _pump_writer(ws, channel)
            channel.writer_done = True
        else:
            channel.reader_taken = True
            await _pump_reader(ws, channel)
            channel.reader_done = True
        self.bus.bus.channels.finish(channel)


async def _forward_telemetry(ws: WebSocketServerConnection, forwarder: TelemetryForwarder) -> None:
    """Hand every prefixed binary frame to the forwarder until the peer leaves; text frames
    and other binary frames are ignored (PROTOCOL.md §15). Pings are answered by ``receive``."""
    offer = forwarder.offer
    count = 0
    try:
        while True:
            raw = await ws.receive()
            if isinstance(raw, bytes) and raw[:4] in TELEMETRY_PREFIXES:
                offer(raw, None)
            count += 1
            if count % 64 == 0:
                await trio.lowlevel.checkpoint()  # a flood on one socket cannot starve others
    except CarrierClosed:
        await ws.aclose(1000)


async def _pump_writer(ws: WebSocketServerConnection, channel: Channel) -> None:
    """Writer socket → FIFO. A full FIFO stops us reading: TCP back-pressure on the writer."""
    try:
        while True:
            try:
                item = await ws.receive()
            except CarrierClosed:
                break
            if isinstance(item, Oversized | bytearray):  # only after serve_protocol()
                continue
            try:
                await channel.send.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await ws.aclose(1011, "reader gone")  # the reader left: end the writer
                return
        # Frames that overtook the writer's Close were read above (they precede it on the
        # wire); upstream's extra 10 ms covers racing writers we cannot see from here.
        await trio.sleep(WRITER_CLOSE_GRACE)
        await ws.aclose(1000)
    finally:
        channel.send.close()


async def _pump_reader(ws: WebSocketServerConnection, channel: Channel) -> None:
    """FIFO → reader socket; closing the socket is the reader's end-of-stream."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_reader_close, ws, nursery.cancel_scope)
            async for item in channel.recv:
                await ws.send_message(item)
            nursery.cancel_scope.cancel()
        await ws.aclose(1000)
    except CarrierClosed:
        await ws.aclose(1000)
    finally:
        channel.recv.close()


async def _watch_reader_close(ws: WebSocketServerConnection, scope: trio.CancelScope) -> None:
    try:
        while True:
            await ws.receive()  # readers send nothing meaningful; notice them leaving
    except CarrierClosed:
        scope.cancel()
