"""Redis key/value store: the backend that lets several engines share state (WORKERS.md §5.1, §14).

Key layout (``<ns>`` is the store name, e.g. ``state``; same hash names as upstream):

* ``<ns>:<scope>`` — one hash per scope; field = key, value = the value's compact JSON text.
* ``<ns>#scopes`` — a set of the scope names holding at least one key (``list_groups``).

``set`` and ``delete`` are Lua scripts that change the hash and the scope set together.
``update`` reads the value, applies the §1.9 ops in Python (``storage.update_ops``, so the
semantics are exactly those of the local stores) and writes back with a compare-and-set
script that fails if the field changed meanwhile; it then retries (optimistic, per key). The
blocking ``redis`` client runs in trio worker threads (``abandon_on_cancel=True``) and every
call has a socket timeout. Redis Cluster is not supported (the scope set and the hashes live
in different slots).
"""

from __future__ import annotations

import builtins
import random
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import redis
import redis.exceptions
import structlog
import trio

from storage.errors import StorageClosedError, StorageError, StorageUnavailableError
from storage.kv import SetResult, UpdateResult, decode_value, encode_value
from storage.update_ops import Op, apply_ops, parse_ops

__all__ = ["RedisKV", "connect_redis"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT: Final = 5.0
DEFAULT_SOCKET_TIMEOUT: Final = 10.0
MAX_THREADS: Final = 32
MAX_UPDATE_ATTEMPTS: Final = 100

_SET = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return old
"""

_DELETE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[2], ARGV[2])
  end
end
return old
"""

# ARGV: field, expected ('' when absent), '1' if it must exist, new value, scope
_COMPARE_AND_SET = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
"""


def connect_redis(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    client_name: str | None = None,
) -> redis.Redis:
    """A blocking client with connect and socket timeouts (no I/O yet); ``client_name`` labels
    its connections in ``CLIENT LIST``."""
    return redis.Redis.from_url(
        url,
        client_name=client_name,
        socket_timeout=socket_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=30,
        max_connections=2 * MAX_THREADS,
    )


def _raw(reply: bytes | str | None) -> bytes | None:
    """A stored value as bytes. The client does not decode responses, so Redis hands back bytes;
    redis-py types replies as ``bytes | str`` for clients that do, and a str is encoded back."""
    return reply.encode("utf-8") if isinstance(reply, str) else reply


def _text(reply: bytes | str) -> str:
    """A hash field or set member (a key or scope name) as text."""
    return reply.decode("utf-8") if isinstance(reply, bytes) else reply


def unavailable_message(url: str) -> str:
    return (
        f"Redis connection timed out after {CONNECT_TIMEOUT:g}s. "
        f"Please ensure Redis is running at: {url}"
    )


class RedisKV:
    """``KeyValueStore`` on Redis hashes (layout in the module docstring)."""

    def __init__(self, client: redis.Redis, *, namespace: str, url: str = "") -> None:
        self._client = client
        self._namespace = namespace
        self._url = url
        self._scopes_key = f"{namespace}#scopes"
        self._limiter = trio.CapacityLimiter(MAX_THREADS)
        self._closed = False
        self._set_script = client.register_script(_SET)
        self._delete_script = client.register_script(_DELETE)
        self._cas_script = client.register_script(_COMPARE_AND_SET)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        namespace: str,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> RedisKV:
        """Connect and check the server answers; ``StorageUnavailableError`` if it does not."""
        client = connect_redis(url, socket_timeout=socket_timeout)
        try:
            await trio.to_thread.run_sync(client.ping, abandon_on_cancel=True)
        except redis.exceptions.RedisError as exc:
            client.close()
            raise StorageUnavailableError(f"{unavailable_message(url)} ({exc})") from exc
        return cls(client, namespace=namespace, url=url)

    def hash_key(self, scope: str) -> str:
        return f"{self._namespace}:{scope}"

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StorageClosedError("the key/value store is closed")
        try:
            return await trio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=self._limiter)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StorageUnavailableError(f"Redis at {self._url or '?'}: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise StorageError(f"Redis error: {exc}") from exc

    async def get(self, scope: str, key: str) -> Any | None:
        raw = await self._call(lambda: self._client.hget(self.hash_key(scope), key))
        return decode_value(_raw(raw))

    async def set(self, scope: str, key: str, value: Any) -> SetResult:
        encoded = encode_value(value)
        keys = [self.hash_key(scope), self._scopes_key]
        old = await self._call(lambda: self._set_script(keys=keys, args=[key, encoded, scope]))
        return SetResult(decode_value(old), decode_value(encoded), old is None)

    async def delete(self, scope: str, key: str) -> Any | None:
        keys = [self.hash_key(scope), self._scopes_key]
        old = await self._call(lambda: self._delete_script(keys=keys, args=[key, scope]))
        return decode_value(old)

    async def update(self, scope: str, key: str, ops: Any) -> UpdateResult:
        parsed = parse_ops(ops)
        old, encoded, errors = await self._call(lambda: self._update_sync(scope, key, parsed))
        return UpdateResult(
            old_value=decode_value(old),
            new_value=decode_value(encoded),
            errors=errors,
            created=old is None,
        )

    def _update_sync(
        self, scope: str, key: str, ops: builtins.list[Op]
    ) -> tuple[bytes | None, bytes, builtins.list[dict[str, Any]]]:
        keys = [self.hash_key(scope), self._scopes_key]
        for attempt in range(MAX_UPDATE_ATTEMPTS):
            old = _raw(self._client.hget(keys[0], key))
            new_value, errors = apply_ops(decode_value(old), exists=old is not None, ops=ops)
            encoded = encode_value(new_value)
            expected = [old or b"", b"1" if old is not None else b"0"]
            if self._cas_script(keys=keys, args=[key, *expected, encoded, scope]):
                return old, encoded, errors
            time.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))
        raise StorageUnavailableError(
            f"update of {scope!r}/{key!r} gave up after {MAX_UPDATE_ATTEMPTS} conflicting writes"
        )

    async def list(self, scope: str) -> builtins.list[Any]:
        raws = await self._call(lambda: self._client.hvals(self.hash_key(scope)))
        return [decode_value(_raw(raw)) for raw in raws]

    async def list_keys(self, scope: str) -> builtins.list[str]:
        raws = await self._call(lambda: self._client.hkeys(self.hash_key(scope)))
        return [_text(raw) for raw in raws]

    async def list_groups(self) -> builtins.list[str]:
        raws = await self._call(lambda: self._client.smembers(self._scopes_key))
        return sorted(_text(raw) for raw in raws)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await trio.to_thread.run_sync(self._client.close, abandon_on_cancel=True)
