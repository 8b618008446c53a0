"""Registrations: functions, trigger types, triggers, services and worker identity.

Each message costs O(1) amortised (plus the bindings it concerns): no message rebuilds a
view of the connection; the bus coalesces "changed" events. Registrations that arrive before
a connection's namespace is known are buffered and applied in order when it is pinned (§4.4).
Registration hooks (RBAC, later) may refuse a message before it is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import structlog

from manifests.blocks.http_functions import REGISTER_FUNCTION_ID
from supervisor.engine.acks import acknowledge
from supervisor.engine.connection import Connection
from supervisor.engine.descriptor import read_descriptor
from supervisor.engine.errors import DEFAULT, INVALID_NAMESPACE_MSG, InvocationFailed, blank, error
from supervisor.engine.external import ExternalFunctions
from supervisor.engine.features import OBSERVE_V1, declared_features
from supervisor.engine.functions import FunctionEntry
from supervisor.engine.triggers import Binding, Provider
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.acks import ObserverDirectory
    from supervisor.engine.functions import FunctionTable
    from supervisor.engine.hooks import Hooks
    from supervisor.engine.invocations import Outcome
    from supervisor.engine.triggers import TriggerTable

log = structlog.get_logger(__name__)

_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"


def sanitize(value: Any) -> str | None:
    """Worker name/description sanitising (§8.3): no control or bidi characters, 280 max."""
    if not isinstance(value, str):
        return None
    cleaned = "".join(
        ch
        for ch in value
        if not (ord(ch) < 32 or ord(ch) == 127 or 0x80 <= ord(ch) < 0xA0) and ch not in _BIDI
    ).strip()[:280]
    return cleaned or None


class RegistrarHost(Protocol):
    """What registrations need of the bus (the bus implements it; no import of the bus)."""

    connections: dict[str, Connection]
    functions: FunctionTable
    triggers: TriggerTable
    names: dict[tuple[str, str], Connection]
    services: dict[tuple[str, str], dict[str, Any]]
    hooks: Hooks
    observer_directory: ObserverDirectory

    def live(self, conn: Connection | None) -> bool: ...
    def touch(self, conn: Connection) -> None: ...
    def emit(self, kind: str, conn: Connection) -> None: ...
    def fire_event(self, type_id: str, payload: Any) -> None: ...
    def functions_changed(self) -> None: ...
    def cleanup(self, conn: Connection) -> None: ...
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


@attrs.frozen
class Deferred:
    """A non-registration message held in a pending connection's buffer (``Registrar.defer``)."""

    msg: Any
    run: Callable[[Connection, Any], None]


