"""Worker-name and function-id leases (§6.5, §8.3) seen from real SDK workers and raw frames."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from iii import InitOptions, register_worker
from websockets.sync.client import connect

from tests.integration.engine.conftest import function_ids, wait_functions
from tests.support import EngineProcess, WorkerProcess, wait_for

OWNER = """
import os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="billing"))
w.register_function("billing::charge", lambda data: {"charged": True, "by": os.getpid()})
while True:
    time.sleep(1)
"""


def raw_register(url: str, name: str, functions: list[str]) -> Any:
    """A raw protocol client: announce a name, register ids; returns the open socket."""
    ws = connect(url, max_size=None)
    first = json.loads(ws.recv(timeout=5))
    assert first["type"] == "workerregistered"
    ws.send(
        json.dumps(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "action": {"type": "void"},
                "data": {"name": name, "pid": 1},
            }
        )
    )
    for fid in functions:
        ws.send(json.dumps({"type": "registerfunction", "id": fid}))
    return ws


def test_second_live_worker_with_the_same_name_is_rejected(
    engine: EngineProcess, tmp_path: Path, client: Any
) -> None:
    owner = WorkerProcess(OWNER, tmp_path, engine.url, "owner")
    try:
        wait_functions(client, "billing::charge")
        ws = raw_register(engine.url, "billing", [])
        rejected = json.loads(ws.recv(timeout=5))
        assert rejected["type"] == "registrationrejected"
        assert rejected["code"] == "WORKER_NAMESPACE_CONFLICT"
        assert rejected["worker_name"] == "billing"
        assert rejected["namespace"] == "default"
        assert rejected["owner_worker_id"]
        with pytest.raises(websockets.ConnectionClosed):  # the engine closes the link
            ws.recv(timeout=5)
        # The SDK treats it as fatal: state "failed", no reconnect.
        dup = register_worker(
            engine.url, InitOptions(worker_name="billing", otel={"enabled": False})
        )
        try:
            wait_for(lambda: dup.get_connection_state() == "failed", timeout=5)
        finally:
            dup.shutdown()
        assert client.trigger({"function_id": "billing::charge", "payload": {}})["charged"]
    finally:
        owner.stop()


def test_function_conflict_is_rejected_and_the_worker_keeps_its_connection(
    engine: EngineProcess, tmp_path: Path, client: Any
) -> None:
    owner = WorkerProcess(OWNER, tmp_path, engine.url, "owner")
    try:
        wait_functions(client, "billing::charge")
        ws = raw_register(engine.url, "intruder", ["billing::charge", "intruder::ok"])
        rejected = json.loads(ws.recv(timeout=5))
        assert rejected["type"] == "registrationrejected"
        assert rejected["code"] == "FUNCTION_NAMESPACE_CONFLICT"
        assert rejected["function_id"] == "billing::charge"
        # still connected and serving: its other function is callable
        wait_functions(client, "intruder::ok")
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
        result = client.trigger({"function_id": "billing::charge", "payload": {}})
        assert result["by"] == owner.proc.pid
        ws.close()
    finally:
        owner.stop()


def test_restarted_worker_reclaims_its_name_and_ids_at_once(
    engine: EngineProcess, tmp_path: Path, client: Any
) -> None:
    first = WorkerProcess(OWNER, tmp_path, engine.url, "owner")
    wait_functions(client, "billing::charge")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)
    second = WorkerProcess(OWNER, tmp_path, engine.url, "owner")
    try:

        def served_by_second() -> bool:
            if "billing::charge" not in function_ids(client):
                return False
            result = client.trigger({"function_id": "billing::charge", "payload": {}})
            return result["by"] == second.proc.pid

        wait_for(served_by_second, timeout=15)
        assert "WORKER_NAMESPACE_CONFLICT" not in second.output()
    finally:
        second.stop()


def test_restarted_worker_reclaims_even_before_the_old_socket_is_noticed(
    engine: EngineProcess,
) -> None:
    """A raw reconnect that names the same worker right after a close: no conflict."""
    for _ in range(5):
        ws = raw_register(engine.url, "flappy", ["flappy::f"])
        ws.close()
        ws2 = raw_register(engine.url, "flappy", ["flappy::f"])
        ws2.send(json.dumps({"type": "ping"}))
        reply = json.loads(ws2.recv(timeout=5))
        assert reply == {"type": "pong"}, reply
        ws2.close()
        time.sleep(0.05)


HIJACKER = """
import os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="hijacker"))
w.register_function("engine::functions::list", lambda data: {"functions": [], "hijacked": True})
w.register_function("hijacker::ok", lambda data: {"ok": True})
while True:
    time.sleep(1)
"""


def test_a_worker_cannot_take_an_engine_built_ins_id_on_a_plain_listener(
    engine: EngineProcess, tmp_path: Path, client: Any
) -> None:
    """§19.1 item 9 improved: the registration is refused (FUNCTION_NAMESPACE_CONFLICT, owner
    ""), the SDK logs it and keeps serving, and the built-in still answers every caller."""
    ws = raw_register(engine.url, "raw-hijacker", ["engine::functions::list"])
    try:
        frame = json.loads(ws.recv(timeout=5))
        assert frame == {
            "type": "registrationrejected",
            "code": "FUNCTION_NAMESPACE_CONFLICT",
            "namespace": "default",
            "function_id": "engine::functions::list",
            "owner_worker_id": "",
        }
    finally:
        ws.close()
    sdk = WorkerProcess(HIJACKER, tmp_path, engine.url, "hijacker")
    try:
        wait_functions(client, "hijacker::ok")
        wait_for(lambda: "engine::functions::list" in sdk.output(), 10)
        assert "Function registration rejected (FUNCTION_NAMESPACE_CONFLICT)" in sdk.output()
        result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
        assert "hijacked" not in result
        assert "hijacker::ok" in {f["function_id"] for f in result["functions"]}
    finally:
        sdk.stop()
