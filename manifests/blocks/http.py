"""The ``iii-http`` config block (WORKERS.md §3.1): where the server listens, its request limits,
CORS and the middleware every request runs first."""

from __future__ import annotations

from typing import Any, Final

import attrs

from manifests.blocks.strict import I64, NonNegativeInt, Port

__all__ = ["DEFAULTS", "HttpBlock", "HttpCors", "HttpMiddleware"]


@attrs.frozen
class HttpCors:
    """§3.8: an empty (or ``*``) origin list means any origin; no methods means any method."""

    allowed_origins: tuple[str, ...] = ()
    allowed_methods: tuple[str, ...] = ()


@attrs.frozen
class HttpMiddleware:
    function_id: str
    phase: str = "preHandler"  # only preHandler entries run (§3.7); others are kept, unused
    priority: I64 = 0


@attrs.frozen
class HttpBlock:
    port: Port = 3111
    host: str = "0.0.0.0"
    default_timeout: NonNegativeInt = 30000  # ms, the whole request
    concurrency_request_limit: NonNegativeInt = 1024  # a 0 is clamped to 1
    cors: HttpCors | None = None
    middleware: tuple[HttpMiddleware, ...] = ()

    @property
    def timeout_s(self) -> float:
        return self.default_timeout / 1000.0

    @property
    def request_limit(self) -> int:
        """Requests served at once: upstream clamps a configured 0 to 1."""
        return max(1, self.concurrency_request_limit)

    @property
    def pre_handlers(self) -> tuple[HttpMiddleware, ...]:
        """What a request runs first: ``preHandler`` entries by priority (stable for ties)."""
        ordered = sorted(self.middleware, key=lambda m: m.priority)
        return tuple(m for m in ordered if m.phase == "preHandler")


# The block a worker runs with when config.yaml gives none.
DEFAULTS: Final[dict[str, Any]] = {"host": "0.0.0.0", "port": 3111}
