"""Storage adapters behind small interfaces: key/value (memory, file, Redis) and pub/sub.

Actors describe a backend (``InMemory``, ``FileBased``, ``RedisServer``) and open it with
``open_kv`` / ``open_pubsub``; the config blocks that choose one are read in ``actors``.
"""

from storage.errors import StorageClosedError, StorageError, StorageUnavailableError
from storage.factory import (
    FileBased,
    InMemory,
    KvBackend,
    PubSubBackend,
    RedisServer,
    open_kv,
    open_pubsub,
)
from storage.kv import KeyValueStore, SetResult, UpdateResult
from storage.pubsub import PubSub, Subscription
from storage.update_ops import InvalidOpsError

__all__ = [
    "FileBased",
    "InMemory",
    "InvalidOpsError",
    "KeyValueStore",
    "KvBackend",
    "PubSub",
    "PubSubBackend",
    "RedisServer",
    "SetResult",
    "StorageClosedError",
    "StorageError",
    "StorageUnavailableError",
    "Subscription",
    "UpdateResult",
    "open_kv",
    "open_pubsub",
]
