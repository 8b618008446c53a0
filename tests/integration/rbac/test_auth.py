"""Authentication at connect on an RBAC listener (PROTOCOL.md §4.1, §6.15, §13.3, §15)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.rbac.conftest import Rbac, first, raw, until
from tests.support import WorkerProcess, require_sdk025, wait_for


def assert_refused(rbac: Rbac, token: str | None, message: str, path: str = "") -> None:
    with raw(rbac.rbac_url, token, path) as ws:
        assert first(ws) == {"type": "error", "error": {"code": "AUTH_ERROR", "message": message}}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        # upstream's Close carries no status: seen as 1005, which SDK 0.23 treats as normal
        assert ws.close_code == 1005


def test_unauthenticated_client_is_refused_with_auth_error(rbac: Rbac) -> None:
    assert_refused(rbac, "wrong-token", "invalid token")
    assert_refused(rbac, None, "invalid token")


def test_auth_result_that_is_not_an_object_is_an_auth_error(rbac: Rbac) -> None:
    assert_refused(rbac, "garbage-token", "invalid auth result: expected an object, got list")


def test_otel_socket_is_authenticated_on_an_rbac_listener(rbac: Rbac) -> None:
    assert_refused(rbac, "wrong-token", "invalid token", "/otel")
    with raw(rbac.rbac_url, "valid-token", "/otel") as ws:
        ws.send(b"OTLP{}")  # accepted, never answered
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)


def test_auth_function_gets_headers_query_params_and_ip(rbac: Rbac) -> None:
    marker = str(uuid.uuid4())
    url = rbac.rbac_url + "/?api_key=k1&api_key=k%202&flag"
    from websockets.sync.client import connect

    with connect(url, additional_headers={"x-test-token": "valid-token", "X-Marker": marker}) as ws:
        assert first(ws)["type"] == "workerregistered"
    seen = [a for a in rbac.calls()["auth"] if a["headers"].get("x-marker") == marker]
    assert len(seen) == 1  # exactly once per connection
    assert seen[0]["query_params"] == {"api_key": ["k1", "k%202"], "flag": [""]}
    assert seen[0]["ip_address"] == "127.0.0.1"
    assert seen[0]["headers"]["x-test-token"] == "valid-token"
    assert seen[0]["headers"]["host"].startswith("127.0.0.1:")
    assert "sec-websocket-key" in seen[0]["headers"]


def test_auth_function_sees_the_headers_the_websocket_handshake_consumes(rbac: Rbac) -> None:
    """§13.3: *every* upgrade request header, also upgrade, connection, the version, the
    offered subprotocols and extensions, which the WebSocket library parses for itself."""
    marker = str(uuid.uuid4())
    from websockets.sync.client import connect

    with connect(
        rbac.rbac_url,
        additional_headers={"x-test-token": "valid-token", "x-marker": marker},
        subprotocols=["iii.v1", "other"],  # type: ignore[list-item]
        compression="deflate",  # offers permessage-deflate in sec-websocket-extensions
    ) as ws:
        assert first(ws)["type"] == "workerregistered"
    (seen,) = [a for a in rbac.calls()["auth"] if a["headers"].get("x-marker") == marker]
    headers = seen["headers"]
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    assert headers["sec-websocket-version"] == "13"
    assert headers["sec-websocket-protocol"] == "iii.v1, other"
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
    assert headers["host"] == rbac.rbac_url.removeprefix("ws://")


def test_frames_sent_while_auth_runs_are_processed_in_order_after_it(rbac: Rbac) -> None:
    with raw(rbac.rbac_url, "slow-token") as ws:  # the auth function takes 0.5 s
        inv = str(uuid.uuid4())
        ws.send(json.dumps({"type": "ping"}))
        ws.send(
            json.dumps(
                {
                    "type": "invokefunction",
                    "function_id": "test::ew::public::echo",
                    "data": {"early": True},
                    "invocation_id": inv,
                }
            )
        )
        assert first(ws)["type"] == "workerregistered"  # still the first frame
        assert first(ws) == {"type": "pong"}
        result = until(ws, "invocationresult", invocation_id=inv)
        assert result["result"]["echo"]["early"] is True


def test_sdk_client_without_a_token_never_gets_a_worker(rbac: Rbac) -> None:
    client = rbac.client("wrong-token", "refused-client")
    try:
        time.sleep(0.5)
        workers = rbac.plain.trigger({"function_id": "engine::workers::list", "payload": {}})
        assert "refused-client" not in {w["name"] for w in workers["workers"]}
    finally:
        client.shutdown()


SDK025_CLIENT = """
import os
from iii import register_worker, InitOptions
w = register_worker(os.environ["RBAC_URL"], InitOptions(worker_name="bearer-client",
                                                        otel={"enabled": False}))
print("RESULT", w.trigger({"function_id": "test::ew::public::echo", "payload": {"v": 25}}),
      flush=True)
w.shutdown()
"""


def test_sdk025_bearer_token_authenticates(rbac: Rbac, tmp_path: Path) -> None:
    python = require_sdk025()
    proc = WorkerProcess(
        SDK025_CLIENT,
        tmp_path,
        rbac.engine.url,
        "bearer",
        python=python,
        RBAC_URL=rbac.rbac_url,
        III_TOKEN="valid-token",
    )
    try:
        wait_for(lambda: "RESULT" in proc.output(), 20)
        assert "'v': 25" in proc.output()
    finally:
        proc.stop()


SDK025_TELEMETRY = """
import os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["RBAC_URL"], InitOptions(worker_name="otel-client"))
print("RESULT", w.trigger({"function_id": "test::ew::public::echo", "payload": {}}), flush=True)
time.sleep(30)
"""


def test_sdk025_telemetry_socket_is_authenticated_with_the_same_token(
    rbac: Rbac, tmp_path: Path
) -> None:
    """§15: 0.25 dials /otel on the same listener with the same headers; each socket is
    authenticated once."""
    python = require_sdk025()
    token = f"valid-token-{uuid.uuid4().hex[:8]}"
    proc = WorkerProcess(
        SDK025_TELEMETRY,
        tmp_path,
        rbac.engine.url,
        "otel",
        python=python,
        RBAC_URL=rbac.rbac_url,
        III_TOKEN=token,
        OTEL_ENABLED="true",
    )

    def auth_calls() -> int:
        wanted = f"Bearer {token}"
        return sum(1 for a in rbac.calls()["auth"] if a["headers"].get("authorization") == wanted)

    try:
        wait_for(lambda: "RESULT" in proc.output(), 20)
        wait_for(lambda: auth_calls() >= 2, 10)
        time.sleep(0.5)
        assert auth_calls() == 2
    finally:
        proc.stop()
