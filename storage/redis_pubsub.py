"""Redis ``PubSub`` (adapter ``redis``): topics are Redis channels, so every engine instance
subscribed to a topic gets every message published on it by any instance (WORKERS.md §14).

One Redis subscription per topic per instance, fanned out locally to any number of subscribers
(§16 item 10). The blocking listener runs in one thread owned by the adapter: it takes
(un)subscribe commands from a queue, polls the connection, and hands each message to trio with
``trio.from_thread.run_sync``. If the connection drops it reconnects with backoff and
re-subscribes (messages published meanwhile are lost, as with any Redis pub/sub).
"""

from __future__ import annotations

import os
import queue
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import orjson
import redis
import redis.client
import redis.exceptions
import structlog
import trio

from storage._util import owned_nursery
from storage.errors import StorageClosedError, StorageUnavailableError
from storage.fanout import TopicFanout
from storage.pubsub import DEFAULT_BUFFER, Subscription
from storage.redis_kv import CONNECT_TIMEOUT, connect_redis, unavailable_message

__all__ = ["RedisPubSub", "open_redis_pubsub"]

log = structlog.get_logger(__name__)

POLL_SECONDS: Final = 0.05
SUBSCRIBE_TIMEOUT: Final = CONNECT_TIMEOUT
_MAX_BACKOFF: Final = 5.0

_Command = tuple[str, str, int]


class RedisPubSub:
    """``PubSub`` over Redis PUBLISH/SUBSCRIBE. Open it with ``open_redis_pubsub``.

    A subscriber to a topic without a confirmed Redis subscription waits for Redis to confirm
    one; it joins the fan-out in the same trio step that handles the confirmation, so it never
    sees a message published before its subscription took effect (one that was in flight for
    an earlier subscription of the same topic, say). Requests are numbered so a stale
    confirmation (subscribe, unsubscribe, subscribe again) is not taken for the current one.
    """

    def __init__(self, client: redis.Redis, url: str) -> None:
        self._client = client
        self._url = url
        self.client_name: str | None = None  # as shown by Redis CLIENT LIST
        self._closed = False
        self._stopping = False
        self._limiter = trio.CapacityLimiter(8)
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        # trio-side state
        self._active = TopicFanout("redis")
        self._joining: dict[str, dict[trio.MemorySendChannel[Any], trio.Event]] = {}
        self._requests: dict[str, int] = {}
        self._confirmed: set[str] = set()
        self._last_request = 0
        # listener-thread state
        self._desired: set[str] = set()
        self._pending: dict[str, deque[int]] = {}
        self._resubscribing: set[str] = set()

    async def publish(self, topic: str, data: Any) -> None:
        if self._closed:
            raise StorageClosedError("pub/sub is closed")
        payload = orjson.dumps(data)
        try:
            await trio.to_thread.run_sync(
                self._client.publish, topic, payload, abandon_on_cancel=True, limiter=self._limiter
            )
        except redis.exceptions.RedisError as exc:
            raise StorageUnavailableError(f"Redis publish to {self._url}: {exc}") from exc

    @asynccontextmanager
    async def subscribe(
        self, topic: str, *, buffer: int = DEFAULT_BUFFER
    ) -> AsyncIterator[Subscription]:
        if self._closed:
            raise StorageClosedError("pub/sub is closed")
        ready: trio.Event | None = None
        if topic in self._confirmed:
            send, receive = self._active.add(topic, buffer)
        else:
            send, receive = trio.open_memory_channel[Any](buffer)
            ready = trio.Event()
            self._joining.setdefault(topic, {})[send] = ready
            if topic not in self._requests:
                self._last_request += 1
                self._requests[topic] = self._last_request
                self._commands.put(("subscribe", topic, self._last_request))
        try:
            if ready is not None:
                with trio.move_on_after(SUBSCRIBE_TIMEOUT):
                    await ready.wait()
                if not ready.is_set():
                    raise StorageUnavailableError(
                        f"Redis did not confirm the subscription to {topic!r} within "
                        f"{SUBSCRIBE_TIMEOUT:g}s ({self._url})"
                    )
            async with receive:
                yield receive
        finally:
            self._leave(topic, send)

    def _leave(self, topic: str, send: trio.MemorySendChannel[Any]) -> None:
        joining = self._joining.get(topic)
        if joining is not None and joining.pop(send, None) is not None:
            send.close()
            if not joining:
                del self._joining[topic]
        self._active.remove(topic, send)
        if (
            not self._closed
            and topic in self._requests
            and not self._active.has(topic)
            and topic not in self._joining
        ):
            del self._requests[topic]
            self._confirmed.discard(topic)
            self._commands.put(("unsubscribe", topic, 0))

    def _on_confirmed(self, topic: str, request: int) -> None:
        """Runs in trio, called by the listener thread when Redis confirmed ``request``."""
        if self._requests.get(topic) != request:
            return  # a stale confirmation: that subscription was given up since
        self._confirmed.add(topic)
        for send, ready in self._joining.pop(topic, {}).items():
            self._active.adopt(topic, send)
            ready.set()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self._closed = True
        self._stopping = True
        self._active.close_all()
        for joining in self._joining.values():
            for send, ready in joining.items():
                send.close()
                ready.set()
        self._joining.clear()

    # ------------------------------------------------------------ listener thread

    def _listen(self) -> None:
        pubsub: redis.client.PubSub | None = None
        backoff = 0.1
        while not self._stopping:
            try:
                if pubsub is None:
                    pubsub = self._client.pubsub()
                    self._pending = {t: q for t, q in self._pending.items() if t in self._desired}
                    if self._desired:
                        self._resubscribing = set(self._desired)
                        pubsub.subscribe(*self._desired)
                self._run_commands(pubsub)
                message = pubsub.get_message(timeout=POLL_SECONDS)
                if message is not None:
                    self._handle(message)
                backoff = 0.1
            except trio.RunFinishedError:
                break
            except Exception as exc:  # reconnect on anything; the thread must keep running
                log.warning("pubsub.redis_listener_error", url=self._url, error=repr(exc))
                _close_quietly(pubsub)
                pubsub = None
                self._sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
        _close_quietly(pubsub)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)

    def _run_commands(self, pubsub: redis.client.PubSub) -> None:
        while True:
            try:
                command, topic, request = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "subscribe":
                self._desired.add(topic)
                self._pending.setdefault(topic, deque()).append(request)
                pubsub.subscribe(topic)
            else:
                self._desired.discard(topic)
                pubsub.unsubscribe(topic)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        topic = channel.decode("utf-8") if isinstance(channel, bytes) else str(channel)
        if kind == "subscribe":
            waiting = self._pending.get(topic)
            if not waiting:
                return
            if topic in self._resubscribing:  # after a reconnect one confirmation covers all
                self._resubscribing.discard(topic)
                requests = list(waiting)
                waiting.clear()
            else:
                requests = [waiting.popleft()]
            for request in requests:
                trio.from_thread.run_sync(self._on_confirmed, topic, request)
        elif kind == "message":
            try:
                data = orjson.loads(message["data"])
            except orjson.JSONDecodeError:
                log.warning("pubsub.undecodable_message_dropped", topic=topic)
                return
            trio.from_thread.run_sync(self._active.deliver, topic, data)


