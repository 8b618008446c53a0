"""The actor's HTTP/1.1 server: h11 speaks the protocol, trio carries the bytes.

Why not hypercorn + Quart: every request through iii-http crosses four processes, and the
actor was the busiest of them. Measured with the bench client on this 2-core VM (a trivial
JSON handler, 8 keep-alive connections): Quart on hypercorn costs about 1.0 ms of CPU per
request, a bare ASGI app on hypercorn about 0.6 ms, and an h11 loop on trio sockets about
0.16 ms. The actor needs none of what the frameworks add (its one "view" owns routing, CORS
and replies), so it speaks HTTP/1.1 through h11 directly. h11 does all the parsing and
framing (content-length, chunked, HTTP/1.0, keep-alive, 100-continue bookkeeping); this
module only moves bytes, applies the time limits, and stops gracefully.

Semantics kept from the hypercorn days: keep-alive 75 s, no recycling of a client's
connection, ``TCP_NODELAY`` (trio's ``SocketStream`` sets it), a 5 s grace on stop for
requests in flight. Malformed requests get the status h11 suggests (400, or 431 for a head
over ``MAX_HEAD``) and the connection is closed; the server keeps serving everyone else.
"""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus

import attrs
import h11
import structlog
import trio

from actors.http.response import Headers, Reply

log = structlog.get_logger("iii-http")

MAX_HEAD = 64 * 1024  # request line and headers
READ_SIZE = 64 * 1024
KEEP_ALIVE = 75.0  # idle time between requests on one connection
HEAD_TIMEOUT = 30.0  # a request's head, once its first byte arrived
DRAIN_LIMIT = 1024 * 1024  # unread request body we still read to keep the connection
DRAIN_TIMEOUT = 5.0
LINGER = 1.0  # closing with unread input: keep reading this long so no RST eats the reply
GRACE = 5.0  # on stop: how long requests in flight may still take
_ACCEPT_RETRY = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_NO_BODY = frozenset({204, 304})


@attrs.define(slots=True)
class Streamed:
    """A response whose body arrives while it is sent (HTTP/1.1 chunked, or close-delimited
    for an HTTP/1.0 client)."""

    status: int
    headers: Headers
    chunks: AsyncIterator[bytes]


Outgoing = Reply | Streamed


