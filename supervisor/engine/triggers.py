"""The trigger table: trigger-type providers, bindings (triggers) and their delivery.

A binding is *bound* to the provider it was delivered to, or *parked* (``bound_to is None``)
until a provider of its type appears. Indexes by trigger type and by provider keep every
registration O(bindings concerned), not O(all bindings). In-process providers (the engine's
own event types) accept or refuse a binding synchronously; remote ones acknowledge with
``triggerregistrationresult``, which ``acknowledge`` routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import structlog

from supervisor.engine.errors import DEFAULT
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection

log = structlog.get_logger(__name__)

ProviderKey = tuple[str, str]  # (namespace, trigger type id)
AckWaiter = Callable[[m.TriggerRegistrationResult], None]


@attrs.define(eq=False)
class Binding:
    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any
    owner: Connection | None  # None: durable (engine::register_trigger)
    target_ns: str
    trigger_namespace: str | None
    home: str
    bound_to: ProviderKey | None = None  # provider key when live, None when parked

    def summary(self, worker_name: str) -> dict[str, Any]:
        compact = orjson.dumps(self.config).decode()
        if len(compact) > 80:
            compact = compact[:80] + "…"
        return {
            "id": self.id,
            "trigger_type": self.trigger_type,
            "function_id": self.function_id,
            "worker_name": worker_name,
            "config": self.config,
            "config_summary": compact,
        }


@attrs.define(eq=False)
class Provider:
    type_id: str
    namespace: str
    description: str
    conn: Connection | None  # None: in-process provider
    trigger_request_format: Any = None
    call_request_format: Any = None
    component: str | None = None
    on_register: Callable[[Binding], str | None] | None = None
    on_unregister: Callable[[Binding], None] | None = None

    @property
    def key(self) -> ProviderKey:
        return (self.namespace, self.type_id)

    @property
    def worker_name(self) -> str:
        if self.conn is not None and self.conn.name:
            return self.conn.name
        return self.component or self.type_id.split("::", 1)[0]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.type_id,
            "namespace": self.namespace,
            "worker_name": self.worker_name,
            "description": self.description,
        }


class TriggerTable:
    def __init__(self, live: Callable[[Connection | None], bool]) -> None:
        self._live = live
        self.providers: dict[ProviderKey, Provider] = {}
        self.bindings: dict[str, Binding] = {}
        self._by_type: dict[str, set[str]] = {}  # trigger type -> binding ids
        self._by_provider: dict[ProviderKey, set[str]] = {}  # bound_to -> binding ids
        self._ack_waiters: dict[str, AckWaiter] = {}

    # -- queries ---------------------------------------------------------------------------

    def bound_to(self, key: ProviderKey) -> list[Binding]:
        """The live bindings delivered to one provider."""
        ids = self._by_provider.get(key)
        return [self.bindings[i] for i in ids] if ids else []

    def count_bound(self, key: ProviderKey) -> int:
        return len(self._by_provider.get(key, ()))

    def resolve_provider(self, binding: Binding) -> ProviderKey | None:
        """Where a binding goes: its explicit trigger namespace, else its home, else default."""
        if binding.trigger_namespace is not None:
            key = (binding.trigger_namespace, binding.trigger_type)
            return key if key in self.providers else None
        for ns in (binding.home, DEFAULT):
            key = (ns, binding.trigger_type)
            if key in self.providers:
                return key
        return None

    # -- providers -------------------------------------------------------------------------

    def add_provider(self, provider: Provider) -> None:
        """Install (or replace) a provider and deliver the bindings that now resolve to it."""
        key = provider.key
        old = self.providers.get(key)
        if old is not None and old.conn is not None and old.conn is not provider.conn:
            old.conn.trigger_types.discard(key)
        self.providers[key] = provider
        if provider.conn is not None:
            provider.conn.trigger_types.add(key)
        ns = provider.namespace
        for binding_id in list(self._by_type.get(provider.type_id, ())):
            binding = self.bindings[binding_id]
            if binding.bound_to == key:
                self._deliver(binding, key)  # re-deliver to the replacing provider
            elif binding.bound_to is None and self.resolve_provider(binding) == key:
                self._deliver(binding, key)
            elif (
                ns != DEFAULT
                and binding.bound_to == (DEFAULT, provider.type_id)
                and binding.home == ns
                and binding.trigger_namespace is None
            ):
                self._undeliver(binding)
                self._deliver(binding, key)

    def remove_provider(self, provider: Provider) -> None:
        key = provider.key
        if self.providers.get(key) is not provider:
            return
        del self.providers[key]
        if provider.conn is not None:
            provider.conn.trigger_types.discard(key)
        for binding in self.bound_to(key):
            self._set_bound(binding, None)
            other = self.resolve_provider(binding)
            if other is not None:
                self._deliver(binding, other)

    # -- bindings --------------------------------------------------------------------------

    def add_binding(self, binding: Binding) -> str | None:
        """Record and deliver a binding; an in-process provider's refusal is returned."""
        if binding.id in self.bindings:
            self.remove_binding(binding.id)
        key = self.resolve_provider(binding)
        if key is not None:
            reason = self._deliver(binding, key)
            if reason is not None:
                return reason
        else:
            log.info(
                "trigger parked until its type has a provider",
                id=binding.id,
                trigger_type=binding.trigger_type,
            )
        self.bindings[binding.id] = binding
        self._by_type.setdefault(binding.trigger_type, set()).add(binding.id)
        if binding.owner is not None:
            binding.owner.triggers.add(binding.id)
        return None

    def remove_binding(self, binding_id: str) -> bool:
        binding = self.bindings.pop(binding_id, None)
        if binding is None:
            return False
        self._undeliver(binding)
        ids = self._by_type.get(binding.trigger_type)
        if ids is not None:
            ids.discard(binding_id)
            if not ids:
                del self._by_type[binding.trigger_type]
        if binding.owner is not None:
            binding.owner.triggers.discard(binding_id)
        return True

    def drop_refused(self, binding_id: str) -> None:
        """Forget a binding its provider refused, without telling that provider again."""
        binding = self.bindings.get(binding_id)
        if binding is not None:
            self._set_bound(binding, None)
            self.remove_binding(binding_id)

    def expect_ack(self, binding_id: str, waiter: AckWaiter) -> None:
        """Hand the provider's acknowledgement of ``binding_id`` to ``waiter`` (once)."""
        self._ack_waiters[binding_id] = waiter

    def forget_ack(self, binding_id: str) -> None:
        self._ack_waiters.pop(binding_id, None)

    def acknowledge(self, conn: Connection, msg: m.TriggerRegistrationResult) -> None:
        """A provider's answer to a delivery: an error parks the binding and tells its owner."""
        waiter = self._ack_waiters.pop(msg.id, None)
        if waiter is not None:
            waiter(msg)
            return
        binding = self.bindings.get(msg.id)
        if binding is None or binding.bound_to is None:
            return
        provider = self.providers.get(binding.bound_to)
        if provider is None or provider.conn is not conn or msg.error is None:
            return
        self._set_bound(binding, None)  # parked until the type is registered again
        if self._live(binding.owner):
            assert binding.owner is not None
            binding.owner.send(
                m.TriggerRegistrationResult(
                    id=binding.id,
                    trigger_type=binding.trigger_type,
                    function_id=binding.function_id,
                    error=msg.error,
                )
            )

    # -- delivery --------------------------------------------------------------------------

    def _set_bound(self, binding: Binding, key: ProviderKey | None) -> None:
        old = binding.bound_to
        if old == key:
            return
        if old is not None:
            ids = self._by_provider.get(old)
            if ids is not None:
                ids.discard(binding.id)
                if not ids:
                    del self._by_provider[old]
        binding.bound_to = key
        if key is not None:
            self._by_provider.setdefault(key, set()).add(binding.id)

    def _deliver(self, binding: Binding, key: ProviderKey) -> str | None:
        """Activate a binding at a provider; returns an in-process provider's refusal."""
        provider = self.providers[key]
        if provider.conn is None:
            reason = provider.on_register(binding) if provider.on_register else None
            self._set_bound(binding, None if reason is not None else key)
            return reason
        sent = provider.conn.send(
            m.RegisterTrigger(
                id=binding.id,
                trigger_type=binding.trigger_type,
                function_id=binding.function_id,
                config=binding.config,
                metadata=binding.metadata,
                namespace=binding.target_ns if binding.target_ns != DEFAULT else None,
                trigger_namespace=key[0] if key[0] != DEFAULT else None,
            )
        )
        self._set_bound(binding, key if sent else None)
        return None

    def _undeliver(self, binding: Binding) -> None:
        key = binding.bound_to
        self._set_bound(binding, None)
        if key is None:
            return
        provider = self.providers.get(key)
        if provider is None:
            return
        if provider.conn is None:
            if provider.on_unregister is not None:
                provider.on_unregister(binding)
        else:
            provider.conn.send(
                m.UnregisterTrigger(id=binding.id, trigger_type=binding.trigger_type)
            )
