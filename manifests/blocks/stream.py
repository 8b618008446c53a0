"""The ``iii-stream`` config block (WORKERS.md §6.1): where the stream WebSocket listens, the
function called on each upgrade, and the storage + event adapter (fixed for the life of the
process: a change is logged and applied at the next start)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import attrs

from manifests.blocks.adapters import BridgeAdapter, KvAdapter, KvStoreConfig, RedisAdapter
from manifests.blocks.strict import IntRange, Port

__all__ = ["DEFAULTS", "StreamAdapter", "StreamBlock", "StreamKvAdapter", "StreamKvConfig"]

ChannelSize = Annotated[int, IntRange(1, 1_048_576)]


@attrs.frozen
class StreamKvConfig(KvStoreConfig):
    """§1.8 keys plus ``channel_size``: how many events a slow subscriber may fall behind."""

    channel_size: ChannelSize = 256


@attrs.frozen
class StreamKvAdapter:
    name: Literal["kv"] = "kv"
    config: StreamKvConfig | None = None

    @property
    def settings(self) -> StreamKvConfig:
        return self.config or StreamKvConfig()


StreamAdapter = StreamKvAdapter | RedisAdapter | BridgeAdapter


@attrs.frozen
class StreamBlock:
    port: Port = 3112
    host: str = "0.0.0.0"
    auth_function: str | None = None
    adapter: StreamAdapter | None = None

    def store_adapter(self) -> KvAdapter | RedisAdapter | BridgeAdapter:
        """The key/value adapter to open (no adapter: the in-memory kv store)."""
        adapter = self.adapter or StreamKvAdapter()
        if isinstance(adapter, StreamKvAdapter):
            s = adapter.settings
            return KvAdapter(
                config=KvStoreConfig(
                    store_method=s.store_method,
                    file_path=s.file_path,
                    save_interval_ms=s.save_interval_ms,
                    fsync=s.fsync,
                )
            )
        if isinstance(adapter, RedisAdapter):
            return attrs.evolve(adapter, config=adapter.settings)
        return adapter

    @property
    def channel_size(self) -> int:
        adapter = self.adapter
        return adapter.settings.channel_size if isinstance(adapter, StreamKvAdapter) else 256


DEFAULTS: Final[dict[str, Any]] = {
    "host": "0.0.0.0",
    "port": 3112,
    "adapter": {"name": "kv", "config": {"store_method": "in_memory"}},
}
