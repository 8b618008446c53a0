"""In-memory key/value store: the reference implementation the other adapters are tested against.

Values are held as compact JSON bytes, so every read returns a private copy and a snapshot of the
index is a cheap shallow copy. ``FileKV`` extends it with a write-ahead log via two hooks.
"""

from __future__ import annotations

import builtins
from typing import Any

import trio

from storage.errors import StorageClosedError
from storage.kv import SetResult, UpdateResult, decode_value, encode_value
from storage.update_ops import apply_ops, parse_ops

__all__ = ["MemoryKV"]


class MemoryKV:
    """``KeyValueStore`` over ``dict[scope, dict[key, json bytes]]`` (insertion-ordered).

    Writers are serialised by one ``trio.Lock``; readers never wait. A scope disappears as soon
    as its last key is deleted (WORKERS.md §16 item 21), so ``list_groups`` never shows it.
    """

    def __init__(self) -> None:
        self._data: dict[str, dict[str, bytes]] = {}
        self._lock = trio.Lock()
        self._closed = False

    # Persistence hooks: called under the write lock, before memory changes. A hook that
    # raises leaves memory untouched, so the caller's error means "not written".
    async def _persist_set(self, scope: str, key: str, encoded: bytes) -> None:
        pass

    async def _persist_delete(self, scope: str, key: str) -> None:
        pass

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError("the key/value store is closed")

    def _stored(self, scope: str, key: str) -> bytes | None:
        return self._data.get(scope, {}).get(key)

    def _put(self, scope: str, key: str, encoded: bytes) -> None:
        items = self._data.get(scope)
        if items is None:
            items = self._data[scope] = {}
        items[key] = encoded

    def _drop(self, scope: str, key: str) -> None:
        items = self._data.get(scope)
        if items is not None and items.pop(key, None) is not None and not items:
            del self._data[scope]

    async def get(self, scope: str, key: str) -> Any | None:
        await trio.lowlevel.checkpoint()
        self._check_open()
        return decode_value(self._stored(scope, key))

    async def set(self, scope: str, key: str, value: Any) -> SetResult:
        encoded = encode_value(value)
        async with self._lock:
            self._check_open()
            old = self._stored(scope, key)
            await self._persist_set(scope, key, encoded)
            self._put(scope, key, encoded)
        return SetResult(decode_value(old), decode_value(encoded), old is None)

    async def delete(self, scope: str, key: str) -> Any | None:
        async with self._lock:
            self._check_open()
            old = self._stored(scope, key)
            if old is None:
                return None
            await self._persist_delete(scope, key)
            self._drop(scope, key)
        return decode_value(old)

    async def update(self, scope: str, key: str, ops: Any) -> UpdateResult:
        parsed = parse_ops(ops)
        async with self._lock:
            self._check_open()
            old = self._stored(scope, key)
            new_value, errors = apply_ops(decode_value(old), exists=old is not None, ops=parsed)
            encoded = encode_value(new_value)
            await self._persist_set(scope, key, encoded)
            self._put(scope, key, encoded)
        return UpdateResult(
            old_value=decode_value(old),
            new_value=decode_value(encoded),
            errors=errors,
            created=old is None,
        )

    async def list(self, scope: str) -> builtins.list[Any]:
        await trio.lowlevel.checkpoint()
        self._check_open()
        return [decode_value(raw) for raw in builtins.list(self._data.get(scope, {}).values())]

    async def list_keys(self, scope: str) -> builtins.list[str]:
        await trio.lowlevel.checkpoint()
        self._check_open()
        return builtins.list(self._data.get(scope, {}))

    async def list_groups(self) -> builtins.list[str]:
        await trio.lowlevel.checkpoint()
        self._check_open()
        return sorted(self._data)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self._closed = True
