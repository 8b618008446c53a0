"""A client on the RBAC listener can never reach a non-exposed function, whatever it sends:
every message type of the protocol (and some it does not have) is tried from a raw WebSocket,
then the trusted worker's record shows the target was never called — while the same target is
reachable from the plain listener, so the record can tell."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from websockets.sync.client import connect

from tests.integration.rbac.conftest import Rbac, first, invoke, raw, until

SECRET = "test::ew::private::secret"
FORBIDDEN = {
    "code": "FORBIDDEN",
    "message": f"function '{SECRET}' not allowed (add to rbac.expose_functions)",
}


def send(ws: Any, **frame: Any) -> None:
    ws.send(json.dumps(frame))


def assert_forbidden(reply: dict[str, Any], function_id: str) -> None:
    assert reply["error"] == {
        "code": "FORBIDDEN",
        "message": f"function '{function_id}' not allowed (add to rbac.expose_functions)",
    }


def trusted_worker_id(rbac: Rbac) -> str:
    workers = rbac.plain.trigger({"function_id": "engine::workers::list", "payload": {}})
    return next(w["id"] for w in workers["workers"] if w["name"] == "rbac-worker")


def trusted_binding(rbac: Rbac) -> str:
    found = rbac.plain.trigger(
        {"function_id": "engine::registered-triggers::list", "payload": {"include_internal": True}}
    )
    ids = [
        b["id"]
        for b in found["registered_triggers"]
        if b["function_id"] == "test::rbac-worker::noop"
    ]
    assert len(ids) == 1
    return str(ids[0])


def test_no_message_type_reaches_a_non_exposed_function(rbac: Rbac) -> None:
    before = rbac.calls()["secret"]  # the package's engine is shared: other modules call it
    with raw(rbac.rbac_url, "valid-token") as ws:
        assert first(ws)["type"] == "workerregistered"
        assert invoke(ws, "engine::workers::register", {"name": "intruder"})["result"] == {
            "success": True
        }
        # invokefunction: sync, explicit namespaces, enqueue, void, binary frame
        assert invoke(ws, SECRET)["error"] == FORBIDDEN
        assert invoke(ws, SECRET, namespace="default")["error"] == FORBIDDEN
        assert_forbidden(invoke(ws, SECRET, namespace="other"), SECRET)
        assert invoke(ws, SECRET, action={"type": "enqueue", "queue": "q"})["error"] == FORBIDDEN
        send(ws, type="invokefunction", function_id=SECRET, data={}, action={"type": "void"})
        void_reply = until(ws, "invocationresult", function_id=SECRET)
        assert void_reply["error"] == FORBIDDEN  # under a fresh id, SDKs ignore it
        inv = str(uuid.uuid4())
        ws.send(
            json.dumps(
                {"type": "invokefunction", "function_id": SECRET, "data": {}, "invocation_id": inv}
            ).encode()
        )
        assert until(ws, "invocationresult", invocation_id=inv)["error"] == FORBIDDEN
        # the listener's own machinery is not callable either
        for fid in (
            "test::rbac-worker::middleware",
            "test::rbac-worker::auth",
            "test::rbac-worker::on-function-reg",
            "test::rbac-worker::calls",
        ):
            assert_forbidden(invoke(ws, fid, {"function_id": SECRET, "payload": {}}), fid)
        # engine::* built-ins that could lead to it
        for fid, data in (
            (
                "engine::register_trigger",
                {"trigger_type": "engine::workers-available", "function_id": SECRET, "config": {}},
            ),
            ("engine::functions::info", {"function_id": SECRET}),
            ("engine::workers::list", {}),
            ("engine::registered-triggers::list", {}),
            ("engine::workers::info", {"name": "rbac-worker"}),
            ("engine::queue::enqueue", {"queue": "q", "function_id": SECRET, "data": {}}),
        ):
            assert_forbidden(invoke(ws, fid, data), fid)
        # registertrigger at it, in default and in another namespace
        for ns in (None, "other"):
            bid = str(uuid.uuid4())
            frame = {
                "type": "registertrigger",
                "id": bid,
                "trigger_type": "engine::workers-available",
                "function_id": SECRET,
                "config": {},
            }
            if ns:
                frame["namespace"] = ns
            ws.send(json.dumps(frame))
            result = until(ws, "triggerregistrationresult", id=bid)
            assert result["error"] == {
                "code": "FORBIDDEN",
                "message": f"function '{SECRET}' not allowed in namespace '{ns or 'default'}'",
            }
        # take the id over, or remove it from its owner
        send(ws, type="registerfunction", id=SECRET)
        assert until(ws, "registrationrejected")["code"] == "FUNCTION_NAMESPACE_CONFLICT"
        send(ws, type="unregisterfunction", id=SECRET)
        # or stand in for an engine built-in (the carve-out would send others to it)
        send(ws, type="registerfunction", id="engine::log::info")
        assert until(ws, "registrationrejected")["function_id"] == "engine::log::info"
        # a trigger type whose bindings could be pointed at it (not allowed for this session)
        send(ws, type="registertriggertype", id="intruder-type", description="x")
        # impersonate the trusted worker, answer calls that are not ours
        send(ws, type="reattach", previous_worker_id=trusted_worker_id(rbac), reattach_token="x")
        send(
            ws,
            type="invocationresult",
            invocation_id=str(uuid.uuid4()),
            function_id=SECRET,
            result={"forged": True},
        )
        send(ws, type="registerservice", id="svc")
        send(ws, type="unregistertrigger", id=trusted_binding(rbac), trigger_type="x")
        send(ws, type="unregistertriggertype", id="engine::workers-available")
        # an observer on an exposed function whose activations would call the secret one
        # (OBSERVE.md §5.2: FORBIDDEN, or dropped where the listener has no rule for it)
        send(
            ws,
            type="observe",
            id=str(uuid.uuid4()),
            source={"function_id": "test::ew::public::echo"},
            target={"function_id": SECRET},
        )
        send(ws, type="sup_ping", seq=1)
        send(ws, type="workerregistered", worker_id=str(uuid.uuid4()))
        send(ws, type="ping")
        assert until(ws, "pong") == {"type": "pong"}
        # still served; the observed function runs, from here and from the plain listener
        assert invoke(ws, "test::ew::public::echo", {"still": "here"})["result"]["echo"]["still"]
        rbac.plain.trigger({"function_id": "test::ew::public::echo", "payload": {}})
        # connections come and go: workers-available fires to every live binding
        with connect(rbac.engine.url) as other:
            first(other)
        time.sleep(0.5)
    assert SECRET in rbac.function_ids()  # not unregistered by the intruder
    assert trusted_binding(rbac)  # nor the trusted worker's binding removed
    assert "intruder-type" not in {
        t["id"]
        for t in rbac.plain.trigger({"function_id": "engine::triggers::list", "payload": {}})[
            "triggers"
        ]
    }
    assert rbac.calls()["secret"] == before
    # the record can tell: the same function is reachable from the plain listener
    assert rbac.plain.trigger({"function_id": SECRET, "payload": {}}) == {"secret": True}
    assert rbac.calls()["secret"] == before + 1


def test_durable_trigger_at_a_non_exposed_function_is_forbidden(rbac: Rbac) -> None:
    """engine::register_trigger exposed (listener without auth): its target must still pass."""
    with raw(rbac.open_url, None) as ws:
        assert first(ws)["type"] == "workerregistered"
        data = {"trigger_type": "engine::workers-available", "function_id": SECRET, "config": {}}
        assert invoke(ws, "engine::register_trigger", data)["error"] == {
            "code": "FORBIDDEN",
            "message": f"function '{SECRET}' not allowed in namespace 'default'",
        }
        data["function_id"] = "test::ew::public::echo"
        bound = invoke(ws, "engine::register_trigger", data)["result"]
        assert invoke(ws, "engine::unregister_trigger", {"id": bound["id"]})["error"]["code"] == (
            "FORBIDDEN"  # not exposed on this listener
        )
    rbac.plain.trigger({"function_id": "engine::unregister_trigger", "payload": bound})


def test_channels_work_through_the_rbac_listener(rbac: Rbac) -> None:
    with raw(rbac.rbac_url, "valid-token") as ws:
        first(ws)
        refs = invoke(ws, "engine::channels::create", {"buffer_size": None})["result"]
    writer, reader = refs["writer"], refs["reader"]

    def side(ref: dict[str, Any]) -> str:
        return (
            f"{rbac.rbac_url}/ws/channels/{ref['channel_id']}"
            f"?key={ref['access_key']}&dir={ref['direction']}"
        )

    with connect(side(reader)) as r, connect(side(writer)) as w:
        w.send(b"chunk-1")
        w.send("control")
        w.close()
        assert r.recv(timeout=5) == b"chunk-1"
        assert r.recv(timeout=5) == "control"
