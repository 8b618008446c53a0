"""The skeleton every actor shares: read its block, connect to the bus, open its store, adopt its
settings from the configuration worker, serve, and stop cleanly on a signal or a storage error.

Also the helpers several actors' functions use: payload checks and event-style trigger fan-out.
An actor is then its config parsing (manifests.blocks), its functions and its trigger types.
"""

from actors.runtime.adoption import ConfigAdoption
from actors.runtime.exits import EXIT_CANTCREAT, EXIT_CONFIG, EXIT_UNAVAILABLE, ActorExit
from actors.runtime.fanout import EventFanout
from actors.runtime.payload import DESERIALIZATION_ERROR, Payload
from actors.runtime.process import ActorContext, load_actor_config, main
from actors.runtime.stores import kv_backend, pubsub_backend, resolve_path

__all__ = [
    "DESERIALIZATION_ERROR",
    "EXIT_CANTCREAT",
    "EXIT_CONFIG",
    "EXIT_UNAVAILABLE",
    "ActorContext",
    "ActorExit",
    "ConfigAdoption",
    "EventFanout",
    "Payload",
    "kv_backend",
    "load_actor_config",
    "main",
    "pubsub_backend",
    "resolve_path",
]
