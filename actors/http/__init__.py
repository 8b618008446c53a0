"""The ``iii-http`` actor (WORKERS.md §3): ``http`` triggers served on port 3111."""

from actors.http.config import BLOCK, parse_config
from actors.http.server import serve

__all__ = ["BLOCK", "parse_config", "serve"]
