"""The ``configuration`` worker (WORKERS.md §2): a schema-validated registry of configuration
entries; ``actors.configuration.actor`` describes it."""

from actors.configuration.actor import serve
from actors.configuration.config import BLOCK, parse_config

__all__ = ["BLOCK", "parse_config", "serve"]