def _close_quietly(pubsub: redis.client.PubSub | None) -> None:
    if pubsub is None:
        return
    try:
        pubsub.close()
    except (redis.exceptions.RedisError, OSError):
        pass


@asynccontextmanager
async def open_redis_pubsub(url: str) -> AsyncIterator[RedisPubSub]:
    """Connect (failing fast if Redis does not answer), run the listener, stop it on exit."""
    client_name = f"iii-pubsub-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    client = connect_redis(url, client_name=client_name)
    try:
        await trio.to_thread.run_sync(client.ping, abandon_on_cancel=True)
    except redis.exceptions.RedisError as exc:
        client.close()
        raise StorageUnavailableError(f"{unavailable_message(url)} ({exc})") from exc
    pubsub = RedisPubSub(client, url)
    pubsub.client_name = client_name
    try:
        async with owned_nursery() as nursery:
            nursery.start_soon(_run_listener, pubsub)
            try:
                yield pubsub
            finally:
                with trio.CancelScope(shield=True):
                    await pubsub.aclose()
    finally:
        client.close()


async def _run_listener(pubsub: RedisPubSub) -> None:
    # Not abandonable: cancellation waits for the thread, which sees ``_stopping`` within
    # POLL_SECONDS. ``aclose`` sets it before the nursery is cancelled.
    try:
        await trio.to_thread.run_sync(pubsub._listen, limiter=trio.CapacityLimiter(1))
    except Exception as exc:  # a background task must not take the adapter down
        log.error("pubsub.redis_listener_crashed", error=repr(exc))
