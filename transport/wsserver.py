"""Server side of one WebSocket on a trio stream: the engine's hot path.

wsproto does the opening handshake (and rejections); after it, ``transport.wsframes``
parses and builds frames. Why not trio-websocket here (it is still our WebSocket client): it
writes every message with its own ``send_all`` and moves every inbound message through a
reader task and a memory channel. A worker connection of the bus sends bursts of small frames
(many callers, one callee), so this carrier encodes a whole batch into one write, reads in
place with no extra task, and enforces the message limit (64 MiB, SDK 0.25's). Frames may be
as long as a message: SDK 0.23 writes every message, however long, as one frame (upstream
stops at 16 MiB per frame; accepting more costs nothing, the parser streams big frames).
Messages over 16 MiB go out fragmented as SDK 0.25 sends them (``wsframes.message_frames``),
written from views of the encoded payload, without copying it.
"""

from __future__ import annotations

import itertools
from collections import deque

import h11
import structlog
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from transport.carrier import CLOSE_RECONNECT, CarrierClosed, read_fd, try_write_fd
from transport.oversize import MAX_MESSAGE, Oversized
from transport.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Control,
    FrameParser,
    Message,
    ProtocolError,
    TooBig,
    encode_close,
    encode_frame,
    message_frames,
)

log = structlog.get_logger(__name__)

MAX_FRAME = MAX_MESSAGE
RECEIVE_CHUNK = 256 * 1024
CLOSE_TOO_BIG = 1009
CLOSE_DRAIN = 1.0


class HandshakeFailed(Exception):
    pass


