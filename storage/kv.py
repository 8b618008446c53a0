"""The key/value store interface shared by the state, stream, queue and cron actors.

``open_kv`` reads an upstream adapter block (WORKERS.md §1.8, §5.1) and opens the adapter.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

import attrs
import orjson
import structlog

__all__ = [
    "DEFAULT_FILE_PATH",
    "DEFAULT_REDIS_URL",
    "DEFAULT_SAVE_INTERVAL_MS",
    "IN_MEMORY_WARNING",
    "KeyValueStore",
    "SetResult",
    "StorageClosedError",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailableError",
    "UpdateResult",
    "decode_value",
    "encode_value",
    "open_kv",
    "save_interval_seconds",
]

log = structlog.get_logger(__name__)

IN_MEMORY_WARNING: Final = (
    "DO NOT USE IN_MEMORY STORE_METHOD IN PRODUCTION - DATA WILL BE LOST ON SHUTDOWN"
)
DEFAULT_FILE_PATH: Final = "kv_store_data.db"
DEFAULT_SAVE_INTERVAL_MS: Final = 5000
MIN_SAVE_INTERVAL_MS: Final = 100
DEFAULT_REDIS_URL: Final = "redis://localhost:6379"
FSYNC_MODES: Final = ("always", "interval", "never")

_LOCAL_ADAPTERS: Final = frozenset({"kv", "builtin"})
_LOCAL_KEYS: Final = frozenset({"store_method", "file_path", "save_interval_ms", "fsync"})
_REDIS_KEYS: Final = frozenset({"redis_url"})


class StorageError(Exception):
    """Base class of storage failures (the actors report them as ``*_ERROR``)."""


class StorageConfigError(StorageError, ValueError):
    """An adapter block that cannot be used; the message names the offending field."""


class StorageUnavailableError(StorageError):
    """The backend cannot be reached (Redis down, disk unwritable, ...)."""


class StorageClosedError(StorageError):
    """The store was used after ``aclose()``."""


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


def save_interval_seconds(raw: Any) -> float:
    """§1.8: 0/invalid → the default (5000 ms); values below 100 ms are raised to 100 ms."""
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        if raw is not None:
            log.warning("kv.save_interval_invalid", value=raw, using=DEFAULT_SAVE_INTERVAL_MS)
        return DEFAULT_SAVE_INTERVAL_MS / 1000
    return max(raw, MIN_SAVE_INTERVAL_MS) / 1000


def resolve_path(raw: str, data_dir: Path) -> Path:
    """``~`` expanded; a relative path is taken relative to ``data_dir``."""
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else data_dir / path


def _check_keys(adapter: str, config: dict[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise StorageConfigError(
            f"adapter {adapter!r}: unknown field(s) {', '.join(unknown)} "
            f"(expected: {', '.join(sorted(allowed)) or 'none'})"
        )


def _split_adapter(adapter: dict[str, Any] | None, default: str) -> tuple[str, dict[str, Any]]:
    if adapter is None:
        return default, {}
    if not isinstance(adapter, dict):
        raise StorageConfigError(f"adapter: expected an object, got {type(adapter).__name__}")
    _check_keys("adapter", adapter, ("name", "config"))
    name = adapter.get("name", default)
    if not isinstance(name, str):
        raise StorageConfigError("adapter.name: expected a string")
    config = adapter.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise StorageConfigError(f"adapter.config: expected an object for adapter {name!r}")
    return name, config


@asynccontextmanager
async def open_kv(
    adapter: dict[str, Any] | None,
    *,
    data_dir: Path,
    name: str,
    extra_keys: Iterable[str] = (),
) -> AsyncIterator[KeyValueStore]:
    """Open the store described by an upstream adapter block and close it on exit.

    ``adapter`` is ``{"name": "kv"|"builtin"|"redis", "config": {...}}`` or ``None`` (in-memory
    kv). ``data_dir`` anchors a relative ``file_path``; ``name`` labels logs and is the Redis
    key namespace (``state`` → hashes ``state:<scope>``). ``extra_keys`` are further config
    keys the caller consumes itself (e.g. the stream adapter's ``channel_size``); they are
    accepted and ignored here. Unknown keys are a ``StorageConfigError``.
    """
    kind, config = _split_adapter(adapter, "kv")
    extra = frozenset(extra_keys)
    if kind in _LOCAL_ADAPTERS:
        _check_keys(kind, config, _LOCAL_KEYS | extra)
        async with _open_local(config, data_dir=data_dir, name=name) as store:
            yield store
    elif kind == "redis":
        _check_keys(kind, config, _REDIS_KEYS | extra)
        from storage.redis_kv import RedisKV

        url = config.get("redis_url") or DEFAULT_REDIS_URL
        if not isinstance(url, str):
            raise StorageConfigError("adapter.config.redis_url: expected a string")
        store = await RedisKV.connect(url, namespace=name)
        try:
            yield store
        finally:
            await store.aclose()
    elif kind == "bridge":
        raise StorageConfigError(
            "adapter 'bridge' forwards calls to a remote engine; the actor implements it, "
            "not the storage layer"
        )
    else:
        raise StorageConfigError(f"adapter.name: unknown adapter {kind!r} (expected kv or redis)")


@asynccontextmanager
async def _open_local(
    config: dict[str, Any], *, data_dir: Path, name: str
) -> AsyncIterator[KeyValueStore]:
    method = config.get("store_method", "in_memory")
    if method not in ("in_memory", "file_based"):
        log.warning("kv.unknown_store_method", store=name, store_method=method, using="in_memory")
        method = "in_memory"
    if method == "in_memory":
        from storage.memory import MemoryKV

        log.warning(IN_MEMORY_WARNING, store=name)
        store = MemoryKV()
        try:
            yield store
        finally:
            await store.aclose()
        return

    from storage.filelog import open_file_kv

    raw_path = config.get("file_path") or DEFAULT_FILE_PATH
    if not isinstance(raw_path, str):
        raise StorageConfigError("adapter.config.file_path: expected a string")
    fsync = config.get("fsync", "interval")
    if fsync not in FSYNC_MODES:
        raise StorageConfigError(
            f"adapter.config.fsync: expected one of {', '.join(FSYNC_MODES)}, got {fsync!r}"
        )
    path = resolve_path(raw_path, data_dir)
    async with open_file_kv(
        path,
        fsync=fsync,
        save_interval=save_interval_seconds(config.get("save_interval_ms")),
        name=name,
    ) as store:
        yield store
