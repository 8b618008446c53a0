"""The ``iii-http`` actor: ``http`` trigger bindings become routes served over HTTP/1.1
(``actors/http/h1.py``: h11 on trio sockets).

One request (WORKERS.md §3): concurrency limit → whole-request timeout → CORS → route
match (404 / 405) → global middleware → condition → per-route middleware → handler call,
raced against the ``response`` channel (§3.6). Replies the engine builds itself are JSON.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
import trio

from actors.http import response as R
from actors.http import tracing
from actors.http.channels import (
    BodyFeeder,
    ChannelPool,
    ChannelReleaser,
    Ref,
    ResponseStream,
    channel_url,
    engine_base_url,
    open_response,
)
from actors.http.cors import CorsPolicy, origin_of
from actors.http.h1 import ClientGone, HttpServer, Outgoing, Request, Streamed
from actors.http.request import (
    base_payload,
    handler_payload,
    header_map,
    is_json_request,
    middleware_input,
    parse_json_body,
    query_params,
)
from actors.http.routes import (
    SUPPORTED_METHODS,
    Match,
    MethodNotAllowed,
    Route,
    RouteTable,
    route_from_trigger,
)
from actors.runtime import ActorContext
from manifests.blocks.http import HttpBlock
from transport.client import BusClient, FunctionError, TriggerBinding

log = structlog.get_logger("iii-http")
_DEBUG = os.environ.get("III_LOG_LEVEL", "").lower() == "debug"

# When to attach our sides of a request's channels (a WebSocket each to the engine, so not
# for every request): at once for a body the handler can only read from ``request_body``;
# when the handler returns no result (its reply comes through ``response``); when it is
# still running after ATTACH_FACTOR × the usual handler time (at least ATTACH_MIN), since it
# may be waiting on ``request_body`` or streaming into ``response``. A route whose handler
# answered through ``response`` is attached at once for its next EAGER_REQUESTS requests.
ATTACH_MIN = 0.1
ATTACH_MAX = 2.0
ATTACH_FACTOR = 4.0
EAGER_REQUESTS = 50
LATENCY_WEIGHT = 0.05  # EWMA weight of one handler call
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "baggage",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-access-token",
        "x-secret",
        "x-csrf-token",
        "proxy-authorization",
    }
)


def redact(headers: dict[str, str]) -> dict[str, str]:
    """Headers safe to log (handlers always get them unredacted)."""
    return {k: ("[redacted]" if k in SENSITIVE_HEADERS else v) for k, v in headers.items()}


_NO_BODY = frozenset({204, 304})  # statuses that never carry a body


class _Phase:
    """Where a request is, for the timeout's choice of reply."""

    __slots__ = ("middleware",)

    def __init__(self) -> None:
        self.middleware = False


class _Exchange:
    """One handler call and its two channels (§3.3, §3.6).

    Everything socket-related is created on demand: most exchanges end with a handler value
    and never attach to their channels.
    """

    __slots__ = (
        "actor",
        "body_ref",
        "response_ref",
        "data",
        "source",
        "feeder",
        "started",
        "activated",
        "invoke_scope",
        "watch_scope",
        "stream",
        "decided",
        "handed_over",
    )

    def __init__(
        self,
        actor: HttpActor,
        body_ref: Ref,
        response_ref: Ref,
        data: bytes | None,
        source: Any,
    ) -> None:
        self.actor = actor
        self.body_ref = body_ref  # the writer side of ``request_body``
        self.response_ref = response_ref  # the reader side of ``response``
        self.data = data
        self.source = source
        self.feeder: BodyFeeder | None = None
        self.started = trio.current_time()
        self.activated = False
        self.invoke_scope: trio.CancelScope | None = None
        self.watch_scope: trio.CancelScope | None = None
        self.stream: ResponseStream | None = None
        self.decided: trio.Event | None = None
        self.handed_over = False

    def feed_body(self) -> None:
        """Attach the ``request_body`` writer side and send the body into it."""
        if self.feeder is not None:
            return
        actor = self.actor
        self.feeder = BodyFeeder(
            channel_url(actor.base_url, self.body_ref, "write"), data=self.data, source=self.source
        )
        actor.bg.start_soon(self.feeder.run, actor.bg)

    def activate(self) -> None:
        """Attach both sides: feed ``request_body``, watch ``response`` for a streamed reply."""
        if self.activated:
            return
        self.activated = True
        self.watch_scope = trio.CancelScope()
        self.decided = trio.Event()
        self.feed_body()
        self.actor.bg.start_soon(self._watch, self.watch_scope, self.decided)

    async def _watch(self, scope: trio.CancelScope, decided: trio.Event) -> None:
        stream: ResponseStream | None = None
        url = channel_url(self.actor.base_url, self.response_ref, "read")
        try:
            with scope:
                stream = await open_response(self.actor.bg, url)
                await stream.read_head()
                self.stream = stream
                decided.set()
                if self.invoke_scope is not None:
                    self.invoke_scope.cancel()  # the channel answered first (mode B)
        except Exception as exc:  # the engine refused the socket, or it dropped
            log.warning("response channel failed", error=repr(exc))
            decided.set()
        finally:
            if stream is not None and self.stream is None:
                await stream.aclose()

    def close(self) -> None:
        """The exchange is over: release the channels and whatever is attached to them."""
        actor = self.actor
        actor.releaser.release(self.body_ref, self.response_ref)
        if self.feeder is not None:
            self.feeder.cancel()
        if self.watch_scope is not None:
            self.watch_scope.cancel()
        stream, self.stream = self.stream, None
        if stream is not None and not self.handed_over:
            actor.bg.start_soon(stream.aclose)


