"""The per-request data channels of an HTTP exchange (WORKERS.md §3.3, PROTOCOL.md §11).

Every handler payload carries two channel refs: ``request_body`` (we write the request
bytes, the handler reads) and ``response`` (the handler may write a streamed response, we
read). Channels live in the engine; creating one is a bus call and attaching a side is a
WebSocket to the engine. To keep that cost off the hot path:

* ``ChannelPool`` creates channels ahead of demand, so a request takes two ready refs.
* Sides are attached only when they can matter (see ``server.py``): a fast handler that
  returns a value (the common case) never makes us open a socket. A body the handler can
  only read from ``request_body`` is streamed into it at once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
import trio
import trio_websocket

from actors.http.h1 import ClientGone
from actors.http.response import StreamHead
from transport.client import BusClient, FunctionError

log = structlog.get_logger("iii-http")

Ref = dict[str, str]

CHANNEL_BUFFER = 64  # items per channel, as upstream
FRAME_BYTES = 64 * 1024  # no item above 1 MiB (SDK reader limit); 64 KiB as the SDK writes
CONNECT_TIMEOUT = 10.0
MAX_MESSAGE = 16 * 1024 * 1024


def engine_base_url() -> str:
    """``ws://host:port`` of the engine's listener (``III_ENGINE_URL`` / ``III_URL``)."""
    url = os.environ.get("III_ENGINE_URL") or os.environ.get("III_URL") or "ws://127.0.0.1:49134"
    parts = urlsplit(url)
    return f"{parts.scheme or 'ws'}://{parts.netloc}"


def channel_url(base: str, ref: Ref, direction: str) -> str:
    return (
        f"{base}/ws/channels/{ref['channel_id']}?key={quote(ref['access_key'], safe='')}"
        f"&dir={direction}"
    )


class ChannelPool:
    """Channels created ahead of demand; each record is ``(created_at, reader_ref, writer_ref)``.

    Creation asks for a whole batch at once with ``{"count": n}``: an engine that supports
    it answers ``{"channels": [{"reader", "writer"}, ...]}``; one that does not ignores the
    unknown key and answers a single channel, and the pool then creates channels one call
    each. Unattached channels are swept by the engine after 5 minutes, so pooled ones are
    used or dropped well before that.
    """

    def __init__(
        self, client: BusClient, *, target: int = 64, max_age: float = 120.0, batch: int = 16
    ) -> None:
        self.client = client
        self.target = target
        self.max_age = max_age
        self.batch = batch
        self.batch_calls: bool | None = None  # None until the engine's answer tells
        self._items: deque[tuple[float, Ref, Ref]] = deque()
        self._wake = trio.Event()

    async def _create(self, count: int = 1) -> list[tuple[float, Ref, Ref]]:
        data: dict[str, Any] = {"buffer_size": CHANNEL_BUFFER}
        if count > 1 and self.batch_calls is not False:
            data["count"] = count
        result = await self.client.invoke("engine::channels::create", data, timeout=10.0)
        now = trio.current_time()
        channels = result.get("channels") if isinstance(result, dict) else None
        if isinstance(channels, list):
            self.batch_calls = True
            return [(now, c["reader"], c["writer"]) for c in channels]
        if "count" in data:
            self.batch_calls = False
        return [(now, result["reader"], result["writer"])]

    async def _create_many(self, count: int) -> list[tuple[float, Ref, Ref]]:
        if self.batch_calls is not False:
            return await self._create(count)
        made: list[tuple[float, Ref, Ref]] = []

        async def one() -> None:
            made.extend(await self._create())

        async with trio.open_nursery() as nursery:
            for _ in range(min(count, self.batch)):
                nursery.start_soon(one)
        return made

    async def run(self) -> None:
        """Keep ``target`` fresh channels ready; refill when requests take them."""
        while True:
            now = trio.current_time()
            while self._items and now - self._items[0][0] > self.max_age:
                self._items.popleft()
            missing = self.target - len(self._items)
            if missing > 0:
                try:
                    self._items.extend(await self._create_many(missing))
                except* (FunctionError, KeyError, TypeError) as group:
                    log.warning("cannot pre-create channels", error=str(group.exceptions[0]))
                    await trio.sleep(1.0)
                continue
            self._wake = trio.Event()
            with trio.move_on_after(self.max_age / 2):
                await self._wake.wait()

    async def take(self) -> tuple[tuple[Ref, Ref], tuple[Ref, Ref]]:
        """Two channels: ``(reader, writer)`` refs each (request body, response)."""
        now = trio.current_time()
        got: list[tuple[Ref, Ref]] = []
        items = self._items
        while items and len(got) < 2:
            created, reader, writer = items.popleft()
            if now - created <= self.max_age:
                got.append((reader, writer))
        if len(items) < self.target // 2:
            self._wake.set()
        while len(got) < 2:  # the pool ran dry: create what this request needs now
            made = await self._create_many(2 - len(got))
            got.extend((r, w) for _, r, w in made[: 2 - len(got)])
        return got[0], got[1]


