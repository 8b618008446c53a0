"""HTTP-invoked (external) functions, the engine's part (PROTOCOL.md §6.3 step 7, §10).

A ``registerfunction`` with an ``invocation`` is handed to the ``iii-http-functions`` actor,
which validates it (the URL against its security settings, the auth's environment variable):
the engine calls ``iii-http-functions::register`` and, once it answers, stores the function
with the registering connection as its owner (its lease, its lifetime: unregister and
disconnect remove it as any function) and a handler that makes each call through
``iii-http-functions::invoke``. A refusal drops the registration with a log line only, as
upstream does. The registering worker never receives an invocation for it.

Upstream's component is in-process, loaded before any worker connects; ours is a process that
starts beside the workers and may restart. So when config.yaml lists ``iii-http-functions``
(``expected``), a registration that arrives while the actor is not up is held, and sent when the
actor registers its functions (also one whose validation the actor's departure interrupted);
when it is not listed and no actor is connected, the registration is dropped with the log line
"HTTP functions module not loaded", as upstream.

While the actor's answer is pending the connection holds the claim: another connection
registering the same id is refused as a conflict; an ``unregisterfunction`` or a later
registration of that id by the same connection, or its departure, discards the answer.
The actor keeps no registrations: each call carries the ``invocation``, so a restarted actor
serves every function at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import structlog
import trio

from manifests.blocks.http_functions import INVOKE_FUNCTION_ID, REGISTER_FUNCTION_ID
from supervisor.engine.acks import acknowledge
from supervisor.engine.descriptor import read_descriptor
from supervisor.engine.errors import DEFAULT, InvocationFailed
from supervisor.engine.functions import FunctionEntry
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.acks import ObserverDirectory
    from supervisor.engine.connection import Connection
    from supervisor.engine.functions import FunctionTable, Key
    from supervisor.engine.invocations import Outcome

__all__ = ["ExternalFunctions", "ExternalHost"]

log = structlog.get_logger(__name__)

NOT_LOADED = "HTTP functions module not loaded"
# The actor caps a request at 60 s; its answer not arriving well after that is a lost call.
ANSWER_WAIT = 75.0


class ExternalHost(Protocol):
    """What external functions need of the bus."""

    functions: FunctionTable
    observer_directory: ObserverDirectory

    def live(self, conn: Connection | None) -> bool: ...
    def touch(self, conn: Connection) -> None: ...
    def functions_changed(self) -> None: ...
    def internal_invoke(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = ...,
        metadata: Any = ...,
        on_done: Outcome | None = ...,
    ) -> None: ...


@attrs.define(eq=False)
class _Claim:
    conn: Connection
    msg: m.RegisterFunction
    sent: bool = False  # asked the actor (False: held until it is up)


# The actor's validation was cut by its departure: ask again when it is back.
_INTERRUPTED = frozenset({"invocation_stopped", "channel_send_failed", "function_not_found"})


class ExternalFunctions:
    def __init__(self, bus: ExternalHost) -> None:
        self.bus = bus
        self.expected = False  # config.yaml lists iii-http-functions (set by the engine runner)
        self._claims: dict[Key, _Claim] = {}

    def loaded(self) -> bool:
        return (DEFAULT, REGISTER_FUNCTION_ID) in self.bus.functions

    def claimant(self, key: Key) -> Connection | None:
        """The live connection whose registration of ``key`` awaits the actor's answer."""
        claim = self._claims.get(key)
        if claim is None:
            return None
        if not self.bus.live(claim.conn):
            del self._claims[key]
            return None
        return claim.conn

    def withdraw(self, conn: Connection, key: Key) -> None:
        """``conn`` unregistered or re-registered ``key``: its pending answer no longer counts."""
        claim = self._claims.get(key)
        if claim is not None and claim.conn is conn:
            del self._claims[key]

    def register(self, conn: Connection, msg: m.RegisterFunction, key: Key) -> None:
        """The lease checks passed: ask the actor to validate (now, or once it is up), store
        on its yes."""
        loaded = self.loaded()
        if not loaded and not self.expected:
            log.warning(
                f"HTTP-invoked function not registered: {NOT_LOADED} (add iii-http-functions "
                "to config.yaml)",
                function_id=msg.id,
                namespace=key[0],
                worker_id=conn.worker_id,
            )
            return
        claim = _Claim(conn, msg)
        self._claims[key] = claim
        if loaded:
            self._ask(claim, key)
        else:
            log.info(
                "HTTP-invoked function held until iii-http-functions is up",
                function_id=msg.id,
                namespace=key[0],
            )

    def actor_up(self) -> None:
        """The actor registered its functions: ask about every held registration."""
        for key, claim in list(self._claims.items()):
            if not claim.sent:
                self._ask(claim, key)

    def _ask(self, claim: _Claim, key: Key) -> None:
        claim.sent = True
        msg = claim.msg
        payload = {"function_id": msg.id, "namespace": key[0], "invocation": msg.invocation}

        def answered(result: Any, err: m.ErrorBody | None) -> None:
            self._answered(claim, key, err)

        self.bus.internal_invoke(REGISTER_FUNCTION_ID, payload, on_done=answered)

    def _answered(self, claim: _Claim, key: Key, err: m.ErrorBody | None) -> None:
        if self._claims.get(key) is not claim:
            return  # withdrawn, or superseded by a later registration of the same connection
        conn, msg = claim.conn, claim.msg
        bus = self.bus
        if err is not None and err.code in _INTERRUPTED and self.expected and bus.live(conn):
            claim.sent = False  # the actor left mid-answer: held until it is back (actor_up)
            return
        del self._claims[key]
        if not bus.live(conn):
            return
        if err is not None:
            log.warning(
                "HTTP-invoked function not registered",
                function_id=msg.id,
                namespace=key[0],
                worker_id=conn.worker_id,
                code=err.code,
                reason=err.message,
            )
            return
        functions = bus.functions
        current = functions.get(key)
        if current is not None:
            holder = current.owner
            if holder is not None and holder is not conn and bus.live(holder):
                conn.send(
                    m.RegistrationRejected(
                        code="FUNCTION_NAMESPACE_CONFLICT",
                        namespace=key[0],
                        function_id=msg.id,
                        owner_worker_id=holder.worker_id,
                    )
                )
                return
            for owner in current.owners:
                owner.functions.discard(key)
                bus.observer_directory.function_removed(current, owner)
            functions.remove(current)
        observe, warnings = read_descriptor(msg.observe)
        for warning in warnings:
            log.warning(
                "registerfunction: " + warning, function_id=msg.id, worker_id=conn.worker_id
            )
        entry = FunctionEntry(
            function_id=msg.id,
            namespace=key[0],
            owners=[conn],
            description=msg.description,
            request_format=msg.request_format,
            response_format=msg.response_format,
            metadata=msg.metadata,
            builtin=self._handler(msg.id, key[0], msg.invocation),
            observe=observe,
        )
        functions.put(entry)
        conn.functions.add(key)
        bus.functions_changed()
        bus.touch(conn)
        acknowledge(bus.observer_directory, conn, entry, conn.session.sent_id(msg.id), http=True)
        log.info(
            "HTTP-invoked function registered",
            function_id=msg.id,
            namespace=key[0],
            worker_id=conn.worker_id,
        )

    def _handler(
        self, function_id: str, namespace: str, invocation: Any
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def call(_ctx: Any, data: Any) -> Any:
            return await self.call(function_id, namespace, invocation, data)

        return call

    async def call(self, function_id: str, namespace: str, invocation: Any, data: Any) -> Any:
        """One call of an external function, made by the actor; its error is the call's."""
        if (DEFAULT, INVOKE_FUNCTION_ID) not in self.bus.functions:
            raise InvocationFailed(
                "http_request_failed",
                f"Cannot call {function_id}: {NOT_LOADED} (iii-http-functions is not running)",
            )
        done = trio.Event()
        outcome: list[tuple[Any, m.ErrorBody | None]] = []

        def finished(result: Any, err: m.ErrorBody | None) -> None:
            outcome.append((result, err))
            done.set()

        payload = {
            "function_id": function_id,
            "namespace": namespace,
            "invocation": invocation,
            "data": data,
        }
        self.bus.internal_invoke(INVOKE_FUNCTION_ID, payload, on_done=finished)
        with trio.move_on_after(ANSWER_WAIT):
            await done.wait()
        if not outcome:
            raise InvocationFailed(
                "http_request_failed",
                f"Cannot call {function_id}: iii-http-functions did not answer in {ANSWER_WAIT:g} s",
            )
        result, err = outcome[0]
        if err is not None:
            raise InvocationFailed(err.code, err.message)
        return result
