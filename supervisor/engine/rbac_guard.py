"""The guard in front of the bus for connections on an RBAC or middleware listener (§13).

One ``RbacGuard`` per such listener. It authenticates each connection before the bus sees it
(``authenticate``: the auth function, engine-internal, with a deadline) and then stands in the
connection's read loop: every message passes ``handle`` in arrival order before the bus
handles it. Invocations get the allow check, the namespace-scope check and the middleware;
registrations get the session's permissions, the hooks (awaited inline, as upstream does,
so a connection's registrations keep their order) and the function-registration prefix.
Message types it does not know are dropped: a new message kind reaches the bus from an RBAC
listener only once someone decides which rules apply to it.

Connections on listeners without rbac and middleware never meet this module.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import attrs
import structlog
import trio

from supervisor.engine.connection import Connection
from supervisor.engine.errors import DEFAULT, InvocationFailed, blank, error
from supervisor.engine.rbac import (
    ListenerPolicy,
    RbacError,
    RbacSession,
    auth_input,
    function_hook_input,
    merge_function_hook,
    merge_trigger_hook,
    merge_trigger_type_hook,
    parse_auth_result,
    permissive_session,
    trigger_hook_input,
    trigger_type_hook_input,
)
from transport import messages as m
from transport.tracecontext import trace_fields

if TYPE_CHECKING:
    from supervisor.engine.edge import BusEdge

log = structlog.get_logger(__name__)

# How long the functions a listener calls on its own may take (PROTOCOL.md §13 has no keys for
# them and upstream waits without a bound). Each ends in an error naming the function:
AUTH_TIMEOUT: Final = 10.0  # the auth function: AUTH_ERROR, the connection is refused
HOOK_TIMEOUT: Final = 10.0  # a registration hook: the registration is denied (logged)
# The middleware makes the real call itself, typically with the SDK's default call timeout
# (30 s, §7.7): by then it has answered, with a result or that timeout's error. Past it the
# caller gets `middleware_timeout` instead of waiting for the engine deadline (300 s).
MIDDLEWARE_TIMEOUT: Final = 30.0

# Held (in order) while the connection's namespace is pending, then vetted: PROTOCOL.md §4.4.
_REGISTRATIONS: Final = frozenset(
    {
        m.RegisterFunction,
        m.UnregisterFunction,
        m.RegisterService,
        m.RegisterTrigger,
        m.UnregisterTrigger,
        m.RegisterTriggerType,
        m.UnregisterTriggerType,
    }
)
# Passed on unchanged; anything that is neither these nor the above is dropped. The observe
# family's allow checks (FORBIDDEN) are the observer table's; the bus holds its frames until
# the namespace is pinned.
_PLAIN: Final = frozenset(
    {
        m.InvocationResult,
        m.TriggerRegistrationResult,
        m.Reattach,
        m.Ping,
        m.Pong,
        m.Observe,
        m.Unobserve,
        m.ObserverAck,
        m.InvocationsObserved,
        m.LocalInvocationStats,
    }
)


class HookTimeout(RbacError):
    """A registration hook did not answer within ``HOOK_TIMEOUT``: it denies, as a failure."""


class AuthRefused(Exception):
    """Session establishment failed; ``message`` goes into the AUTH_ERROR frame."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.define(eq=False)
class PrefixedConnection(Connection):
    """A connection whose session registers functions as ``P::X``: calls sent to it carry
    ``X``, the id its SDK knows (§13.6)."""

    strip: str = ""

    def send(self, msg: Any, *, batch: bool = False) -> bool:
        if type(msg) is m.InvokeFunction and msg.function_id.startswith(self.strip):
            msg = attrs.evolve(msg, function_id=msg.function_id[len(self.strip) :])
        return super().send(msg, batch=batch)


def _action(action: m.TriggerAction | None) -> dict[str, Any] | None:
    if action is None:
        return None
    out: dict[str, Any] = {"type": action.type}
    if action.queue is not None:
        out["queue"] = action.queue
    return out