class ChannelReleaser:
    """Hands the channels of finished exchanges back to the engine, in batches.

    Uses ``engine::channels::delete`` (``{"channels": [{"channel_id", "access_key"}]}``)
    when the engine has it; without it the engine's sweep removes them after 5 minutes,
    and the first failed call turns the releaser off.
    """

    FUNCTION = "engine::channels::delete"

    def __init__(self, client: BusClient, *, every: float = 0.25, max_batch: int = 512) -> None:
        self.client = client
        self.every = every
        self.max_batch = max_batch
        self.enabled = True
        self._queue: list[dict[str, str]] = []
        self._wake = trio.Event()

    def release(self, *refs: Ref) -> None:
        if not self.enabled:
            return
        for ref in refs:
            self._queue.append({"channel_id": ref["channel_id"], "access_key": ref["access_key"]})
        if len(self._queue) >= self.max_batch:
            self._wake.set()

    async def run(self) -> None:
        while self.enabled:
            with trio.move_on_after(self.every):
                await self._wake.wait()
            self._wake = trio.Event()
            if not self._queue:
                continue
            batch, self._queue = self._queue, []
            try:
                await self.client.invoke(self.FUNCTION, {"channels": batch}, timeout=10.0)
            except FunctionError as exc:
                if exc.code == "function_not_found":
                    log.info("the engine cannot delete channels; relying on its sweep")
                    self.enabled = False
                    self._queue = []
                else:
                    log.warning("channel release failed", code=exc.code, error=exc.message)


async def connect(nursery: trio.Nursery, url: str) -> trio_websocket.WebSocketConnection:
    """A client socket to the engine, hosted by a task in ``nursery``.

    trio-websocket raises a refused handshake (the engine answers 404 for a channel that was
    deleted meanwhile) from its reader task, i.e. into whatever nursery runs that task. The
    reader therefore runs in a nursery of its own (``_host_socket``): a failure before the
    handshake completes is raised here, to the caller; a later one is logged and ends only
    this socket. The handshake is shielded (bounded by ``CONNECT_TIMEOUT``): a cancellation
    in the middle of it would leave a half-open socket with nobody to close it.
    """
    with trio.CancelScope(shield=True):
        ws: trio_websocket.WebSocketConnection = await nursery.start(_host_socket, url)
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        await _close(ws)
        raise
    return ws


async def _host_socket(url: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    started = False
    try:
        async with trio.open_nursery() as reader:
            with trio.fail_after(CONNECT_TIMEOUT):
                ws = await trio_websocket.connect_websocket_url(
                    reader, url, max_message_size=MAX_MESSAGE, message_queue_size=4
                )
            task_status.started(ws)
            started = True
    except Exception as exc:  # a group holding a Cancelled is not an Exception: it propagates
        failure = _leaf(exc)
        if not started:
            raise failure from None
        log.debug("channel socket ended with an error", error=repr(failure))


def _leaf(exc: Exception) -> Exception:
    """The single exception inside (nested) one-member groups, else ``exc`` itself."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _close(ws: trio_websocket.WebSocketConnection) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(2.0):
        await ws.aclose()


class BodyFeeder:
    """Writes the request body into the ``request_body`` channel (we are its writer side).

    ``data`` is a body already read in full (a JSON request, or none at all); ``source``
    yields a body still arriving. The bytes go out in frames of at most ``FRAME_BYTES``
    and the side is closed at the end of the body: the handler's reader sees end-of-stream.
    """

    def __init__(
        self,
        url: str,
        *,
        data: bytes | None = None,
        source: AsyncIterator[bytes] | None = None,
    ) -> None:
        self.url = url
        self.data = data
        self.source = source
        self.scope = trio.CancelScope()

    def cancel(self) -> None:
        self.scope.cancel()

    async def run(self, nursery: trio.Nursery) -> None:
        with self.scope:
            try:
                ws = await connect(nursery, self.url)
                try:
                    if self.data:
                        await _send_frames(ws, self.data)
                    if self.source is not None:
                        async for chunk in self.source:
                            if chunk:
                                await _send_frames(ws, chunk)
                finally:
                    await _close(ws)
            except (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed, OSError) as exc:
                log.debug("request body channel ended early", error=repr(exc))
            except trio.TooSlowError:
                log.warning("request body channel: the engine did not accept the connection")
            except ClientGone as exc:  # the HTTP client left mid-body: the handler sees EOF
                log.debug("request body ended early: the client left", error=str(exc))
            except Exception as exc:  # never let one request's channel take the actor down
                log.warning("request body channel failed", error=repr(exc))


async def _send_frames(ws: trio_websocket.WebSocketConnection, chunk: bytes) -> None:
    if len(chunk) <= FRAME_BYTES:
        await ws.send_message(chunk)
        return
    view = memoryview(chunk)
    for start in range(0, len(chunk), FRAME_BYTES):
        await ws.send_message(bytes(view[start : start + FRAME_BYTES]))


class ResponseStream:
    """Mode B (§3.6): the handler writes the response to the ``response`` channel."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, head: StreamHead) -> None:
        self.ws = ws
        self.head = head
        self.first: bytes | None = None  # the first body frame, once it arrived
        self.closed = False

    async def read_head(self) -> None:
        """Apply control frames until the first binary frame or the channel's end."""
        while True:
            try:
                msg = await self.ws.get_message()
            except trio_websocket.ConnectionClosed:
                self.closed = True
                return
            if isinstance(msg, str):
                self.head.apply(msg)
            else:
                self.first = msg
                return

    async def body(self, on_done: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
        """The body frames (control frames after the first body frame are ignored)."""
        try:
            if self.first:
                yield self.first
            if not self.closed:
                while True:
                    try:
                        msg = await self.ws.get_message()
                    except trio_websocket.ConnectionClosed:
                        break
                    if isinstance(msg, bytes) and msg:
                        yield msg
        finally:
            await _close(self.ws)
            if on_done is not None:
                on_done()

    async def aclose(self) -> None:
        await _close(self.ws)


async def open_response(nursery: trio.Nursery, url: str) -> ResponseStream:
    return ResponseStream(await connect(nursery, url), StreamHead())


__all__ = [
    "BodyFeeder",
    "ChannelPool",
    "ChannelReleaser",
    "ResponseStream",
    "channel_url",
    "engine_base_url",
    "open_response",
]
