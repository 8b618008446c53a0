"""Malformed frames from a raw client: logged and dropped, the engine keeps serving (§14)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect

from tests.integration.engine.conftest import wait_functions
from tests.support import EngineProcess, WorkerProcess

ADDER = """
import os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="adder"))
w.register_function("math::add", lambda d: {"sum": d["a"] + d["b"]})
while True:
    time.sleep(1)
"""

GARBAGE: list[str | bytes] = [
    "{not json",
    "[1, 2, 3]",
    '"just a string"',
    "   ",
    '{"no_type": true}',
    '{"type": "unregisterall"}',
    '{"type": "registerfunction"}',
    '{"type": "invokefunction", "function_id": 42, "data": {}}',
    '{"type": "invokefunction", "function_id": "math::add", "invocation_id": "not-a-uuid"}',
    '{"type": "invocationresult", "invocation_id": "' + str(uuid.uuid4()) + '"}',
    b"\xff\xfe binary garbage",
    b"OTLP{}",  # telemetry prefix: silently accepted
]


def pong(ws: Any) -> bool:
    ws.send(json.dumps({"type": "ping"}))
    return json.loads(ws.recv(timeout=10)) == {"type": "pong"}


@pytest.fixture
def adder(engine: EngineProcess, tmp_path: Path, client: Any) -> Any:
    worker = WorkerProcess(ADDER, tmp_path, engine.url, "adder")
    wait_functions(client, "math::add")
    yield worker
    worker.stop()


def test_garbage_frames_are_dropped_and_the_connection_kept(
    engine: EngineProcess, client: Any, adder: Any
) -> None:
    with connect(engine.url, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "workerregistered"
        for frame in GARBAGE:
            ws.send(frame)
        assert pong(ws)
        # the SDK workers never noticed
        assert client.trigger({"function_id": "math::add", "payload": {"a": 1, "b": 2}}) == {
            "sum": 3
        }
    log = engine.log_text()
    assert "dropped undecodable frame" in log
    assert "unknown message type 'unregisterall'" in log


def test_a_20_mib_frame_is_read_whole_as_sdk_023_sends_one(
    engine: EngineProcess, client: Any, adder: Any
) -> None:
    """Upstream stops at 16 MiB per frame; SDK 0.23 writes any message as one frame, so we
    take frames up to the message limit (64 MiB): this one is garbage, dropped like any."""
    with connect(engine.url, max_size=None) as ws:
        ws.recv(timeout=5)
        ws.send("x" * (20 * 1024 * 1024))
        assert pong(ws)  # the same connection still serves
    assert client.trigger({"function_id": "math::add", "payload": {"a": 2, "b": 2}}) == {"sum": 4}
    assert "dropped undecodable frame" in engine.log_text()


def test_a_30_mib_message_in_1_mib_fragments_is_accepted(engine: EngineProcess) -> None:
    """SDK 0.25 sends messages over 16 MiB as fragments: under 64 MiB they must pass."""
    inv = str(uuid.uuid4())
    body = json.dumps(
        {
            "type": "invokefunction",
            "invocation_id": inv,
            "function_id": "ghost::fn",
            "data": "z" * (30 * 1024 * 1024),
        }
    )
    fragments = [body[i : i + 1024 * 1024] for i in range(0, len(body), 1024 * 1024)]
    with connect(engine.url, max_size=None) as ws:
        ws.recv(timeout=5)
        ws.send(fragments)
        reply = json.loads(ws.recv(timeout=20))
    assert reply["invocation_id"] == inv
    assert reply["error"]["code"] == "function_not_found"


def test_undecodable_call_with_an_id_is_answered_not_left_to_time_out(
    engine: EngineProcess,
) -> None:
    inv = str(uuid.uuid4())
    with connect(engine.url) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "invokefunction", "invocation_id": inv, "data": {}}))
        reply = json.loads(ws.recv(timeout=5))
    assert reply["type"] == "invocationresult"
    assert reply["invocation_id"] == inv
    assert reply["error"]["code"] == "deserialization_error"
    assert "function_id" in reply["error"]["message"]


def test_a_message_over_64_mib_is_refused_and_the_connection_stays(
    engine: EngineProcess, client: Any, adder: Any
) -> None:
    """Over the limit it is read and thrown away as it comes (payload_too_large is answered
    when it says whom to: tests/integration/engine/test_large_messages.py); this one does not."""
    fragment = "y" * (1024 * 1024)
    with connect(engine.url, max_size=None) as ws:
        ws.recv(timeout=5)
        ws.send(fragment for _ in range(65))
        assert pong(ws)
    assert "message over the size limit refused" in engine.log_text()
    assert client.trigger({"function_id": "math::add", "payload": {"a": 2, "b": 2}}) == {"sum": 4}


def test_a_message_running_past_twice_the_limit_tears_down_only_that_connection(
    engine: EngineProcess, client: Any, adder: Any
) -> None:
    fragment = "y" * (1024 * 1024)
    with connect(engine.url, max_size=None) as ws:
        ws.recv(timeout=5)
        with pytest.raises(websockets.ConnectionClosed) as info:
            ws.send(fragment for _ in range(129))
            ws.recv(timeout=20)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert client.trigger({"function_id": "math::add", "payload": {"a": 2, "b": 2}}) == {"sum": 4}


def test_call_to_unknown_function_by_a_raw_client(engine: EngineProcess) -> None:
    inv = str(uuid.uuid4())
    with connect(engine.url) as ws:
        ws.recv(timeout=5)
        ws.send(
            json.dumps(
                {
                    "type": "invokefunction",
                    "invocation_id": inv,
                    "function_id": "ghost::fn",
                    "data": None,
                }
            )
        )
        reply = json.loads(ws.recv(timeout=5))
    assert reply == {
        "type": "invocationresult",
        "invocation_id": inv,
        "function_id": "ghost::fn",
        "error": {
            "code": "function_not_found",
            "message": "Function ghost::fn not found in namespace default.",
        },
    }