class RbacGuard:
    def __init__(self, edge: BusEdge, policy: ListenerPolicy) -> None:
        self.edge = edge
        self.bus = edge.bus
        self.policy = policy

    # -- connecting ------------------------------------------------------------------------

    async def authenticate(
        self, headers: list[tuple[bytes, bytes]], query: str, peer: str | None
    ) -> RbacSession:
        """The session for a new connection, or ``AuthRefused`` with the reason."""
        policy = self.policy
        fn = policy.auth_function_id
        if fn is None:
            return permissive_session(policy)
        try:
            result = await self.edge.call(
                fn, auth_input(headers, query, peer), timeout=AUTH_TIMEOUT
            )
        except InvocationFailed as exc:
            if exc.code == "timeout":
                raise AuthRefused(
                    f"auth function '{fn}' did not answer within {int(AUTH_TIMEOUT * 1000)} ms"
                ) from None
            raise AuthRefused(exc.message) from None
        try:
            return parse_auth_result(result, policy)
        except RbacError as exc:
            raise AuthRefused(str(exc)) from None

    def connection_for(self, session: RbacSession, **kw: Any) -> Connection:
        prefix = session.function_registration_prefix
        conn: Connection
        if prefix:
            conn = PrefixedConnection(strip=f"{prefix}::", **kw)
        else:
            conn = Connection(**kw)
        conn.session = session
        return conn

    # -- the read loop ---------------------------------------------------------------------

    async def handle(self, conn: Connection, msg: Any) -> None:
        session = conn.session
        assert isinstance(session, RbacSession)
        kind = type(msg)
        if kind is m.InvokeFunction:
            self.invoke(conn, session, msg)
            return
        if kind in _REGISTRATIONS:
            if conn.namespace is None or session.held is not None:
                self._hold(conn, session, msg)
                return
            await self._register(conn, session, msg)
        elif kind in _PLAIN:
            self.bus.handle(conn, msg)
        else:
            log.info(
                "message type not accepted on an RBAC listener; dropped",
                tag=getattr(msg, "TAG", kind.__name__),
                worker_id=conn.worker_id,
            )

    async def _register(self, conn: Connection, session: RbacSession, msg: Any) -> None:
        """Permissions, hook and prefix, then the bus (the connection's namespace is known)."""
        kind = type(msg)
        vetted: Any = msg
        if kind is m.RegisterFunction:
            vetted = await self._function(conn, session, msg)
        elif kind is m.UnregisterFunction:
            vetted = attrs.evolve(msg, id=session.prefixed(msg.id))
        elif kind is m.RegisterTriggerType:
            vetted = await self._trigger_type(conn, session, msg)
        elif kind is m.RegisterTrigger:
            vetted = await self._trigger(conn, session, msg)
        elif kind is m.UnregisterTrigger:
            binding = self.bus.bindings.get(msg.id)
            if binding is not None and binding.owner is not conn:
                # Stricter than upstream (any connection may remove any binding by id): a
                # client of this listener removes only its own.
                log.info("RBAC session may not remove another's binding", id=msg.id)
                vetted = None
        if vetted is not None and not conn.closing:
            self.bus.handle(conn, vetted)

    def _hold(self, conn: Connection, session: RbacSession, msg: Any) -> None:
        """Registrations before the namespace is pinned wait here, in order (§4.4), so their
        hooks see the namespace they are registered in; calls go on meanwhile."""
        if session.held is None:
            session.held = deque()
            pinned = trio.Event()
            self.bus.registrar.defer(conn, None, lambda _conn, _msg: pinned.set())
            spawn = self.bus.spawn
            assert spawn is not None, "the edge is running: it reads this connection"
            spawn(self._drain, conn, session, pinned)
        session.held.append(msg)

    async def _drain(self, conn: Connection, session: RbacSession, pinned: trio.Event) -> None:
        async with trio.open_nursery() as nursery:

            async def until_set(event: trio.Event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(until_set, pinned)
            nursery.start_soon(until_set, conn.cleaned)
        held = session.held
        try:
            while held and not conn.closing:
                msg = held.popleft()
                try:
                    await self._register(conn, session, msg)
                except Exception:
                    log.exception("held registration failed", tag=msg.TAG)
        finally:
            session.held = None

    # -- invocations -----------------------------------------------------------------------

    def invoke(self, conn: Connection, session: RbacSession, msg: m.InvokeFunction) -> None:
        bus = self.bus
        namespace = DEFAULT if msg.namespace is None else msg.namespace
        if blank(namespace):
            bus.handle(conn, msg)  # INVALID_NAMESPACE: reaches nothing
            return
        fid = msg.function_id
        entry = bus.functions.get((namespace, fid))
        refusal = self.policy.denial(session, fid, namespace, entry.metadata if entry else None)
        if refusal is None and fid == "engine::workers::register":
            data = msg.data if isinstance(msg.data, dict) else {}
            declared = data.get("namespace")
            refusal = session.namespace_refusal(declared if isinstance(declared, str) else DEFAULT)
        if refusal is not None:
            log.info(
                "call refused by RBAC",
                function_id=fid,
                namespace=namespace,
                **trace_fields(msg.traceparent),
            )
            self._answer(conn, msg, None, error("FORBIDDEN", refusal))
            return
        middleware = self.policy.middleware_function_id
        engine_owned = fid.startswith("engine::") and (
            entry is None or entry.owner is None or entry.owner.kind == "local"
        )
        if middleware is None or engine_owned:
            bus.handle(conn, msg)
            return
        bus.internal_invoke(
            middleware,
            {
                "function_id": fid,
                "payload": msg.data,
                "action": _action(msg.action),
                "context": session.context,
                "namespace": namespace,
            },
            namespace=namespace,
            metadata=msg.metadata,
            on_done=lambda result, err: self._answer(conn, msg, result, err),
            timeout=MIDDLEWARE_TIMEOUT,
            expiry=error(
                "middleware_timeout",
                f"middleware '{middleware}' did not answer within "
                f"{int(MIDDLEWARE_TIMEOUT * 1000)} ms",
            ),
        )

    def _answer(
        self, conn: Connection, msg: m.InvokeFunction, result: Any, err: m.ErrorBody | None
    ) -> None:
        """The caller's invocationresult; a fresh id when it sent none (SDKs ignore it)."""
        conn.send(
            m.InvocationResult(
                msg.invocation_id or str(uuid.uuid4()),
                msg.function_id,
                None if err is not None else result,
                err,
                msg.traceparent,
                msg.baggage,
            )
        )

    # -- registrations ---------------------------------------------------------------------

    async def _hook(self, fn: str, data: dict[str, Any]) -> Any:
        """A registration hook's answer; ``RbacError`` when it failed (which denies),
        ``HookTimeout`` when it did not answer in time."""
        try:
            return await self.edge.call(fn, data, timeout=HOOK_TIMEOUT)
        except InvocationFailed as exc:
            if exc.code == "timeout":
                raise HookTimeout(
                    f"hook '{fn}' did not answer within {int(HOOK_TIMEOUT * 1000)} ms"
                ) from None
            raise RbacError(f"hook '{fn}' failed: {exc.code}: {exc.message}") from None

    async def _function(
        self, conn: Connection, session: RbacSession, msg: m.RegisterFunction
    ) -> m.RegisterFunction | None:
        if not session.allow_function_registration:
            log.info("function registration not allowed for this session", id=msg.id)
            return None
        sent = msg.id
        hook = self.policy.on_function_registration
        if hook is not None:
            data = function_hook_input(msg, conn.ns, session.context)
            try:
                msg = merge_function_hook(msg, await self._hook(hook, data))
            except RbacError as exc:
                log.info("function registration denied by its hook", id=msg.id, reason=str(exc))
                return None
        stored = session.prefixed(msg.id)
        current = self.bus.functions.get((conn.ns, stored))
        if stored in self.policy.machinery or (current is not None and current.in_engine):
            # Stricter than upstream: a client of this listener may not stand in for an engine
            # built-in or for the functions that guard the listener (when their worker is away).
            log.warning("RBAC session may not register a reserved function id", id=stored)
            conn.send(
                m.RegistrationRejected(
                    code="FUNCTION_NAMESPACE_CONFLICT",
                    namespace=conn.ns,
                    function_id=stored,
                    owner_worker_id="",
                )
            )
            return None
        if stored != sent:
            session.renamed[stored] = sent
        return attrs.evolve(msg, id=stored)

    async def _trigger_type(
        self, conn: Connection, session: RbacSession, msg: m.RegisterTriggerType
    ) -> m.RegisterTriggerType | None:
        if not session.allow_trigger_type_registration:
            log.info("trigger type registration not allowed for this session", id=msg.id)
            return None
        hook = self.policy.on_trigger_type_registration
        if hook is None:
            return msg
        data = trigger_type_hook_input(msg, session.context)
        try:
            return merge_trigger_type_hook(msg, await self._hook(hook, data))
        except RbacError as exc:
            log.info("trigger type registration denied by its hook", id=msg.id, reason=str(exc))
            return None

    async def _trigger(
        self, conn: Connection, session: RbacSession, msg: m.RegisterTrigger
    ) -> m.RegisterTrigger | None:
        if blank(msg.namespace) or blank(msg.trigger_namespace):
            return msg  # the bus answers INVALID_NAMESPACE and binds nothing
        allowed = session.allowed_trigger_types
        if allowed is not None and msg.trigger_type not in allowed:
            log.info("trigger type not allowed for this session", trigger_type=msg.trigger_type)
            return None
        hook = self.policy.on_trigger_registration
        if hook is not None:
            data = trigger_hook_input(msg, session.context)
            try:
                msg = merge_trigger_hook(msg, await self._hook(hook, data))
            except RbacError as exc:
                log.info("trigger registration denied by its hook", id=msg.id, reason=str(exc))
                if isinstance(exc, HookTimeout):
                    # A denial is silent (§13.8); a hook that hangs is no decision, and a
                    # registertrigger has a way to say so (the SDK logs it at ERROR).
                    conn.send(
                        m.TriggerRegistrationResult(
                            id=msg.id,
                            trigger_type=msg.trigger_type,
                            function_id=msg.function_id,
                            error=error("hook_timeout", str(exc)),
                        )
                    )
                return None
        msg = attrs.evolve(msg, function_id=session.prefixed(msg.function_id))
        namespace = msg.namespace or DEFAULT
        entry = self.bus.functions.get((namespace, msg.function_id))
        if self.policy.denial(
            session, msg.function_id, namespace, entry.metadata if entry else None
        ):
            conn.send(
                m.TriggerRegistrationResult(
                    id=msg.id,
                    trigger_type=msg.trigger_type,
                    function_id=msg.function_id,
                    error=error(
                        "FORBIDDEN",
                        f"function '{msg.function_id}' not allowed in namespace '{namespace}'",
                    ),
                )
            )
            return None
        return msg
