"""One schema per built-in config block (attrs classes, one strict cattrs converter).

The supervisor validates a worker's ``config:`` block with it before anything starts; the actor
parses its block with the same class. One definition, two readers (DESIGN.md).
"""

from manifests.blocks.adapters import (
    BridgeAdapter,
    FsAdapter,
    KvAdapter,
    KvStoreConfig,
    LocalAdapter,
    RedisAdapter,
)
from manifests.blocks.configuration import ConfigurationBlock
from manifests.blocks.http import HttpBlock, HttpCors, HttpMiddleware
from manifests.blocks.jsonschema import json_schema
from manifests.blocks.observability import ObservabilityBlock
from manifests.blocks.pubsub import PubSubBlock
from manifests.blocks.state import StateBlock
from manifests.blocks.strict import BlockError, Issue, parse, validate
from manifests.blocks.worker_manager import ListenerBlock, RbacBlock

__all__ = [
    "BlockError",
    "BridgeAdapter",
    "ConfigurationBlock",
    "FsAdapter",
    "HttpBlock",
    "HttpCors",
    "HttpMiddleware",
    "Issue",
    "KvAdapter",
    "KvStoreConfig",
    "ListenerBlock",
    "LocalAdapter",
    "ObservabilityBlock",
    "PubSubBlock",
    "RbacBlock",
    "RedisAdapter",
    "StateBlock",
    "json_schema",
    "parse",
    "validate",
]
