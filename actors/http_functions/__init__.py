"""The ``iii-http-functions`` actor: functions whose implementation is an external HTTP
endpoint (WORKERS.md §4, PROTOCOL.md §10).

The engine owns the registrations (supervisor/engine/external.py): it asks this actor to
validate each one and then sends every call here with the function's ``invocation``. This
actor keeps no registrations of its own, so a restart loses nothing; it holds the security
settings of its block and one httpx client (trio through anyio) for the outgoing requests.
"""

from __future__ import annotations

import httpx
import structlog

from actors.http_functions.config import BLOCK, parse_config
from actors.http_functions.service import HttpFunctions, connect_pin
from actors.http_functions.wire import one_write_transport
from actors.runtime import ActorContext
from manifests.blocks.http_functions import HttpFunctionsBlock

__all__ = ["BLOCK", "HttpFunctions", "parse_config", "serve"]

log = structlog.get_logger("iii-http-functions")


async def serve(ctx: ActorContext[HttpFunctionsBlock]) -> None:
    """Serve the two functions until asked to stop."""
    security = ctx.block.security
    # No redirects (§10.2); no proxy from the environment, so the host that was validated is
    # the host connected to, and with private IPs blocked only at the public addresses it
    # resolves to when connecting; each request leaves in one write (wire.py); the timeout is
    # applied per call around the whole exchange.
    async with httpx.AsyncClient(
        transport=one_write_transport(pin=connect_pin(security)),
        follow_redirects=False,
        trust_env=False,
        timeout=None,
    ) as client:
        HttpFunctions(security, client).register(ctx.client)
        log.info(
            "http functions ready",
            url_allowlist=list(security.url_allowlist or ("*",)),
            block_private_ips=security.block_private_ips,
            require_https=security.require_https,
        )
        await ctx.stopped()