class Request:
    """One request: its head at once, its body on demand (``read_all`` or ``chunks``)."""

    __slots__ = ("method", "raw_path", "query_string", "headers", "http_version", "_conn")

    def __init__(self, event: h11.Request, conn: _Connection) -> None:
        self.method = event.method.decode("ascii")
        target = event.target
        if not target.startswith(b"/"):  # absolute-form (a proxy's) or "*"
            scheme, sep, rest = target.partition(b"://")
            target = b"/" + rest.partition(b"/")[2] if sep else b"/"
        path, _, query = target.partition(b"?")
        self.raw_path: bytes = path
        self.query_string: bytes = query
        self.headers: list[tuple[bytes, bytes]] = list(event.headers)  # names lower-cased
        self.http_version = event.http_version.decode("ascii")
        self._conn = conn

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; ends at the end of the request."""
        conn = self._conn
        while True:
            event = await conn.next_body_event()
            if event is None:
                return
            yield event

    async def read_all(self) -> bytes:
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)


App = Callable[[Request], Awaitable[Outgoing]]


class ClientGone(Exception):
    """The client went away (EOF or reset) while its request was being served."""


_date_cache: tuple[int, bytes] = (0, b"")


def _date() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class _Connection:
    """One client connection: requests in turn, each answered before the next is read."""

    def __init__(self, server: HttpServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.read_lock = trio.Lock()  # a body feeder task and this task take turns reading
        self.idle: trio.CancelScope | None = None  # set while waiting for the next request
        self.unread_input = False

    async def _receive(self, size: int = READ_SIZE) -> None:
        try:
            data = await self.stream.receive_some(size)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ClientGone from exc
        self.h11.receive_data(data)  # b"" records the EOF

    async def next_body_event(self) -> bytes | None:
        """The next piece of the current request's body, ``None`` at its end."""
        async with self.read_lock:
            h = self.h11
            while True:
                if h.their_state is not h11.SEND_BODY:
                    return None
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as exc:  # e.g. EOF before the declared length
                    raise ClientGone(str(exc)) from exc
                if event is h11.NEED_DATA:
                    if h.they_are_waiting_for_100_continue:
                        await self._send(h11.InformationalResponse(status_code=100, headers=[]))
                    await self._receive()
                    continue
                if isinstance(event, h11.Data):
                    if event.data:
                        return bytes(event.data)
                    continue
                if isinstance(event, h11.EndOfMessage):
                    return None
                if isinstance(event, h11.ConnectionClosed):
                    raise ClientGone("the client closed the connection mid-body")

    async def _send(self, *events: h11.Event) -> None:
        out = bytearray()
        for event in events:
            data = self.h11.send(event)
            if data:
                out += data
        try:
            await self.stream.send_all(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ClientGone from exc

    async def _next_request(self) -> h11.Request | None:
        """Wait for the next request head; ``None`` when the connection should end."""
        h = self.h11
        server = self.server
        with trio.CancelScope() as idle:
            self.idle = idle
            if server.stopping:
                return None
            idle.deadline = trio.current_time() + KEEP_ALIVE
            try:
                while True:
                    event = h.next_event()
                    if event is h11.NEED_DATA:
                        # Never more than one byte past MAX_HEAD of an unfinished head, so
                        # h11's size check sees any head that is too large.
                        await self._receive(max(1, MAX_HEAD + 1 - len(h.trailing_data[0])))
                        if self.idle is not None and h.trailing_data[0]:
                            # A head has begun: no longer idle (a stop waits for it now),
                            # and it must complete within HEAD_TIMEOUT.
                            self.idle = None
                            idle.deadline = trio.current_time() + HEAD_TIMEOUT
                        continue
                    if isinstance(event, h11.Request):
                        return event
                    return None  # ConnectionClosed, or the EOF of a client done with us
            finally:
                self.idle = None
        return None  # idle too long, a head too slow, or the server is stopping

    async def serve(self) -> None:
        try:
            while True:
                try:
                    event = await self._next_request()
                except h11.RemoteProtocolError as exc:
                    await self._refuse(exc)
                    return
                if event is None:
                    return
                request = Request(event, self)
                await self._respond(request, await self._call(request))
                if not await self._next_cycle():
                    return
        except ClientGone:
            return
        except h11.RemoteProtocolError as exc:  # a malformed body: nothing more to say
            log.debug("bad request body", error=str(exc))
            self.unread_input = True
        finally:
            await self._close()

    async def _call(self, request: Request) -> Outgoing:
        try:
            return await self.server.app(request)
        except ClientGone:
            raise
        except Exception:
            log.exception("request failed outside the view", method=request.method)
            return Reply(500, [("content-type", "text/plain")], b"internal server error")

    def _head(
        self, status: int, headers: Headers, length: int | None, close: bool = False
    ) -> h11.Response:
        raw: list[tuple[bytes, bytes]] = [(b"date", _date())]
        has_length = False
        for name, value in headers:
            key = name.encode("latin-1")
            if key.lower() == b"content-length":
                has_length = True
            raw.append((key, value.encode("latin-1")))
        if length is not None and not has_length and status not in _NO_BODY:
            raw.append((b"content-length", str(length).encode("ascii")))
        if close or self.server.stopping:
            raw.append((b"connection", b"close"))
        return h11.Response(status_code=status, headers=raw, reason=_reason(status))

    async def _respond(self, request: Request, out: Outgoing) -> None:
        if isinstance(out, Reply):
            body = b"" if request.method == "HEAD" or out.status in _NO_BODY else out.body
            keep = await self._finish_body()
            head = self._head(out.status, out.headers, len(body), close=not keep)
            if body:
                await self._send(head, h11.Data(data=body), h11.EndOfMessage())
            else:
                await self._send(head, h11.EndOfMessage())
            return
        await self._send(self._head(out.status, out.headers, None))
        chunks = out.chunks
        try:
            async for chunk in chunks:
                if chunk:
                    await self._send(h11.Data(data=chunk))
        except ClientGone:
            raise
        except Exception as exc:  # the response channel broke: end without the last chunk
            log.warning("streamed response ended early", error=repr(exc))
            raise ClientGone from exc
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        await self._send(h11.EndOfMessage())

    async def _finish_body(self) -> bool:
        """Before a reply: read and drop what the handler left of the request body, up to
        ``DRAIN_LIMIT``, so the connection can serve another request. False when it cannot
        (the reply then says ``Connection: close``)."""
        h = self.h11
        if h.their_state is not h11.SEND_BODY:
            return True
        if h.they_are_waiting_for_100_continue:
            return False  # the body was never asked for; the client may still send it
        left = DRAIN_LIMIT
        with trio.move_on_after(DRAIN_TIMEOUT):
            while left >= 0:
                piece = await self.next_body_event()
                if piece is None:
                    return True
                left -= len(piece)
        self.unread_input = True
        return False

    async def _next_cycle(self) -> bool:
        """After a response: ready the connection for the next request, or say it must
        close (a body left unread, ``Connection: close``, HTTP/1.0, a stop)."""
        h = self.h11
        if h.our_state is not h11.DONE:
            return False
        if h.their_state is h11.SEND_BODY:
            await self._finish_body()  # after a streamed reply; at worst we close
        if h.their_state is not h11.DONE:
            self.unread_input = h.their_state is h11.SEND_BODY
            return False
        if self.server.stopping:
            return False
        try:
            h.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True

    async def _refuse(self, exc: h11.RemoteProtocolError) -> None:
        """A malformed request head: answer with h11's status hint, then close."""
        self.unread_input = True
        status = exc.error_status_hint
        log.info("malformed request", status=status, error=str(exc))
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"Bad request: {exc}".encode()[:512]
        head = [
            (b"date", _date()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        try:
            await self._send(
                h11.Response(status_code=status, headers=head, reason=_reason(status)),
                h11.Data(data=body),
                h11.EndOfMessage(),
            )
        except (ClientGone, h11.LocalProtocolError):
            pass

    async def _close(self) -> None:
        """Close the socket; after unread input, half-close first and read for a moment so
        the kernel does not answer the leftovers with a reset that destroys our reply."""
        stream = self.stream
        with trio.CancelScope(shield=True):
            if self.unread_input:
                with trio.move_on_after(LINGER):
                    try:
                        await stream.send_eof()
                        while await stream.receive_some(READ_SIZE):
                            pass
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            await stream.aclose()


class HttpServer:
    """Accepts connections on ``listeners`` and serves each with ``app`` until stopped."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.stopping = False
        self._connections: set[_Connection] = set()
        self._changed = trio.Event()

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def serve(
        self,
        host: str,
        port: int,
        stop: trio.Event,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until ``stop`` is set, then stop accepting, close idle connections, and
        give requests in flight ``GRACE`` seconds before they are cut."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        binds = []
        for listener in listeners:
            addr = listener.socket.getsockname()
            shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
            binds.append(f"http://{shown}:{addr[1]}")
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as acceptors:
                for listener in listeners:
                    acceptors.start_soon(self._accept, listener, connections)
                task_status.started(binds)
                await stop.wait()
                self.stopping = True
                acceptors.cancel_scope.cancel()
            for conn in list(self._connections):
                if conn.idle is not None:
                    conn.idle.cancel()
            with trio.move_on_after(GRACE) as grace:
                while self._connections:
                    for conn in list(self._connections):
                        if conn.idle is not None:
                            conn.idle.cancel()
                    await self._changed.wait()
            if grace.cancelled_caught:
                log.warning("requests still in flight after the grace period; cutting them")
                connections.cancel_scope.cancel()

    async def _accept(self, listener: trio.SocketListener, connections: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_RETRY:
                        raise
                    log.warning("cannot accept a connection", error=str(exc))
                    await trio.sleep(0.1)
                    continue
                connections.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = _Connection(self, stream)
        self._connections.add(conn)
        try:
            await conn.serve()
        finally:
            self._connections.discard(conn)
            self.changed()


__all__ = ["ClientGone", "HttpServer", "Outgoing", "Request", "Streamed"]
