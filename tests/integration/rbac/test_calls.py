"""Calls through an RBAC listener: expose_functions, grants, forbidden list, the exact FORBIDDEN
texts (§13.9), the middleware (§13.7) and the filtered engine::functions::list (§12.2.2)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from iii import TriggerAction
from iii.errors import InvocationError

from tests.integration.rbac.conftest import Rbac, first, invoke, raw
from tests.support import wait_for

NOT_EXPOSED = "function '{}' not allowed (add to rbac.expose_functions)"


@pytest.fixture(scope="module")
def client(rbac: Rbac) -> Iterator[Any]:
    c = rbac.client("valid-token", "calls-client")
    try:
        yield c
    finally:
        c.shutdown()


def call(client: Any, function_id: str, payload: Any = None, **extra: Any) -> Any:
    return client.trigger({"function_id": function_id, "payload": payload or {}, **extra})


def test_authenticated_client_calls_exposed_functions(client: Any) -> None:
    assert call(client, "test::ew::public::echo", {"msg": "hello"})["echo"]["msg"] == "hello"
    assert call(client, "test::ew::by-metadata") == {"by_metadata": True}  # metadata filter
    assert call(client, "test::ew::granted") == {"granted": True}  # allowed_functions


def test_other_functions_are_forbidden_with_the_exact_text(client: Any, rbac: Rbac) -> None:
    before = rbac.calls()["secret"]  # the package's engine is shared: other modules call it
    for fid in ("test::ew::private::secret", "test::no::such::function", "engine::workers::list"):
        with pytest.raises(InvocationError) as info:
            call(client, fid)
        assert (info.value.code, info.value.message) == ("FORBIDDEN", NOT_EXPOSED.format(fid))
    with pytest.raises(InvocationError) as info:
        call(client, "test::ew::public::forbidden")  # exposed, but in forbidden_functions
    assert info.value.code == "FORBIDDEN"
    assert info.value.message == (
        "function 'test::ew::public::forbidden' not allowed (remove from rbac.forbidden_functions)"
    )
    assert rbac.calls()["secret"] == before


def test_denied_invoke_echoes_trace_context(rbac: Rbac) -> None:
    with raw(rbac.rbac_url, "valid-token") as ws:
        first(ws)
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        reply = invoke(ws, "test::ew::private::secret", traceparent=tp, baggage="k=v")
        assert reply["error"]["code"] == "FORBIDDEN"
        assert (reply["traceparent"], reply["baggage"]) == (tp, "k=v")


def test_middleware_sees_every_call_with_payload_action_and_context(
    client: Any, rbac: Rbac
) -> None:
    marker = str(uuid.uuid4())
    call(client, "test::ew::public::echo", {"m": marker})
    client.trigger(
        {
            "function_id": "test::ew::public::echo",
            "payload": {"m": marker, "void": True},
            "action": TriggerAction.Void(),
        }
    )

    def seen() -> list[dict[str, Any]]:
        return [
            c
            for c in rbac.calls()["middleware"]
            if isinstance(c["payload"], dict) and c["payload"].get("m") == marker
        ]

    wait_for(lambda: len(seen()) == 2, 10)
    sync, void = seen()
    assert sync == {
        "function_id": "test::ew::public::echo",
        "payload": {"m": marker},  # as sent: no _caller_worker_id
        "action": None,
        "context": {"role": "admin", "user_id": "user-1"},
        "namespace": "default",
    }
    assert void["action"] == {"type": "void"}
    # engine built-ins bypass the middleware
    before = len(rbac.calls()["middleware"])
    call(client, "engine::functions::list")
    assert len(rbac.calls()["middleware"]) == before


def test_middleware_can_reject_a_call(client: Any) -> None:
    with pytest.raises(InvocationError) as info:
        call(client, "test::ew::public::echo", {"reject": True})
    assert "rejected by middleware" in info.value.message


def test_denied_calls_never_reach_the_middleware(client: Any, rbac: Rbac) -> None:
    before = len(rbac.calls()["middleware"])
    with pytest.raises(InvocationError):
        call(client, "test::ew::private::secret")
    assert len(rbac.calls()["middleware"]) == before


def test_functions_list_shows_only_what_the_session_may_call(client: Any, rbac: Rbac) -> None:
    listed = {f["function_id"] for f in call(client, "engine::functions::list")["functions"]}
    assert {"test::ew::public::echo", "test::ew::by-metadata", "test::ew::granted"} <= listed
    hidden = {
        "test::ew::private::secret",
        "test::ew::public::forbidden",
        "test::rbac-worker::auth",
        "test::rbac-worker::calls",
    }
    assert not listed & hidden
    assert hidden <= rbac.function_ids()  # the plain listener sees them all
    everything = call(client, "engine::functions::list", {"include_internal": True})
    internal = {f["function_id"] for f in everything["functions"]}
    assert "engine::functions::list" in internal
    assert "engine::workers::list" not in internal


def test_functions_info_on_a_hidden_id_is_forbidden(rbac: Rbac) -> None:
    # the listener without auth function: permissive session, expose list only
    with raw(rbac.open_url, None) as ws:
        assert first(ws)["type"] == "workerregistered"
        shown = invoke(ws, "engine::functions::info", {"function_id": "test::ew::public::echo"})
        assert shown["result"]["function_id"] == "test::ew::public::echo"
        hidden = invoke(ws, "engine::functions::info", {"function_id": "test::ew::private::secret"})
        assert hidden["error"] == {
            "code": "FORBIDDEN",
            "message": "Function 'test::ew::private::secret' is not visible to this session.",
        }
        batch = invoke(
            ws,
            "engine::functions::info",
            {"function_ids": ["test::ew::public::echo", "test::ew::private::secret"]},
        )
        rows = batch["result"]["functions"]
        assert rows[0]["function_id"] == "test::ew::public::echo"
        assert rows[1] == {"function_id": "test::ew::private::secret", "error": "not_found"}
        # no middleware on this listener: the call goes straight to its function
        assert invoke(ws, "test::ew::public::echo", {"x": 1})["result"]["echo"]["x"] == 1


def test_namespace_outside_the_session_scope_is_forbidden(rbac: Rbac) -> None:
    with raw(rbac.rbac_url, "scoped-token") as ws:
        assert first(ws)["type"] == "workerregistered"
        reply = invoke(ws, "engine::workers::register", {"name": "scoped", "namespace": "evil"})
        assert reply["error"] == {
            "code": "FORBIDDEN",
            "message": "namespace 'evil' not allowed for this session (permitted: orders)",
        }
        ok = invoke(ws, "engine::workers::register", {"name": "scoped", "namespace": "orders"})
        assert ok["result"] == {"success": True}


def test_infrastructure_carve_out_is_callable_without_any_grant(client: Any) -> None:
    """§13.4 step 4: nothing exposes engine::log::*, ::baggage::*, ::channels::create."""
    assert call(client, "engine::log::info", {"message": "carve-out direct"}) is None
    call(client, "engine::baggage::get_all")
    channel = call(client, "engine::channels::create", {"buffer_size": None})
    assert channel["reader"]["direction"] == "read"


def test_rbac_worker_handler_reaches_the_carve_out_while_serving_a_call(rbac: Rbac) -> None:
    tag = uuid.uuid4().hex[:8]
    worker = rbac.client("valid-token", f"logger-{tag}")
    try:

        def handler(data: Any) -> Any:
            worker.trigger({"function_id": "engine::log::info", "payload": {"message": "in"}})
            return {"logged": True}

        worker.register_function(f"mine::logger-{tag}", handler)
        wait_for(lambda: f"mine::logger-{tag}" in rbac.function_ids(), 10)
        got = rbac.plain.trigger({"function_id": f"mine::logger-{tag}", "payload": {}})
        assert got == {"logged": True}
    finally:
        worker.shutdown()


def test_middleware_without_rbac_diverts_every_call_of_its_listener(rbac: Rbac) -> None:
    """§3.1: middleware_function_id works without an rbac block (no auth, nothing hidden)."""
    marker = str(uuid.uuid4())
    with raw(rbac.middleware_url, None) as ws:
        assert first(ws)["type"] == "workerregistered"
        reply = invoke(ws, "test::ew::public::echo", {"m": marker})
        assert reply["result"]["echo"]["m"] == marker
        listed = invoke(ws, "engine::functions::list")["result"]["functions"]
        assert "test::ew::private::secret" in {f["function_id"] for f in listed}
    seen = [
        c
        for c in rbac.calls()["middleware"]
        if isinstance(c["payload"], dict) and c["payload"].get("m") == marker
    ]
    assert len(seen) == 1
    assert seen[0]["context"] == {}
