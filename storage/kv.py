"""The key/value store interface shared by the state, stream, queue and cron actors.

The adapters (memory, filelog, redis_kv) implement it; ``storage.factory.open_kv`` opens one.
"""

from __future__ import annotations

import builtins
from typing import Any, NamedTuple, Protocol, runtime_checkable

import attrs
import orjson

from storage.errors import StorageError

__all__ = ["KeyValueStore", "SetResult", "UpdateResult", "decode_value", "encode_value"]


class SetResult(NamedTuple):
    """Outcome of ``set``: ``created`` is true when the key did not exist before."""

    old_value: Any
    new_value: Any
    created: bool


@attrs.frozen
class UpdateResult:
    """Outcome of ``update`` (§1.9); ``created`` is true when the key did not exist before."""

    old_value: Any
    new_value: Any
    errors: list[dict[str, Any]] = attrs.field(factory=list)
    created: bool = False

    def to_json(self) -> dict[str, Any]:
        """The wire result: ``errors`` only when non-empty (§1.9, [compat])."""
        out: dict[str, Any] = {"old_value": self.old_value, "new_value": self.new_value}
        if self.errors:
            out["errors"] = list(self.errors)
        return out


@runtime_checkable
class KeyValueStore(Protocol):
    """Scoped JSON key/value store. Values are JSON values; a scope is a string namespace.

    Every method is safe to call concurrently from several trio tasks. Returned values are
    private copies: mutating them never changes the store.
    """

    async def get(self, scope: str, key: str) -> Any | None:
        """The stored value, or ``None`` when absent."""
        ...

    async def set(self, scope: str, key: str, value: Any) -> SetResult:
        """Store ``value``; returns the previous value (``None`` if absent) and the new one."""
        ...

    async def delete(self, scope: str, key: str) -> Any | None:
        """Remove the key; returns the removed value, or ``None`` if there was none."""
        ...

    async def update(self, scope: str, key: str, ops: Any) -> UpdateResult:
        """Apply §1.9 ``ops`` atomically to one key; raises ``InvalidOpsError`` on a bad shape."""
        ...

    async def list(self, scope: str) -> builtins.list[Any]:
        """All values of ``scope`` (insertion order for local stores); ``[]`` if unknown."""
        ...

    async def list_keys(self, scope: str) -> builtins.list[str]:
        """All keys of ``scope``, in the same order as ``list``."""
        ...

    async def list_groups(self) -> builtins.list[str]:
        """Sorted names of the scopes holding at least one key."""
        ...

    async def aclose(self) -> None:
        """Flush what must be flushed and release resources. Idempotent."""
        ...


def encode_value(value: Any) -> bytes:
    """Compact JSON bytes of ``value`` (the stored form in every adapter)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise StorageError(f"value is not JSON-serialisable: {exc}") from exc


def decode_value(raw: bytes | None) -> Any | None:
    """A fresh Python value from stored bytes; ``None`` for an absent value."""
    return None if raw is None else orjson.loads(raw)