class WebSocketServerConnection:
    """One accepted socket: handshake, then ``receive`` / ``send_many`` / ``ping`` / ``aclose``."""

    kind = "websocket"

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        max_message: int = MAX_MESSAGE,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.stream = stream
        self.max_message = max_message
        self.max_frame = max_frame
        self.ws = WSConnection(ConnectionType.SERVER)
        self.request: Request | None = None
        try:
            self.peer: str | None = str(stream.socket.getpeername()[0])
        except (OSError, IndexError):
            self.peer = None
        self._ready: deque[str | bytes | bytearray | Oversized] = deque()
        self._parser = FrameParser(max_frame=max_frame, max_message=max_message)
        self._open = False
        self._closed = False
        self._close_code: int | None = None
        self._send_lock = trio.StrictFIFOLock()
        self._pings: dict[bytes, trio.Event] = {}
        self._ping_ids = itertools.count()
        self._fd = stream.socket.fileno()
        self._drained = False  # the upgrade request may already be waiting
        self._head = bytearray()  # the bytes read until the upgrade request was complete

    # -- handshake ---------------------------------------------------------------------

    async def handshake(self) -> Request:
        """Read the upgrade request (the caller bounds this with its own deadline)."""
        while self.request is None:
            data = await self._read()
            if not data:
                raise HandshakeFailed("peer closed during the handshake")
            self._head += data
            try:
                self.ws.receive_data(data)
                for event in self.ws.events():
                    if isinstance(event, Request):
                        self.request = event
            except RemoteProtocolError as exc:
                await self._raw_reject(400, f"Bad WebSocket upgrade: {exc}".encode())
                raise HandshakeFailed(str(exc)) from None
        return self.request

    def request_headers(self) -> list[tuple[bytes, bytes]]:
        """Every header of the upgrade request, in order, names lower-cased, repeats kept.

        wsproto's ``Request`` leaves out the ones it consumes (``host``,
        ``sec-websocket-extensions``, ``sec-websocket-protocol``), so the request head is
        parsed again here, by h11 as wsproto did: for an RBAC auth function, which must see
        every header the client sent (PROTOCOL.md §13.3).
        """
        parser = h11.Connection(h11.SERVER)
        head, self._head = bytes(self._head), bytearray()  # read once; not kept afterwards
        parser.receive_data(head)
        event = parser.next_event()
        if isinstance(event, h11.Request):
            return [(name, value) for name, value in event.headers]
        request = self.request  # cannot happen: wsproto parsed the same bytes with h11
        if request is None:
            return []
        return [(b"host", request.host.encode("idna")), *request.extra_headers]

    async def accept(self, *, keep_head: bool = False) -> None:
        """Complete the upgrade. The request head is let go here (it is not kept for the
        link's life) unless ``keep_head``: ``request_headers()`` is still to be read."""
        await self._write(self.ws.send(AcceptConnection()))
        self._open = True  # from here on the byte stream is ours (transport.wsframes)
        if not keep_head:
            self._head = bytearray()

    async def reject(self, status: int, body: bytes = b"") -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        try:
            data = self.ws.send(
                RejectConnection(status_code=status, headers=headers, has_body=bool(body))
            )
            if body:
                data += self.ws.send(RejectData(data=body))
            await self._write(data)
        except (LocalProtocolError, CarrierClosed):
            pass
        await self._close_stream()

    async def _raw_reject(self, status: int, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status} Bad Request\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        try:
            await self._write(head + body)
        except CarrierClosed:
            pass
        await self._close_stream()

    # -- messages ----------------------------------------------------------------------

    def serve_protocol(self, discard_limit: int | None = None) -> None:
        """Tune the connection for the worker protocol, whose reader parses JSON anyway.

        From now on a message over the limit is skipped and ``receive`` returns an
        ``Oversized`` for it (the caller answers ``payload_too_large``) instead of closing the
        socket with 1009; one that runs past ``discard_limit`` (default: twice the limit)
        still closes it. A large or fragmented text message is returned as the ``bytearray``
        it was assembled in (UTF-8 unchecked: the JSON parser checks it), never as ``str``.
        """
        self._parser.discard_limit = discard_limit or 2 * self.max_message
        self._parser.text_as_bytes = True

    async def receive(self) -> str | bytes | bytearray | Oversized:
        while not self._ready:
            if self._closed:
                raise CarrierClosed()
            data = await self._read()
            if not data:
                self._closed = True
                raise CarrierClosed()
            try:
                items = self._parser.feed(data)
            except TooBig as exc:
                log.warning("websocket message too big: closing", peer=self.peer, error=str(exc))
                await self.aclose(CLOSE_TOO_BIG, str(exc))
                raise CarrierClosed() from None
            except ProtocolError as exc:
                log.info("websocket protocol error: closing", peer=self.peer, error=str(exc))
                await self.aclose(exc.code, str(exc))
                raise CarrierClosed() from None
            out = b""
            for item in items:
                if isinstance(item, Message):
                    self._ready.append(item.data)
                elif isinstance(item, Oversized):
                    self._ready.append(item)
                elif item.opcode == OP_PING:
                    out += encode_frame(OP_PONG, item.payload)
                elif item.opcode == OP_PONG:
                    waiter = self._pings.pop(item.payload, None)
                    if waiter is not None:
                        waiter.set()
                else:  # close: answer with the peer's code and stop reading
                    code = (
                        int.from_bytes(item.payload[:2], "big") if len(item.payload) >= 2 else 1000
                    )
                    self._close_code = code
                    log.debug("websocket closed by the peer", peer=self.peer, code=code)
                    out += encode_close(code if code not in (1005, 1006, 1015) else 1000)
                    self._closed = True
                    break
            if out:
                try:
                    await self._write(out)
                except CarrierClosed:
                    self._closed = True
        return self._ready.popleft()

    @staticmethod
    def frame(payload: bytes) -> bytes:
        return encode_frame(OP_TEXT, payload)

    def try_write(self, data: bytes) -> bytes | None:
        """Write now if the socket is idle; the unsent rest, or None (busy: queue it)."""
        if not self._open or self._closed or self._send_lock.locked():
            return None
        try:
            return try_write_fd(self._fd, data)
        except CarrierClosed:
            self._closed = True
            raise

    async def write_raw(self, data: bytes) -> None:
        if self._closed:
            raise CarrierClosed()
        # The engine's writer flushes its batches here: what the kernel takes at once goes
        # without trio's send_all (a checkpoint and a reschedule per write).
        rest = self.try_write(data)
        if rest is not None:
            if not rest:
                return
            data = rest
        await self._write(data)

    async def send_many(self, payloads: list[bytes]) -> None:
        """Frame a batch of JSON payloads (already UTF-8) as text and write them in one go."""
        if self._closed:
            raise CarrierClosed()
        await self._write(b"".join([encode_frame(OP_TEXT, p) for p in payloads]))

    async def write_large(self, payload: bytes) -> None:
        """One large JSON payload as text, fragmented past 16 MiB, written without copies."""
        if self._closed:
            raise CarrierClosed()
        async with self._send_lock:
            try:
                for piece in message_frames(OP_TEXT, payload):
                    await self.stream.send_all(piece)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._closed = True
                raise CarrierClosed() from None

    async def send_message(self, message: str | bytes) -> None:
        if self._closed:
            raise CarrierClosed()
        if isinstance(message, str):
            await self._write(encode_frame(OP_TEXT, message.encode()))
        else:
            await self._write(encode_frame(OP_BINARY, message))

    async def ping(self, timeout: float) -> bool:
        payload = str(next(self._ping_ids)).encode()
        event = self._pings[payload] = trio.Event()
        try:
            await self._write(encode_frame(OP_PING, payload))
            with trio.move_on_after(timeout):
                await event.wait()
                return True
            return False
        except CarrierClosed:
            return False
        finally:
            self._pings.pop(payload, None)

    async def aclose(self, code: int | None = CLOSE_RECONNECT, reason: str | None = None) -> None:
        """Close handshake; ``code=None`` sends a Close frame without a status (seen as 1005)."""
        if not self._closed and self._open:
            self._closed = True
            try:
                frame = (
                    encode_frame(OP_CLOSE, b"")
                    if code is None
                    else encode_close(code, reason or "")
                )
                await self._write(frame)
                # Closing handshake: discard input until the peer's Close/EOF, so unread
                # bytes in our buffer do not turn our close into a reset the peer never reads.
                with trio.move_on_after(CLOSE_DRAIN):
                    while not self._peer_closed(await self._read()):
                        pass
            except CarrierClosed:
                pass
        await self._close_stream()

    def _peer_closed(self, data: bytes) -> bool:
        """While closing: has the peer's Close frame (or EOF) arrived?"""
        if not data:
            return True
        try:
            items = self._parser.feed(data)
        except (TooBig, ProtocolError):
            return False  # still discarding an oversized or broken frame
        return any(isinstance(i, Control) and i.opcode == OP_CLOSE for i in items)

    # -- bytes -------------------------------------------------------------------------

    async def _read(self) -> bytes:
        if self._fd < 0:
            return b""
        data = await read_fd(self._fd, RECEIVE_CHUNK, self._drained)
        self._drained = len(data) < RECEIVE_CHUNK
        return data

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._closed = True
                raise CarrierClosed() from None

    async def _close_stream(self) -> None:
        self._closed = True
        self._fd = -1
        with trio.move_on_after(1) as scope:
            scope.shield = True
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
