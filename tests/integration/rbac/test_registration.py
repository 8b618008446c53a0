"""Registrations through an RBAC listener: session permissions, the three hooks (§13.8) and
the function registration prefix (§13.6)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from iii.triggers import TriggerHandler

from tests.integration.rbac.conftest import Rbac, first, invoke, raw, until
from tests.support import wait_for


def hook_calls(rbac: Rbac, kind: str, key: str, value: str) -> list[dict[str, Any]]:
    return [c for c in rbac.calls()[kind] if c.get(key) == value]


def trigger_type_ids(rbac: Rbac) -> set[str]:
    found = rbac.plain.trigger({"function_id": "engine::triggers::list", "payload": {}})
    return {t["id"] for t in found["triggers"]}


def binding_ids(rbac: Rbac) -> set[str]:
    found = rbac.plain.trigger(
        {"function_id": "engine::registered-triggers::list", "payload": {"include_internal": True}}
    )
    return {b["id"] for b in found["registered_triggers"]}


def test_function_hook_sees_each_registration_once_and_can_veto_or_rename(rbac: Rbac) -> None:
    tag = uuid.uuid4().hex[:8]
    client = rbac.client("valid-token", f"hooked-{tag}")
    try:
        client.register_function(f"ok::{tag}", lambda d: d, description="kept", metadata={"a": 1})
        client.register_function(f"deny::{tag}", lambda d: d)
        client.register_function(f"rename::{tag}", lambda d: {"renamed": True})
        wait_for(lambda: {f"ok::{tag}", f"renamed::{tag}"} <= rbac.function_ids(), 10)
        ids = rbac.function_ids()
        assert f"deny::{tag}" not in ids
        assert f"rename::{tag}" not in ids
        seen = hook_calls(rbac, "fn_hook", "function_id", f"ok::{tag}")
        assert seen == [
            {
                "function_id": f"ok::{tag}",
                "description": "kept",
                "metadata": {"a": 1},
                "namespace": "default",
                "context": {"role": "admin", "user_id": "user-1"},
            }
        ]
        assert len(hook_calls(rbac, "fn_hook", "function_id", f"deny::{tag}")) == 1
    finally:
        client.shutdown()


def test_trigger_type_registration_needs_the_session_permission_and_the_hook(
    rbac: Rbac,
) -> None:
    tag = uuid.uuid4().hex[:8]
    plain_session = rbac.client("valid-token", f"types-a-{tag}")  # no permission
    allowed = rbac.client("prefix-token", f"types-b-{tag}")  # permitted; hook decides
    handler = _NoopTriggers()
    try:
        plain_session.register_trigger_type({"id": f"refused-{tag}", "description": "d"}, handler)
        allowed.register_trigger_type({"id": f"ok-{tag}", "description": "d"}, handler)
        allowed.register_trigger_type({"id": f"deny-{tag}", "description": "d"}, handler)
        wait_for(lambda: f"ok-{tag}" in trigger_type_ids(rbac), 10)
        ids = trigger_type_ids(rbac)
        assert f"deny-{tag}" not in ids
        assert f"refused-{tag}" not in ids
        assert hook_calls(rbac, "type_hook", "trigger_type_id", f"refused-{tag}") == []
        assert hook_calls(rbac, "type_hook", "trigger_type_id", f"ok-{tag}") == [
            {"trigger_type_id": f"ok-{tag}", "description": "d", "context": {"user_id": "tenant-1"}}
        ]
        assert len(hook_calls(rbac, "type_hook", "trigger_type_id", f"deny-{tag}")) == 1
    finally:
        plain_session.shutdown()
        allowed.shutdown()


class _NoopTriggers(TriggerHandler[Any]):
    async def register_trigger(self, config: Any) -> None:
        return None

    async def unregister_trigger(self, config: Any) -> None:
        return None


def test_trigger_hook_can_veto_a_binding(rbac: Rbac) -> None:
    tag = uuid.uuid4().hex[:8]
    with raw(rbac.rbac_url, "valid-token") as ws:
        assert first(ws)["type"] == "workerregistered"
        invoke(ws, "engine::workers::register", {"name": f"binder-{tag}"})
        for bid in (f"ok-{tag}", f"deny-{tag}"):
            ws.send(
                json.dumps(
                    {
                        "type": "registertrigger",
                        "id": bid,
                        "trigger_type": "engine::functions-available",
                        "function_id": "test::ew::public::echo",
                        "config": {"x": 1},
                    }
                )
            )
        wait_for(lambda: f"ok-{tag}" in binding_ids(rbac), 10)
        assert f"deny-{tag}" not in binding_ids(rbac)
        seen = hook_calls(rbac, "trigger_hook", "trigger_id", f"ok-{tag}")
        assert seen == [
            {
                "trigger_id": f"ok-{tag}",
                "trigger_type": "engine::functions-available",
                "function_id": "test::ew::public::echo",
                "config": {"x": 1},
                "metadata": None,
                "namespace": "default",
                "context": {"role": "admin", "user_id": "user-1"},
            }
        ]
        assert len(hook_calls(rbac, "trigger_hook", "trigger_id", f"deny-{tag}")) == 1


def test_prefix_session_registers_p_x_and_is_called_with_x(rbac: Rbac) -> None:
    tag = uuid.uuid4().hex[:8]
    client = rbac.client("prefix-token", f"tenant-{tag}")
    try:
        ref = client.register_function(f"greet-{tag}", lambda d: {"hello": d.get("name")})
        # cannot shadow a trusted function: it lands under the prefix
        client.register_function("test::ew::private::secret", lambda d: {"hijacked": True})
        wait_for(lambda: f"tenant::greet-{tag}" in rbac.function_ids(), 10)
        assert f"greet-{tag}" not in rbac.function_ids()
        assert "tenant::test::ew::private::secret" in rbac.function_ids()
        # the hook saw the unprefixed id
        assert len(hook_calls(rbac, "fn_hook", "function_id", f"greet-{tag}")) == 1
        # other workers call it as P::X; the SDK finds its local handler X
        got = rbac.plain.trigger({"function_id": f"tenant::greet-{tag}", "payload": {"name": "a"}})
        assert got == {"hello": "a"}
        ref.unregister()  # unregisterfunction X removes P::X
        wait_for(lambda: f"tenant::greet-{tag}" not in rbac.function_ids(), 10)
    finally:
        client.shutdown()


def test_functionregistered_acks_the_id_as_the_worker_sent_it(rbac: Rbac) -> None:
    """OBSERVE.md §3.5: the ack names the id before prefix and hook rename; no local dispatch."""
    tag = uuid.uuid4().hex[:8]
    with raw(rbac.rbac_url, "prefix-token") as ws:
        assert first(ws)["type"] == "workerregistered"
        invoke(
            ws,
            "engine::workers::register",
            {"name": f"acked-{tag}", "features": ["observe.v1", "local-dispatch.v1"]},
        )
        ws.send(json.dumps({"type": "registerfunction", "id": f"rename::{tag}"}))
        ack = until(ws, "functionregistered")
        assert (ack["id"], ack["namespace"], ack["local_dispatch"]) == (
            f"rename::{tag}",
            "default",
            False,
        )
        assert f"tenant::renamed::{tag}" in rbac.function_ids()


def test_hook_sees_the_namespace_declared_after_the_registration(rbac: Rbac) -> None:
    """SDK replay order (§4.3): registrations first, engine::workers::register last."""
    tag = uuid.uuid4().hex[:8]
    with raw(rbac.rbac_url, "valid-token") as ws:
        assert first(ws)["type"] == "workerregistered"
        ws.send(json.dumps({"type": "registerfunction", "id": f"early::{tag}"}))
        reply = invoke(
            ws, "engine::workers::register", {"name": f"late-{tag}", "namespace": "orders"}
        )
        assert reply["result"] == {"success": True}
        wait_for(lambda: f"early::{tag}" in rbac.function_ids(), 10)
        assert (
            hook_calls(rbac, "fn_hook", "function_id", f"early::{tag}")[0]["namespace"] == "orders"
        )
        info = rbac.plain.trigger(
            {
                "function_id": "engine::functions::info",
                "payload": {"function_id": f"early::{tag}", "namespace": "orders"},
            }
        )
        assert info["namespace"] == "orders"
