"""Storage adapters behind small interfaces: key/value (memory, file, Redis) and pub/sub.

Actors use ``open_kv`` / ``open_pubsub`` with their upstream ``adapter`` config block.
"""

from storage.kv import (
    KeyValueStore,
    SetResult,
    StorageClosedError,
    StorageConfigError,
    StorageError,
    StorageUnavailableError,
    UpdateResult,
    open_kv,
)
from storage.pubsub import PubSub, Subscription, open_pubsub
from storage.update_ops import InvalidOpsError

__all__ = [
    "InvalidOpsError",
    "KeyValueStore",
    "PubSub",
    "SetResult",
    "StorageClosedError",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailableError",
    "Subscription",
    "UpdateResult",
    "open_kv",
    "open_pubsub",
]
