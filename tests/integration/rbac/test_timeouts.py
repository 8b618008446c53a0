"""The bounds on what an RBAC or middleware listener waits for (no §13 key sets them, upstream
has none): the auth function 10 s, a registration hook 10 s, the middleware 30 s. Each time the
client gets the documented error (or, for a hook, the denial) promptly, and the engine keeps
serving every other client meanwhile. The trusted worker's ``hang`` variants never answer."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from websockets.sync.client import ClientConnection

from tests.integration.rbac.conftest import Rbac, first, invoke, raw, until
from tests.support import wait_for


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised by the test through the box
            box["error"] = exc
        box["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def joined(thread: threading.Thread, box: dict[str, Any], timeout: float) -> dict[str, Any]:
    thread.join(timeout)
    assert not thread.is_alive(), "the hanging side never got its answer"
    if "error" in box:
        raise box["error"]
    return box


def others_are_served(rbac: Rbac) -> None:
    """A fresh client on the same RBAC listener is authenticated and served at once."""
    start = time.monotonic()
    with raw(rbac.rbac_url, "valid-token") as ws:
        assert first(ws)["type"] == "workerregistered"
        result = invoke(ws, "test::ew::public::echo", {"meanwhile": True})
        assert result["result"]["echo"]["meanwhile"] is True
    assert rbac.plain.trigger({"function_id": "test::ew::public::echo", "payload": {}})
    assert time.monotonic() - start < 5


def announce(ws: ClientConnection) -> None:
    """engine::workers::register, so registrations are applied now (no namespace grace)."""
    ws.send(
        json.dumps(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "action": {"type": "void"},
                "data": {"name": f"hang-{uuid.uuid4().hex[:6]}", "pid": 1},
            }
        )
    )


def test_an_auth_function_that_hangs_refuses_the_connection_after_10_s(rbac: Rbac) -> None:
    def connect_and_wait() -> dict[str, Any]:
        with raw(rbac.rbac_url, "hang-token") as ws:
            frame: dict[str, Any] = json.loads(ws.recv(timeout=30))
            return frame

    thread, box = in_background(connect_and_wait)
    time.sleep(1.0)
    others_are_served(rbac)
    joined(thread, box, 30)
    assert box["value"] == {
        "type": "error",
        "error": {
            "code": "AUTH_ERROR",
            "message": "auth function 'test::rbac-worker::auth' did not answer within 10000 ms",
        },
    }
    assert 9.5 < box["elapsed"] < 14


def test_a_function_hook_that_hangs_denies_the_registration_after_10_s(rbac: Rbac) -> None:
    fid = f"hang::{uuid.uuid4().hex[:8]}"

    def register_then_call() -> dict[str, Any]:
        with raw(rbac.rbac_url, "valid-token") as ws:
            assert first(ws)["type"] == "workerregistered"
            announce(ws)
            ws.send(json.dumps({"type": "registerfunction", "id": fid}))
            # read after the registration (hooks are awaited inline, §4.5): answered once the
            # hook's 10 s are up
            return invoke_waiting(ws, "test::ew::public::echo", {"after": fid}, 30)

    thread, box = in_background(register_then_call)
    wait_for(lambda: any(c["function_id"] == fid for c in rbac.calls()["fn_hook"]), 10)
    others_are_served(rbac)
    joined(thread, box, 30)
    assert box["value"]["result"]["echo"]["after"] == fid
    assert 9.5 < box["elapsed"] < 14
    assert fid not in rbac.function_ids()
    reason = "hook 'test::rbac-worker::on-function-reg' did not answer within 10000 ms"
    wait_for(lambda: reason in rbac.engine.log_text(), 5)


def test_a_trigger_hook_that_hangs_answers_hook_timeout_after_10_s(rbac: Rbac) -> None:
    binding = f"hang-{uuid.uuid4().hex[:8]}"

    def register_trigger() -> dict[str, Any]:
        with raw(rbac.rbac_url, "valid-token") as ws:
            assert first(ws)["type"] == "workerregistered"
            announce(ws)
            ws.send(
                json.dumps(
                    {
                        "type": "registertrigger",
                        "id": binding,
                        "trigger_type": "engine::workers-available",
                        "function_id": "test::ew::public::echo",
                        "config": {},
                    }
                )
            )
            return until(ws, "triggerregistrationresult", timeout=30, id=binding)

    thread, box = in_background(register_trigger)
    wait_for(lambda: any(c["trigger_id"] == binding for c in rbac.calls()["trigger_hook"]), 10)
    others_are_served(rbac)
    joined(thread, box, 30)
    assert box["value"]["error"] == {
        "code": "hook_timeout",
        "message": "hook 'test::rbac-worker::on-trigger-reg' did not answer within 10000 ms",
    }
    assert 9.5 < box["elapsed"] < 14


def test_a_middleware_that_hangs_gives_the_caller_middleware_timeout_after_30_s(
    rbac: Rbac,
) -> None:
    def call_through_the_middleware() -> dict[str, Any]:
        with raw(rbac.middleware_url, None) as ws:
            assert first(ws)["type"] == "workerregistered"
            return invoke_waiting(ws, "test::ew::public::echo", {"hang": True}, 45)

    thread, box = in_background(call_through_the_middleware)
    wait_for(lambda: any(c["payload"] == {"hang": True} for c in rbac.calls()["middleware"]), 10)
    others_are_served(rbac)
    joined(thread, box, 45)
    assert box["value"]["error"] == {
        "code": "middleware_timeout",
        "message": "middleware 'test::rbac-worker::middleware' did not answer within 30000 ms",
    }
    assert 29.5 < box["elapsed"] < 34


def invoke_waiting(
    ws: ClientConnection, function_id: str, data: Any, timeout: float
) -> dict[str, Any]:
    inv = str(uuid.uuid4())
    ws.send(
        json.dumps(
            {
                "type": "invokefunction",
                "function_id": function_id,
                "data": data,
                "invocation_id": inv,
            }
        )
    )
    return until(ws, "invocationresult", timeout=timeout, invocation_id=inv)
