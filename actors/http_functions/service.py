"""The ``iii-http-functions`` actor's two functions (WORKERS.md §4, PROTOCOL.md §10).

``iii-http-functions::register`` validates one registration for the engine: the ``invocation``
parses, its URL passes the security settings (a lookup included), its auth's environment
variable is set. ``iii-http-functions::invoke`` makes one call: it validates the URL again
(``url_validation_failed``), builds the request (JSON body, iii headers, configured headers,
auth), sends it with httpx under trio, no redirects followed, within ``timeout_ms`` (capped at
60 s) for the whole exchange, and maps the reply (§10.3).

Both are the engine's: a call that carries ``_caller_worker_id`` (which the engine adds to every
call a worker makes) is refused with ``FORBIDDEN``, so a worker cannot make the engine send a
request, or a secret, that no registration validated. Both are marked internal (hidden from
``engine::functions::list`` by default).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
import structlog
import trio

from actors.http_functions.invocation import (
    Invocation,
    InvocationRejected,
    parse_invocation,
    resolve_auth,
)
from actors.http_functions.outbound import (
    HTTP_REQUEST_FAILED,
    HTTP_RESPONSE_FAILED,
    Request,
    build_request,
    cause_chain,
    map_response,
)
from actors.http_functions.urls import (
    URL_VALIDATION_FAILED,
    UrlRejected,
    connect_addresses,
    validate_url,
)
from actors.http_functions.wire import AddressRefused, Pin
from actors.runtime import Payload
from manifests.blocks.http_functions import (
    INVOKE_FUNCTION_ID,
    REGISTER_FUNCTION_ID,
    SecurityConfig,
)
from transport.client import BusClient, FunctionError, InvocationContext

__all__ = ["MAX_RESPONSE_BYTES", "HttpFunctions", "connect_pin", "resolve_host"]

log = structlog.get_logger("iii-http-functions")

CALLER_KEY: Final = "_caller_worker_id"
INVALID_INVOCATION: Final = "invalid_invocation"
MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024  # the largest message the bus carries


async def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (looked up on port 443, as upstream)."""
    infos = await trio.socket.getaddrinfo(host, 443, type=trio.socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def connect_pin(
    security: SecurityConfig, resolve: Callable[[str], Any] = resolve_host
) -> Pin | None:
    """With private addresses blocked, connections go only to the public addresses the host
    resolves to when the connection is made (no DNS rebinding between check and connect)."""
    if not security.block_private_ips:
        return None

    async def pin(host: str, port: int) -> list[str]:
        try:
            return await connect_addresses(host, resolve)
        except UrlRejected as exc:
            raise AddressRefused(exc.message) from None

    return pin


def _refusal(exc: BaseException) -> str | None:
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, AddressRefused):
            return str(current)
        current = current.__cause__ or current.__context__
    return None


class HttpFunctions:
    def __init__(
        self,
        security: SecurityConfig,
        client: httpx.AsyncClient,
        *,
        env: Mapping[str, str] = os.environ,
        resolve: Callable[[str], Any] = resolve_host,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.security = security
        self.client = client
        self.env = env
        self.resolve = resolve
        self.clock = clock

    def register(self, bus: BusClient) -> None:
        internal = {"internal": True}
        bus.register_function(
            REGISTER_FUNCTION_ID,
            self.validate,
            description="Validate an HTTP-invoked function's registration (engine only)",
            metadata=internal,
        )
        bus.register_function(
            INVOKE_FUNCTION_ID,
            self.invoke,
            description="Call an HTTP-invoked function's endpoint (engine only)",
            metadata=internal,
        )

    # -- the engine's input ------------------------------------------------------------------

    def _input(self, function_id: str, data: Any) -> tuple[Payload, str, Invocation]:
        p = Payload(function_id, data)
        if CALLER_KEY in p.data:
            raise FunctionError(
                "FORBIDDEN", f"{function_id} is called by the engine only, not by workers"
            )
        target = p.str("function_id")
        try:
            invocation = parse_invocation(p.data.get("invocation"))
        except InvocationRejected as exc:
            raise FunctionError(INVALID_INVOCATION, f"{target}: {exc.message}") from None
        return p, target, invocation

    async def _check_url(self, target: str, invocation: Invocation) -> None:
        try:
            await validate_url(invocation.url, self.security, self.resolve)
        except UrlRejected as exc:
            raise FunctionError(URL_VALIDATION_FAILED, exc.message) from None

    # -- the functions -------------------------------------------------------------------------

    async def validate(self, data: Any, ctx: InvocationContext) -> dict[str, Any]:
        _, target, invocation = self._input(REGISTER_FUNCTION_ID, data)
        await self._check_url(target, invocation)
        try:
            resolve_auth(invocation.auth, self.env)
        except InvocationRejected as exc:
            raise FunctionError(INVALID_INVOCATION, f"{target}: {exc.message}") from None
        return {"function_id": target, "url": invocation.url, "method": invocation.method}

    async def invoke(self, data: Any, ctx: InvocationContext) -> Any:
        p, target, invocation = self._input(INVOKE_FUNCTION_ID, data)
        await self._check_url(target, invocation)
        try:
            credentials = resolve_auth(invocation.auth, self.env)
        except InvocationRejected as exc:
            raise FunctionError(HTTP_REQUEST_FAILED, f"{target}: {exc.message}") from None
        request = build_request(
            target,
            invocation,
            p.data.get("data"),
            credentials,
            timestamp=int(self.clock()),
            request_id=str(uuid.uuid4()),
        )
        seconds = invocation.timeout_ms / 1000
        with trio.move_on_after(seconds) as scope:
            status, reason, body = await self._send(request)
        if scope.cancelled_caught:
            raise FunctionError(
                HTTP_REQUEST_FAILED,
                f"HTTP request to {request.url} failed: timed out after {invocation.timeout_ms} ms",
            )
        outcome = map_response(status, reason, body)
        if outcome.code is not None:
            raise FunctionError(outcome.code, outcome.message or outcome.code)
        return outcome.result

    async def _send(self, request: Request) -> tuple[int, str, bytes]:
        url = request.url
        built = self.client.build_request(
            request.method, url, headers=list(request.headers), content=request.body
        )
        try:
            response = await self.client.send(built, stream=True)
        except httpx.HTTPError as exc:
            refused = _refusal(exc)
            if refused is not None:
                raise FunctionError(URL_VALIDATION_FAILED, refused) from None
            raise FunctionError(
                HTTP_REQUEST_FAILED, f"HTTP request to {url} failed: {cause_chain(exc)}"
            ) from None
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise FunctionError(
                        HTTP_RESPONSE_FAILED,
                        f"Response of {url} is larger than {MAX_RESPONSE_BYTES} bytes",
                    )
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise FunctionError(
                HTTP_RESPONSE_FAILED, f"Failed to read the response of {url}: {cause_chain(exc)}"
            ) from None
        finally:
            await response.aclose()
        return response.status_code, response.reason_phrase, b"".join(chunks)