class HttpActor:
    def __init__(self, client: BusClient, settings: HttpBlock) -> None:
        self.client = client
        self.settings = settings
        self.cors = CorsPolicy(settings.cors)
        self.limiter = trio.CapacityLimiter(settings.request_limit)
        self.routes = RouteTable()
        self.trigger_keys: dict[str, str] = {}
        self.pool = ChannelPool(client)
        self.releaser = ChannelReleaser(client)
        self.base_url = engine_base_url()
        self.bg: trio.Nursery
        self._pending: dict[int, _Exchange] = {}  # started order: oldest first
        self._pending_wake = trio.Event()
        self._latency = 0.005  # EWMA of handler calls that returned a value, seconds
        self._eager: dict[str, int] = {}  # route key → requests left to attach at once

    def attach_delay(self) -> float:
        return min(ATTACH_MAX, max(ATTACH_MIN, ATTACH_FACTOR * self._latency))

    # -- trigger bindings ------------------------------------------------------------------

    async def on_register(self, binding: TriggerBinding) -> None:
        route = route_from_trigger(
            binding.id,
            binding.function_id,
            binding.config,
            namespace=binding.namespace,
            metadata=binding.metadata,
        )
        if not route.routable:
            log.warning(
                "http trigger accepted but never routed: unsupported method",
                method=route.method,
                path=route.api_path,
            )
            return
        self.routes.add(route)  # RouteConflict refuses the binding
        self.trigger_keys[binding.id] = route.key
        log.info("route added", route=route.display, function_id=route.function_id)

    async def on_unregister(self, binding: TriggerBinding) -> None:
        key = self.trigger_keys.pop(binding.id, None)
        if key is not None and self.routes.remove(binding.id, key):
            log.info("route removed", key=key)

    # -- the app -----------------------------------------------------------------------------

    async def view(self, req: Request) -> Outgoing:
        """Every request: CORS pre-flight, the concurrency limit, the whole-request timeout."""
        method = req.method
        raw_headers = req.headers
        tracing.enter(raw_headers)
        cors = self.cors
        origin = None if cors.any_origin else origin_of(raw_headers)
        if method == "OPTIONS" and cors.is_preflight(method, raw_headers):
            return R.Reply(200, cors.preflight_headers(origin))
        out: Outgoing | None = None
        phase = _Phase()
        async with self.limiter:
            with trio.move_on_at(trio.current_time() + self.settings.timeout_s):
                try:
                    out = await self.dispatch(req, method, raw_headers, phase)
                except ClientGone:
                    raise
                except Exception:
                    eid = R.error_id()
                    log.exception("request failed", error_id=eid, method=method)
                    out = R.internal_error(eid)
        if out is None:
            # The whole-request timeout; a middleware still running gets its own envelope.
            out = R.middleware_timeout() if phase.middleware else R.gateway_timeout()
        out.headers.extend(cors.response_headers(origin))
        if isinstance(out, R.Reply) and method == "HEAD":
            # The headers a GET would get, without the body (the server sends none).
            if out.body and out.status not in _NO_BODY:
                out.headers.append(("content-length", str(len(out.body))))
            out.body = b""
        if _DEBUG:
            status = getattr(out, "status", None)
            path = req.raw_path.decode("latin-1")
            log.debug("request served", method=method, path=path, status=status)
        return out

    async def dispatch(
        self,
        req: Request,
        method: str,
        raw_headers: list[tuple[bytes, bytes]],
        phase: _Phase,
    ) -> Outgoing:
        found = self.routes.match(method, req.raw_path.decode("latin-1"))
        if not isinstance(found, Match):
            if isinstance(found, MethodNotAllowed):
                return R.method_not_allowed(found.allowed)
            return R.not_found()
        route = found.route
        path_params = found.path_params
        query = query_params(req.query_string)
        headers = header_map(raw_headers)
        settings = self.settings
        mw_input: dict[str, Any] | None = None
        if settings.pre_handlers:
            mw_input = middleware_input(method, path_params, query, headers)
            phase.middleware = True
            for spec in settings.pre_handlers:
                early = await self._middleware(spec.function_id, route.namespace, mw_input)
                if early is not None:
                    return early
            phase.middleware = False

        channels = await self.pool.take()
        started: list[_Exchange] = []  # the exchange, once the handler call starts
        try:
            return await self._run_route(
                req,
                route,
                method,
                raw_headers,
                path_params,
                query,
                headers,
                phase,
                channels,
                started,
            )
        finally:
            if not started:  # answered before the handler: the channels were never used
                self.releaser.release(channels[0][0], channels[1][0])

    async def _run_route(
        self,
        req: Request,
        route: Route,
        method: str,
        raw_headers: list[tuple[bytes, bytes]],
        path_params: dict[str, str],
        query: dict[str, str],
        headers: dict[str, str],
        phase: _Phase,
        channels: tuple[tuple[Ref, Ref], tuple[Ref, Ref]],
        started: list[_Exchange],
    ) -> Outgoing:
        """Condition, per-route middleware and the handler, with the request's channels."""
        (body_reader, body_writer), (resp_reader, resp_writer) = channels
        settings = self.settings
        is_json = is_json_request(raw_headers)
        data: bytes | None = None
        body: Any = None
        if is_json:
            data = await req.read_all()
            body = parse_json_body(data)
        elif not _has_body(raw_headers, req.http_version):
            data = b""
        base = base_payload(route, method, path_params, query, headers, body)

        if route.condition_function_id is not None:
            try:
                verdict = await self.client.invoke(
                    route.condition_function_id,
                    base,
                    namespace=route.namespace,
                    timeout=settings.timeout_s + 1.0,
                )
            except FunctionError as exc:
                eid = R.error_id()
                log.warning("condition failed", error_id=eid, code=exc.code, route=route.display)
                return R.function_error(exc.code, exc.message, eid)
            if verdict is False:
                return R.condition_not_met()

        if route.middleware_function_ids:
            mw_input = middleware_input(method, path_params, query, headers)
            phase.middleware = True
            for function_id in route.middleware_function_ids:
                early = await self._middleware(function_id, route.namespace, mw_input)
                if early is not None:
                    return early
            phase.middleware = False

        payload = handler_payload(base, body_reader, resp_writer)
        exchange = _Exchange(
            self, body_writer, resp_reader, data, None if data is not None else req.chunks()
        )
        started.append(exchange)
        if data is None:  # a body only the channel carries: stream it as it arrives
            exchange.feed_body()
        try:
            return await self._call_handler(route, payload, exchange, method)
        finally:
            if not exchange.handed_over:
                exchange.close()

    async def _middleware(
        self, function_id: str, namespace: str | None, data: dict[str, Any]
    ) -> R.Reply | None:
        """Run one middleware; a reply ends the request, ``None`` continues (§3.4)."""
        result: Any = None
        with trio.move_on_after(self.settings.timeout_s) as scope:
            try:
                result = await self.client.invoke(
                    function_id, data, namespace=namespace, timeout=self.settings.timeout_s + 1.0
                )
            except FunctionError as exc:
                eid = R.error_id()
                log.warning(
                    "middleware failed", error_id=eid, code=exc.code, function_id=function_id
                )
                return R.function_error(exc.code, exc.message, eid)
        if scope.cancelled_caught:
            return R.middleware_timeout()
        if isinstance(result, dict):
            action = result.get("action")
            if action == "continue":
                return None
            if action == "respond":
                return R.from_middleware_respond(result.get("response"))
        log.warning("middleware returned no action; continuing", function_id=function_id)
        return None

    async def _call_handler(
        self, route: Route, payload: dict[str, Any], exchange: _Exchange, method: str
    ) -> Outgoing:
        eager = self._eager.get(route.key)
        key = id(exchange)
        if eager:
            if eager > 1:
                self._eager[route.key] = eager - 1
            else:
                del self._eager[route.key]
            exchange.activate()
        else:
            self._pending[key] = exchange
            if len(self._pending) == 1:
                self._pending_wake.set()
        result: Any = None
        failure: FunctionError | None = None
        try:
            with trio.CancelScope() as invoke_scope:
                exchange.invoke_scope = invoke_scope
                try:
                    result = await self.client.invoke(
                        route.function_id,
                        payload,
                        namespace=route.namespace,
                        metadata=route.metadata,
                        timeout=self.settings.timeout_s + 1.0,
                    )
                except FunctionError as exc:
                    failure = exc
        finally:
            exchange.invoke_scope = None
            self._pending.pop(key, None)
        if exchange.stream is not None and not eager:
            self._eager[route.key] = EAGER_REQUESTS  # it streams: next time, attach at once
        if exchange.stream is None:
            if failure is not None:
                eid = R.error_id()
                log.warning(
                    "handler failed",
                    error_id=eid,
                    code=failure.code,
                    route=route.display,
                    function_id=route.function_id,
                    headers=redact(payload["headers"]),
                )
                return R.function_error(failure.code, failure.message, eid)
            if result is not None:
                if not exchange.activated:
                    took = trio.current_time() - exchange.started
                    self._latency += LATENCY_WEIGHT * (took - self._latency)
                return R.from_handler_result(result)
            # No result: the reply comes through the response channel (§3.6 B).
            if not exchange.activated:
                self._eager[route.key] = EAGER_REQUESTS
            exchange.activate()
            assert exchange.decided is not None
            await exchange.decided.wait()
        stream = exchange.stream
        if stream is None:  # the response channel could not be read
            return R.internal_error()
        head = stream.head
        if stream.closed or method == "HEAD" or head.status in _NO_BODY:
            return R.Reply(head.status, head.header_list())
        exchange.handed_over = True
        return Streamed(head.status, head.header_list(), stream.body(exchange.close))

    async def _attach_late(self) -> None:
        """Attach the channels of exchanges whose handler has outlived the attach delay."""
        pending = self._pending
        while True:
            if not pending:
                self._pending_wake = trio.Event()
                await self._pending_wake.wait()
            delay = self.attach_delay()
            await trio.sleep(delay / 4)
            cutoff = trio.current_time() - delay
            late: list[_Exchange] = []
            for exchange in pending.values():  # oldest first: stop at the first young one
                if exchange.started > cutoff:
                    break
                late.append(exchange)
            for exchange in late:
                del pending[id(exchange)]
                exchange.activate()

    # -- serving -----------------------------------------------------------------------------

    async def run(
        self,
        stop: trio.Event,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until ``stop`` is set, then stop accepting and let requests in flight finish."""
        settings = self.settings
        async with trio.open_nursery() as nursery:
            self.bg = nursery
            nursery.start_soon(self.pool.run)
            nursery.start_soon(self.releaser.run)
            nursery.start_soon(self._attach_late)
            binds = await nursery.start(self._serve_http, settings, stop, nursery.cancel_scope)
            log.info("http server listening", binds=binds)
            task_status.started(binds)

    async def _serve_http(
        self,
        settings: HttpBlock,
        stop: trio.Event,
        everything: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[list[str]],
    ) -> None:
        # The server returns after a graceful stop; without it the actor has nothing to do.
        server = HttpServer(self.view)
        await server.serve(settings.host, settings.port, stop, task_status=task_status)
        log.info("http server stopped")
        everything.cancel()


def _has_body(raw_headers: list[tuple[bytes, bytes]], http_version: str) -> bool:
    """Whether a body follows: HTTP/1.x says so with content-length or transfer-encoding."""
    for name, value in raw_headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() != b"0"
    return http_version.startswith("2") or http_version.startswith("3")


async def serve(ctx: ActorContext[HttpBlock]) -> None:
    """The actor's entry point (``actors.runtime.main``): serves until asked to stop; without
    its server the actor has nothing to do, so a server that ends ends the actor too."""
    actor = HttpActor(ctx.client, ctx.block)
    ctx.client.register_trigger_type(
        "http",
        "HTTP API trigger",
        on_register=actor.on_register,
        on_unregister=actor.on_unregister,
    )
    await actor.run(ctx.stopping)


__all__ = ["SUPPORTED_METHODS", "HttpActor", "redact", "serve"]