class Registrar:
    HANDLED = (
        m.RegisterFunction,
        m.UnregisterFunction,
        m.RegisterService,
        m.RegisterTrigger,
        m.UnregisterTrigger,
        m.RegisterTriggerType,
        m.UnregisterTriggerType,
    )

    def __init__(self, bus: RegistrarHost) -> None:
        self.bus = bus
        self.external = ExternalFunctions(bus)  # registrations with an `invocation` (§10)
        self._apply: dict[type, Callable[[Connection, Any], None]] = {
            m.RegisterFunction: self.register_function,
            m.UnregisterFunction: self.unregister_function,
            m.RegisterService: self.register_service,
            m.RegisterTrigger: self.register_trigger,
            m.UnregisterTrigger: self.unregister_trigger,
            m.RegisterTriggerType: self.register_trigger_type,
            m.UnregisterTriggerType: self.unregister_trigger_type,
        }

    # -- entry points ----------------------------------------------------------------------

    def handle(self, conn: Connection, msg: Any) -> None:
        if conn.namespace is None:
            if conn.buffered is not None:
                conn.buffered.append(msg)
            return
        self.apply(conn, msg)

    def defer(self, conn: Connection, msg: Any, run: Callable[[Connection, Any], None]) -> None:
        """Run ``run(conn, msg)`` once the connection's namespace and features are known.

        For frames that depend on them but may arrive before ``engine::workers::register``
        (the 0.25 SDK can send ``observe`` as soon as it reads ``workerregistered``, which
        this engine sends on connect, PROTOCOL.md §4.1): while the namespace is pending they
        are buffered in arrival order with the registrations and run when it is pinned.
        Registration hooks do not see them.
        """
        if conn.namespace is None:
            if conn.buffered is not None:
                conn.buffered.append(Deferred(msg, run))
            return
        run(conn, msg)

    def apply(self, conn: Connection, msg: Any) -> None:
        if type(msg) is Deferred:
            msg.run(conn, msg.msg)
            return
        hooks = self.bus.hooks.registration
        if hooks:
            for hook in hooks:
                reason = hook(conn, msg)
                if reason is not None:
                    log.info("registration refused by a hook", tag=msg.TAG, reason=reason)
                    if isinstance(msg, m.RegisterTrigger):
                        self._trigger_failed(conn, msg, "FORBIDDEN", reason)
                    return
        self._apply[type(msg)](conn, msg)
        self.bus.touch(conn)

    def pin(self, conn: Connection, namespace: str) -> None:
        if conn.namespace is not None:
            return
        conn.namespace = namespace
        queued, conn.buffered = conn.buffered or [], None
        for msg in queued:
            try:
                self.apply(conn, msg)
            except Exception:
                log.exception("buffered registration failed", tag=msg.TAG)

    # -- functions -------------------------------------------------------------------------

    def register_function(self, conn: Connection, msg: m.RegisterFunction) -> None:
        ns = conn.ns
        if not conn.session.allow_function_registration:
            log.info("function registration not allowed for this session", id=msg.id)
            return
        if msg.id.startswith("engine::") and ns != DEFAULT:
            conn.send(_conflict(ns, msg.id, ""))
            return
        key = (ns, msg.id)
        functions = self.bus.functions
        current = functions.get(key)
        if current is not None and current.in_engine and conn.kind != "local":
            # Stricter than upstream (PROTOCOL.md §6.3, §19.1 item 9): a worker may not take
            # an engine built-in's id; only our own actors stand in for one (engine::log::*).
            conn.send(_conflict(ns, msg.id, ""))
            log.warning(
                "function id is an engine built-in: registration refused",
                function_id=msg.id,
                worker_id=conn.worker_id,
            )
            return
        if current is not None:
            holder = current.owner
            if holder is not None and holder is not conn:
                if self.bus.live(holder):
                    conn.send(_conflict(ns, msg.id, holder.worker_id))
                    log.warning(
                        "function id conflict",
                        function_id=msg.id,
                        namespace=ns,
                        owner=holder.worker_id,
                        rejected=conn.worker_id,
                    )
                    return
                holder.functions.discard(key)
                self.bus.observer_directory.function_removed(current, holder)
        if msg.invocation is not None:
            self.external.register(conn, msg, key, current)
            return
        if current is not None:
            functions.remove(current)
            self.external.released(current)
        observe, warnings = read_descriptor(msg.observe)
        for warning in warnings:
            log.warning(
                "registerfunction: " + warning, function_id=msg.id, worker_id=conn.worker_id
            )
        entry = FunctionEntry(
            function_id=msg.id,
            namespace=ns,
            owners=[conn],
            description=msg.description,
            request_format=msg.request_format,
            response_format=msg.response_format,
            metadata=msg.metadata,
            observe=observe,
        )
        functions.put(entry)
        conn.functions.add(key)
        self.bus.functions_changed()
        acknowledge(self.bus.observer_directory, conn, entry, conn.session.sent_id(msg.id))
        if msg.id == REGISTER_FUNCTION_ID and ns == DEFAULT:
            self.external.actor_up()

    def unregister_function(self, conn: Connection, msg: m.UnregisterFunction) -> None:
        entry = self.bus.functions.get((conn.ns, msg.id))
        if entry is not None and conn in entry.owners:
            self._drop_owner(conn, entry)

    def _drop_owner(self, conn: Connection, entry: FunctionEntry) -> None:
        conn.functions.discard(entry.key)
        if self._release(conn, entry):
            self.bus.functions_changed()

    def _release(self, conn: Connection, entry: FunctionEntry) -> bool:
        """``conn`` stops owning ``entry``; whether the entry left the table with it."""
        entry.owners.remove(conn)
        self.bus.observer_directory.function_removed(entry, conn)
        if entry.owners:
            return False
        self.bus.functions.remove(entry)
        self.external.released(entry)
        return True

    def register_service(self, conn: Connection, msg: m.RegisterService) -> None:
        self.bus.services[(conn.ns, msg.id)] = {
            "id": msg.id,
            "name": msg.name or msg.id,
            "description": msg.description,
            "parent_service_id": msg.parent_service_id,
        }

    # -- trigger types and triggers --------------------------------------------------------

    def register_trigger_type(self, conn: Connection, msg: m.RegisterTriggerType) -> None:
        if blank(msg.namespace):
            log.error("registertriggertype with a blank namespace dropped", id=msg.id)
            return
        if not conn.session.allow_trigger_type_registration:
            log.info("trigger type registration not allowed for this session", id=msg.id)
            return
        self.bus.triggers.add_provider(
            Provider(
                type_id=msg.id,
                namespace=msg.namespace or conn.ns,
                description=msg.description,
                conn=conn,
                trigger_request_format=msg.trigger_request_format,
                call_request_format=msg.call_request_format,
            )
        )

    def unregister_trigger_type(self, conn: Connection, msg: m.UnregisterTriggerType) -> None:
        triggers = self.bus.triggers
        provider = triggers.providers.get((msg.namespace or conn.ns, msg.id))
        if provider is not None and provider.conn is conn:
            triggers.remove_provider(provider)

    def _trigger_failed(
        self, conn: Connection, msg: m.RegisterTrigger, code: str, text: str
    ) -> None:
        conn.send(
            m.TriggerRegistrationResult(
                id=msg.id,
                trigger_type=msg.trigger_type,
                function_id=msg.function_id,
                error=error(code, text),
            )
        )

    def register_trigger(self, conn: Connection, msg: m.RegisterTrigger) -> None:
        for field in ("namespace", "trigger_namespace"):
            if blank(getattr(msg, field)):
                text = INVALID_NAMESPACE_MSG.format(field=field)
                self._trigger_failed(conn, msg, "INVALID_NAMESPACE", text)
                return
        reason = self.bus.triggers.add_binding(
            Binding(
                id=msg.id,
                trigger_type=msg.trigger_type,
                function_id=msg.function_id,
                config=msg.config,
                metadata=msg.metadata,
                owner=conn,
                target_ns=msg.namespace or DEFAULT,
                trigger_namespace=msg.trigger_namespace,
                home=conn.ns,
            )
        )
        if reason is not None:
            self._trigger_failed(conn, msg, "trigger_registration_failed", reason)

    def unregister_trigger(self, conn: Connection, msg: m.UnregisterTrigger) -> None:
        self.bus.triggers.remove_binding(msg.id)

    # -- worker identity -------------------------------------------------------------------

    def register_worker(self, conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
        """engine::workers::register (§12.2.10)."""
        declared = data.get("namespace")
        name = sanitize(data.get("name"))
        if isinstance(declared, str) and not declared.strip():
            raise InvocationFailed(
                "INVALID_NAMESPACE",
                f"namespace is empty: worker '{name or ''}' declared \"{declared}\". Give it a "
                "name, or omit the field to register in 'default'.",
            )
        namespace = declared if isinstance(declared, str) else DEFAULT
        if conn.namespace is not None and conn.namespace != namespace:
            log.warning(
                "namespace already pinned; ignoring declared namespace",
                worker_id=conn.worker_id,
                pinned=conn.namespace,
                declared=namespace,
            )
            namespace = conn.namespace
        names = self.bus.names
        if name:
            holder = names.get((namespace, name))
            if holder is not None and holder is not conn and self.bus.live(holder):
                conn.send(
                    m.RegistrationRejected(
                        code="WORKER_NAMESPACE_CONFLICT",
                        namespace=namespace,
                        worker_name=name,
                        owner_worker_id=holder.worker_id,
                    )
                )
                log.warning(
                    "worker name conflict",
                    name=name,
                    namespace=namespace,
                    owner=holder.worker_id,
                    rejected=conn.worker_id,
                )
                conn.buffered = []
                conn.closing = True
                conn.close_outbox()  # the writer flushes the rejection, then the link closes
                return {"success": False}
            if conn.name and conn.name != name and names.get((conn.ns, conn.name)) is conn:
                del names[(conn.ns, conn.name)]
            names[(namespace, name)] = conn
            conn.name = name
        pid = data.get("pid")
        conn.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
        conn.metadata = {
            k: data.get(k)
            for k in ("runtime", "version", "os", "isolation", "telemetry", "features")
            if k in data
        }
        conn.metadata["description"] = sanitize(data.get("description")) or None
        if not conn.registered:  # features are fixed by the first register (OBSERVE.md §2.1)
            self._declare_features(conn, declared_features(data.get("features")))
        self.pin(conn, namespace)
        conn.registered = True
        self.bus.fire_event(
            "engine::workers-available",
            {"event": "worker_metadata_updated", "worker_id": conn.worker_id},
        )
        self.bus.emit("registered", conn)
        return {"success": True}

    def _declare_features(self, conn: Connection, features: frozenset[str]) -> None:
        """Record the connection's features before its buffered registrations are applied
        (OBSERVE.md §2.4). A connection the namespace grace already pinned has its stored
        functions acknowledged now, since their ack was deferred until the features were known.
        """
        conn.features = features
        if conn.namespace is None or OBSERVE_V1 not in features:
            return
        for key in sorted(conn.functions):
            entry = self.bus.functions.get(key)
            if entry is not None and conn in entry.owners:
                sent = conn.session.sent_id(entry.function_id)
                acknowledge(self.bus.observer_directory, conn, entry, sent)

    def reattach(self, conn: Connection, msg: m.Reattach) -> None:
        bus = self.bus
        prev = bus.connections.get(msg.previous_worker_id)
        if prev is None or prev is conn:
            return
        if not msg.reattach_token or msg.reattach_token != prev.reattach_token:
            log.warning("reattach with a wrong token ignored", previous=msg.previous_worker_id)
            return
        log.info(
            "reattach: evicting previous connection", previous=prev.worker_id, new=conn.worker_id
        )
        prev.closing = True
        bus.cleanup(prev)
        if prev.cancel_scope is not None:
            prev.cancel_scope.cancel()

    # -- departure -------------------------------------------------------------------------

    def forget(self, conn: Connection) -> None:
        """Drop everything a departing connection registered: O(what it owned)."""
        bus = self.bus
        functions = bus.functions
        keys, conn.functions = conn.functions, set()
        released = False
        for key in keys:
            entry = functions.get(key)
            if entry is not None and conn in entry.owners:
                released = self._release(conn, entry) or released
        if released:
            bus.functions_changed()
        triggers = bus.triggers
        for binding_id in list(conn.triggers):
            binding = triggers.bindings.get(binding_id)
            if binding is not None and binding.owner is conn:
                triggers.remove_binding(binding_id)
        conn.triggers.clear()
        for key in list(conn.trigger_types):
            provider = triggers.providers.get(key)
            if provider is not None and provider.conn is conn:
                triggers.remove_provider(provider)
        conn.trigger_types.clear()
        if conn.name is not None:
            for ns in {conn.ns, DEFAULT}:
                if bus.names.get((ns, conn.name)) is conn:
                    del bus.names[(ns, conn.name)]


def _conflict(namespace: str, function_id: str, owner_worker_id: str) -> m.RegistrationRejected:
    """The one non-fatal refusal the SDKs know (they log it and keep running)."""
    return m.RegistrationRejected(
        code="FUNCTION_NAMESPACE_CONFLICT",
        namespace=namespace,
        function_id=function_id,
        owner_worker_id=owner_worker_id,
    )
