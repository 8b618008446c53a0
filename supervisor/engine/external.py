"""HTTP-invoked (external) functions, the engine's part (PROTOCOL.md §6.3 step 7, §10).

A ``registerfunction`` with an ``invocation`` is stored at once, owned by the registering
connection (its lease, its lifetime: unregister and departure remove it as any function),
with a handler that makes each call through the ``iii-http-functions`` actor
(``iii-http-functions::invoke``, the ``invocation`` in every call: the actor keeps nothing, so
a restarted one serves every function at once). The registering worker never receives an
invocation for it.

Upstream validates the registration inline, blocking the connection's reader, so a call sent
right after the registration finds it. Here the actor validates it (``iii-http-functions::
register``: the URL against its security settings, with a lookup; the auth's environment
variable) while the reader goes on; until it answers, calls wait for the answer. A refusal
removes the function with a log line only (upstream tells the worker nothing either) and the
calls that waited get ``function_not_found`` naming the reason.

Upstream's component is in-process, loaded before any worker connects; ours is a process that
starts beside the workers and may restart. So when config.yaml lists ``iii-http-functions``
(``expected``), a registration that arrives while the actor is not up waits for it (also one
whose validation the actor's departure cut short); when it is not listed and no actor is
connected, the registration is dropped with the log line "HTTP functions module not loaded",
as upstream.

Nothing waits on the actor without a bound. A call ends within the function's request
timeout (``timeout_ms``, 30 s by default, capped at 60 s, as the actor applies it) plus
``ANSWER_GRACE``, whatever the actor does: waiting for the validation and for the actor's
answer both count, and past it the caller gets ``http_request_failed`` saying the actor did
not answer. A validation the actor does not answer within ``VALIDATION_WAIT`` refuses the
registration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import structlog
import trio

from manifests.blocks.http_functions import (
    INVOKE_FUNCTION_ID,
    REGISTER_FUNCTION_ID,
    request_timeout_ms,
)
from supervisor.engine.acks import acknowledge
from supervisor.engine.descriptor import read_descriptor
from supervisor.engine.errors import DEFAULT, InvocationFailed, error
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
# The actor answers a timed-out request itself (http_request_failed, "timed out after N ms")
# at the function's timeout; this is how long that answer has to reach the engine after it.
ANSWER_GRACE = 2.0
# A validation is a URL check and a DNS lookup: an actor silent this long has lost it.
VALIDATION_WAIT = 30.0


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
        timeout: float | None = ...,
        expiry: m.ErrorBody | None = ...,
    ) -> None: ...


@attrs.define(eq=False)
class _Claim:
    """One registration and its validation."""

    conn: Connection
    msg: m.RegisterFunction
    key: Key
    entry: FunctionEntry | None = None  # stored at once; a refusal removes it
    sent: bool = False  # asked the actor (False: waiting for it to be up)
    refusal: str | None = None  # the actor's reason, once refused
    settled: trio.Event = attrs.Factory(trio.Event)  # answered (yes or no)


# The actor's validation was cut by its departure: ask again when it is back.
_INTERRUPTED = frozenset({"invocation_stopped", "channel_send_failed", "function_not_found"})


class ExternalFunctions:
    def __init__(self, bus: ExternalHost) -> None:
        self.bus = bus
        self.expected = False  # config.yaml lists iii-http-functions (set by the engine runner)
        self._claims: dict[Key, _Claim] = {}  # validations not answered yet

    def loaded(self) -> bool:
        return (DEFAULT, REGISTER_FUNCTION_ID) in self.bus.functions

    def pending(self, key: Key) -> bool:
        """A registration of ``key`` still awaits the actor's answer."""
        claim = self._claims.get(key)
        return claim is not None and self._current(claim)

    def _current(self, claim: _Claim) -> bool:
        """The claim's entry is still the one stored (not unregistered, replaced or gone)."""
        return claim.entry is not None and self.bus.functions.get(claim.key) is claim.entry

    def released(self, entry: FunctionEntry) -> None:
        """``entry`` left the table (unregistered, replaced, its owner gone): if it was still
        being validated, the calls that wait on it end now (``function_not_found``)."""
        claim = self._claims.get(entry.key)
        if claim is not None and claim.entry is entry:
            del self._claims[entry.key]
            claim.settled.set()

    def register(
        self, conn: Connection, msg: m.RegisterFunction, key: Key, current: FunctionEntry | None
    ) -> None:
        """The lease checks passed: store the function (replacing ``current``) and ask the
        actor to validate it, now or once it is up."""
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
        bus = self.bus
        functions = bus.functions
        if current is not None:
            for owner in current.owners:
                owner.functions.discard(key)
                bus.observer_directory.function_removed(current, owner)
            functions.remove(current)
            self.released(current)
        observe, warnings = read_descriptor(msg.observe)
        for warning in warnings:
            log.warning(
                "registerfunction: " + warning, function_id=msg.id, worker_id=conn.worker_id
            )
        claim = _Claim(conn, msg, key)
        claim.entry = FunctionEntry(
            function_id=msg.id,
            namespace=key[0],
            owners=[conn],
            description=msg.description,
            request_format=msg.request_format,
            response_format=msg.response_format,
            metadata=msg.metadata,
            builtin=self._handler(claim),
            observe=observe,
            invocation=msg.invocation,
        )
        functions.put(claim.entry)
        conn.functions.add(key)
        bus.functions_changed()
        self._claims[key] = claim
        if loaded:
            self._ask(claim)
        else:
            log.info(
                "HTTP-invoked function waits for iii-http-functions to be up",
                function_id=msg.id,
                namespace=key[0],
            )

    def actor_up(self) -> None:
        """The actor registered its functions: ask about every waiting registration."""
        for key, claim in list(self._claims.items()):
            if not self._current(claim):
                del self._claims[key]
                claim.settled.set()
            elif not claim.sent:
                self._ask(claim)

    def _ask(self, claim: _Claim) -> None:
        claim.sent = True
        msg = claim.msg
        payload = {"function_id": msg.id, "namespace": claim.key[0], "invocation": msg.invocation}

        def answered(result: Any, err: m.ErrorBody | None) -> None:
            self._answered(claim, err)

        ms = int(VALIDATION_WAIT * 1000)
        self.bus.internal_invoke(
            REGISTER_FUNCTION_ID,
            payload,
            on_done=answered,
            timeout=VALIDATION_WAIT,
            expiry=error(
                "http_request_failed", f"iii-http-functions did not answer within {ms} ms"
            ),
        )

    def _answered(self, claim: _Claim, err: m.ErrorBody | None) -> None:
        key, conn, msg = claim.key, claim.conn, claim.msg
        bus = self.bus
        current = self._current(claim)
        if current and err is not None and err.code in _INTERRUPTED and self.expected:
            claim.sent = False  # the actor left mid-answer: asked again when it is back
            return
        if self._claims.get(key) is claim:
            del self._claims[key]
        if not current:  # unregistered, replaced or departed meanwhile: the answer is moot
            claim.settled.set()
            return
        assert claim.entry is not None
        if err is not None:
            claim.refusal = err.message
            conn.functions.discard(key)
            bus.functions.remove(claim.entry)
            bus.functions_changed()
            bus.touch(conn)
            claim.settled.set()
            log.warning(
                "HTTP-invoked function not registered",
                function_id=msg.id,
                namespace=key[0],
                worker_id=conn.worker_id,
                code=err.code,
                reason=err.message,
            )
            return
        claim.settled.set()
        sent_id = conn.session.sent_id(msg.id)
        acknowledge(bus.observer_directory, conn, claim.entry, sent_id, http=True)
        log.info(
            "HTTP-invoked function registered",
            function_id=msg.id,
            namespace=key[0],
            worker_id=conn.worker_id,
        )

    def _handler(self, claim: _Claim) -> Callable[[Any, Any], Awaitable[Any]]:
        msg = claim.msg
        function_id, namespace, invocation = msg.id, claim.key[0], msg.invocation

        budget_ms = request_timeout_ms(invocation) + int(ANSWER_GRACE * 1000)

        async def call(_ctx: Any, data: Any) -> Any:
            deadline = trio.current_time() + budget_ms / 1000
            if not claim.settled.is_set():
                with trio.move_on_at(deadline):
                    await claim.settled.wait()
                if not claim.settled.is_set():
                    raise InvocationFailed(
                        "http_request_failed",
                        f"Cannot call {function_id}: its registration was not validated within "
                        f"{budget_ms} ms (is iii-http-functions running?)",
                    )
            if claim.refusal is not None or not self._current(claim):
                reason = (
                    f": its registration was refused ({claim.refusal})" if claim.refusal else ""
                )
                raise InvocationFailed(
                    "function_not_found",
                    f"Function {function_id} not found in namespace {namespace}{reason}",
                )
            left = deadline - trio.current_time()
            return await self.call(function_id, namespace, invocation, data, left, budget_ms)

        return call

    async def call(
        self,
        function_id: str,
        namespace: str,
        invocation: Any,
        data: Any,
        wait: float,
        budget_ms: int,
    ) -> Any:
        """One call of an external function, made by the actor; its error is the call's.
        The actor's answer is awaited ``wait`` seconds (what is left of ``budget_ms``)."""
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
        silent = error(
            "http_request_failed",
            f"Cannot call {function_id}: iii-http-functions did not answer within {budget_ms} ms "
            f"(its timeout_ms plus {int(ANSWER_GRACE * 1000)} ms)",
        )
        if wait <= 0:
            raise InvocationFailed(silent.code, silent.message)
        # The bus ends the actor's call at that point (nothing stays in flight); the local
        # bound covers a bus whose timers are not driven (the unit tests' fake clock).
        self.bus.internal_invoke(
            INVOKE_FUNCTION_ID, payload, on_done=finished, timeout=wait, expiry=silent
        )
        with trio.move_on_after(wait):
            await done.wait()
        result, err = outcome[0] if outcome else (None, silent)
        if err is not None:
            raise InvocationFailed(err.code, err.message)
        return result
