"""The two carriers of one message model: WebSocket text frames and framed local sockets.

The bus and the actor client only see ``Carrier``: receive one raw message, send a batch of
encoded messages, ping, close. Neither knows which carrier it holds.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    import trio_websocket

from transport.framing import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    FrameTooLarge,
    encode_frame,
    frame_header,
)
from transport.oversize import Oversized

__all__ = ["Carrier", "CarrierClosed", "WebSocketCarrier", "StreamCarrier", "TELEMETRY_PREFIXES"]

# Binary frames with these 4-byte prefixes are OTLP telemetry, not protocol (PROTOCOL.md §15).
TELEMETRY_PREFIXES = (b"OTLP", b"MTRC", b"LOGS")

# Close code for an engine-side teardown that SDKs must treat as an error and reconnect
# after (PROTOCOL.md §4.8: 1000/1001/1005 leave SDK 0.23 silently disconnected).
CLOSE_RECONNECT = 1012
RECEIVE_CHUNK = 256 * 1024


class CarrierClosed(Exception):
    """The peer went away (EOF, Close frame, socket error)."""


def try_write_fd(fd: int, data: bytes) -> bytes:
    """Write what the kernel takes now on a non-blocking socket; return the rest.

    The engine's hot path: a reply written here costs no task switch. Raises CarrierClosed
    if the socket is gone.
    """
    try:
        sent = os.write(fd, data)
    except BlockingIOError:
        return data
    except OSError:
        raise CarrierClosed() from None
    return data[sent:]


# One read buffer for every socket of the process: a read copies out what it got before it
# returns, with no checkpoint in between, and only the trio thread reads. ``os.read(fd, 256 KiB)``
# instead allocates 256 KiB per call, which glibc serves with mmap, mremap (the shrink to what
# was read) and munmap: 24 us per small read here, against 2.3 us for this (readv + a copy).
_read_buffer = bytearray(RECEIVE_CHUNK)
_read_view = memoryview(_read_buffer)


async def read_fd(fd: int, size: int, drained: bool) -> bytes:
    """Read what a non-blocking socket has (at most ``size`` bytes); ``b""`` at EOF or on error.

    ``drained`` says the last read returned less than ``size``, so the socket is most likely
    empty: wait for readability first instead of paying for a recv that fails with EAGAIN
    (trio's ``receive_some`` always tries first). One syscall less per message.
    """
    global _read_buffer, _read_view
    if size > len(_read_buffer):
        _read_buffer = bytearray(size)
        _read_view = memoryview(_read_buffer)
    view = _read_view[:size]
    while True:
        if drained:
            try:
                await trio.lowlevel.wait_readable(fd)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return b""  # closed under us (trio's notify_closing)
        else:
            await trio.lowlevel.checkpoint()
        try:
            got = os.readv(fd, [view])
        except BlockingIOError:
            drained = True
        except OSError:
            return b""
        else:
            return bytes(view[:got])


class Carrier(Protocol):
    kind: str
    peer: str | None

    async def receive(self) -> bytes | str | bytearray | Oversized:
        """One message: text as ``str`` (or a ``bytearray`` of UTF-8, when assembled from
        large frames), binary as ``bytes``, or what was kept of one refused as too large."""
        ...

    async def send_many(self, payloads: list[bytes]) -> None: ...

    async def ping(self, timeout: float) -> bool: ...

    async def aclose(self, code: int = CLOSE_RECONNECT) -> None: ...


class WebSocketCarrier:
    kind = "websocket"

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        # Imported here: only actors run by hand (III_URL) use this carrier, and
        # trio-websocket's import is a noticeable share of an actor's (re)start time.
        from trio_websocket import ConnectionClosed

        self._closed_exc = ConnectionClosed
        self.ws = ws
        remote = ws.remote
        address = getattr(remote, "address", None)
        self.peer = str(address) if address is not None else (str(remote) if remote else None)
        self._ping_ids = itertools.count()

    async def receive(self) -> bytes | str:
        try:
            return await self.ws.get_message()
        except self._closed_exc:
            raise CarrierClosed() from None

    async def send_many(self, payloads: list[bytes]) -> None:
        try:
            for payload in payloads:
                await self.ws.send_message(payload.decode())
        except self._closed_exc:
            raise CarrierClosed() from None

    async def ping(self, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            try:
                await self.ws.ping(str(next(self._ping_ids)).encode())
            except (self._closed_exc, ValueError):
                return False
            return True
        return False

    async def aclose(self, code: int = CLOSE_RECONNECT) -> None:
        with trio.move_on_after(2):
            await self.ws.aclose(code)


class StreamCarrier:
    """Length-prefixed frames over a byte stream (a socketpair end, in practice)."""

    kind = "local"

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        peer: str = "local",
        refuse_oversized: bool = False,
    ) -> None:
        """``refuse_oversized``: a frame over ``max_frame`` is skipped and received as an
        ``Oversized`` (the bus answers ``payload_too_large``) instead of ending the link."""
        self.stream = stream
        self.peer: str | None = peer
        self._decoder = FrameDecoder(max_frame, refuse=refuse_oversized)
        self.max_message = max_frame
        self._ready: list[bytes | Oversized] = []
        self._send_lock = trio.Lock()
        self.ping_handler: PingHandler | None = None
        sock = getattr(stream, "socket", None)
        self._fd = sock.fileno() if sock is not None else -1
        self._drained = True

    frame = staticmethod(encode_frame)

    @property
    def writes_directly(self) -> bool:
        """Whether ``try_write`` can write (a socket, not another kind of stream)."""
        return self._fd >= 0

    def has_buffered(self) -> bool:
        """Frames already read and not yet received: the current burst goes on."""
        return bool(self._ready)

    def try_write(self, data: bytes) -> bytes | None:
        """Write now if nothing else is writing; the unsent rest, or None (busy: queue it)."""
        if self._fd < 0 or self._send_lock.locked():
            return None
        return try_write_fd(self._fd, data)

    async def write_raw(self, data: bytes) -> None:
        rest = self.try_write(data)  # as send_many: no send_all for what goes at once
        if rest is not None:
            if not rest:
                return
            data = rest
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise CarrierClosed() from None

    async def write_large(self, payload: bytes) -> None:
        """One large payload: its length prefix, then the payload itself (not copied)."""
        async with self._send_lock:
            try:
                await self.stream.send_all(frame_header(len(payload)))
                await self.stream.send_all(payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise CarrierClosed() from None

    async def receive(self) -> bytes | str | Oversized:
        while not self._ready:
            data: bytes | bytearray
            if self._fd >= 0:
                data = await read_fd(self._fd, RECEIVE_CHUNK, self._drained)
                self._drained = len(data) < RECEIVE_CHUNK
            else:
                try:
                    data = await self.stream.receive_some(RECEIVE_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise CarrierClosed() from None
            if not data:
                raise CarrierClosed()
            try:
                self._ready = self._decoder.feed(data)
            except FrameTooLarge:
                raise CarrierClosed() from None
            self._ready.reverse()
        return self._ready.pop()

    async def send_many(self, payloads: list[bytes]) -> None:
        blob = b"".join(encode_frame(p) for p in payloads)
        # What the kernel takes at once goes without trio's send_all (a checkpoint and a
        # readiness round per call): the actors' writers send every batch through here.
        rest = self.try_write(blob)
        if rest is not None:
            if not rest:
                return
            blob = rest
        async with self._send_lock:
            try:
                await self.stream.send_all(blob)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise CarrierClosed() from None

    async def ping(self, timeout: float) -> bool:
        if self.ping_handler is None:
            return True
        return await self.ping_handler(timeout)

    async def aclose(self, code: int = CLOSE_RECONNECT) -> None:
        self._fd = -1  # the number may be reused by another socket once closed
        with trio.move_on_after(2):
            await self.stream.aclose()


class PingHandler(Protocol):
    async def __call__(self, timeout: float) -> bool: ...
