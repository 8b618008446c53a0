"""Messages up to 64 MiB through a real engine (OBSERVE.md §11, PROTOCOL.md §3.4, §17).

SDK 0.25 workers round-trip a 30 MiB non-ASCII string (fragmented both ways) while the
engine's peak RSS is measured; messages over 64 MiB are answered with ``payload_too_large``
whichever side is too big, and the same connections go on serving. SDK 0.23 writes JSON
with ``\\u`` escapes in one frame and reads at most 1 MiB: what it can send is shown here too.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from iii import InvocationError
from websockets.sync.client import ClientConnection, connect

from tests.integration.engine.conftest import wait_functions
from tests.support import (
    EngineProcess,
    WorkerProcess,
    client_fixture,
    engine_fixture,
    require_sdk025,
)

MIB = 1024 * 1024
LIMIT = 64 * MIB
ROUND_TRIP = 30 * MIB
UNIT = "é€😀"  # 2-, 3- and 4-byte UTF-8: 9 bytes, never on a fragment's edge by luck alone
# The engine's peak RSS may grow by at most this many payloads. While the answer passes it
# holds the parsed answer (a str, UCS-4 for emoji: 4/3 of the UTF-8), the UTF-8 copy orjson
# caches on that str while encoding, and the encoded message: ~3.3 payloads. The call's own
# input is still alive too (with its cached UTF-8, ~2.3 payloads): the observe family keeps
# each call's message on its Pending until the call completes. ~5.7 measured.
PEAK_COPIES = 7

ECHO_WORKER = """
import hashlib, os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="big-echo"))
def echo(data):
    return data
def measure(data):
    raw = data["text"].encode()
    return {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
def grow(data):
    return "g" * data["bytes"]
w.register_function("big::echo", echo, local_dispatch=False)
w.register_function("big::grow", grow, local_dispatch=False)
w.register_function("big::measure", measure, local_dispatch=False)
print("ready", flush=True)
while True:
    time.sleep(1)
"""

CALLER = """
import json, os, time
from iii import register_worker, InitOptions, InvocationError
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="big-caller"))
w.trigger({"function_id": "engine::functions::list", "payload": {}})  # connected
unit = os.environ["UNIT"]
text = unit * (int(os.environ["BYTES"]) // len(unit.encode()))
def emit(**fields):
    print("RESULT " + json.dumps(fields), flush=True)
def call(function_id, payload):
    return w.trigger({"function_id": function_id, "payload": payload, "timeout_ms": 90000})
started = time.monotonic()
try:
    if os.environ["MODE"] == "echo":
        out = call(os.environ.get("FUNCTION", "big::echo"), {"text": text})["text"]
    elif os.environ["MODE"] == "grow":
        text = "g" * int(os.environ["BYTES"])
        out = call("big::grow", {"bytes": len(text)})
    else:
        scope = os.environ["SCOPE"]
        call("state::set", {"scope": scope, "key": "big", "value": text})
        out = call("state::get", {"scope": scope, "key": "big"})
    emit(ok=True, equal=out == text, size=len(text.encode()), seconds=time.monotonic() - started)
except InvocationError as exc:
    emit(ok=False, code=exc.code, message=exc.message)
emit(small=call("big::echo", {"n": 1})["n"])
w.shutdown()
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    tmp = tmp_path_factory.mktemp("large")
    state = {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}}
    yield from engine_fixture(tmp, {"workers": [{"name": "iii-state", "config": state}]})


@pytest.fixture(scope="module")
def client(engine: EngineProcess) -> Iterator[Any]:
    yield from client_fixture(engine.url, "large-0.23")


@pytest.fixture(scope="module")
def echo(
    engine: EngineProcess, client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    tmp = tmp_path_factory.mktemp("echo")
    worker = WorkerProcess(ECHO_WORKER, tmp, engine.url, "echo", python=require_sdk025())
    wait_functions(client, "big::echo", "big::grow", "big::measure", "state::get", timeout=30)
    yield worker
    worker.stop()


def run_caller(engine: EngineProcess, tmp: Path, **env: str) -> list[dict[str, Any]]:
    """Run CALLER under SDK 0.25 to its end; its RESULT lines."""
    worker = WorkerProcess(
        CALLER, tmp, engine.url, "caller", python=require_sdk025(), UNIT=UNIT, **env
    )
    try:
        worker.proc.wait(120)
    finally:
        worker.stop()
    lines = [ln for ln in worker.output().splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 2, worker.output()[-3000:]
    return [json.loads(ln.removeprefix("RESULT ")) for ln in lines]


def proc_status(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM`` figure of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_30_mib_non_ascii_round_trip_between_two_025_workers_in_bounded_memory(
    engine: EngineProcess, echo: WorkerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert engine.proc is not None
    pid = engine.proc.pid
    idle = proc_status(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM restarts from the current RSS
    result, after = run_caller(engine, tmp_path, MODE="echo", BYTES=str(ROUND_TRIP))
    peak = proc_status(pid, "VmHWM")
    size = result.get("size", ROUND_TRIP)
    with capsys.disabled():
        print(
            f"\n[large messages] {size / MIB:.1f} MiB non-ASCII round trip in "
            f"{result.get('seconds', 0):.1f} s; engine RSS idle {idle / MIB:.1f} MiB, "
            f"peak (VmHWM) {peak / MIB:.1f} MiB: +{(peak - idle) / MIB:.1f} MiB "
            f"= {(peak - idle) / size:.2f}x the payload"
        )
    assert result["ok"] and result["equal"], result
    assert size > 30 * MIB - 9
    assert after == {"small": 1}
    assert peak - idle < PEAK_COPIES * size


def test_30_mib_through_a_local_actor_link_both_ways(
    engine: EngineProcess, echo: WorkerProcess, tmp_path: Path
) -> None:
    """state::set sends it to the iii-state actor's socketpair, state::get brings it back."""
    scope = f"big-{uuid.uuid4().hex[:8]}"
    result, after = run_caller(engine, tmp_path, MODE="state", BYTES=str(ROUND_TRIP), SCOPE=scope)
    assert result["ok"] and result["equal"], result
    assert after == {"small": 1}


def test_65_mib_call_from_an_025_worker_is_payload_too_large(
    engine: EngineProcess, echo: WorkerProcess, tmp_path: Path
) -> None:
    """SDK 0.25 refuses it before sending (its own limit is the engine's): the caller sees
    payload_too_large, and its connection (and the engine) go on serving."""
    result, after = run_caller(engine, tmp_path, MODE="echo", BYTES=str(65 * MIB))
    assert result["ok"] is False and result["code"] == "payload_too_large", result
    assert after == {"small": 1}


def test_65_mib_result_of_an_025_worker_reaches_its_caller_as_payload_too_large(
    engine: EngineProcess, echo: WorkerProcess, tmp_path: Path
) -> None:
    """The callee's SDK sends an error result instead (OBSERVE.md §11 item 5); relayed."""
    result, after = run_caller(engine, tmp_path, MODE="grow", BYTES=str(65 * MIB))
    assert result["ok"] is False and result["code"] == "payload_too_large", result
    assert str(LIMIT) in result["message"]
    assert after == {"small": 1}


# -- the engine's own refusals, seen from a bare WebSocket client -----------------------------


def raw_client(engine: EngineProcess) -> ClientConnection:
    return connect(engine.url, max_size=None, open_timeout=10)


def receive_json(ws: ClientConnection, tag: str, timeout: float = 30) -> dict[str, Any]:
    while True:
        msg = orjson.loads(ws.recv(timeout=timeout))
        if msg.get("type") == tag:
            return dict(msg)


def send_fragmented(ws: ClientConnection, payload: bytes) -> None:
    """As SDK 0.25 sends a message over 16 MiB: 1 MiB fragments (ASCII here: any cut is safe)."""
    ws.send(payload[i : i + MIB].decode() for i in range(0, len(payload), MIB))


def invoke_bytes(function_id: str, text: str, invocation_id: str) -> bytes:
    # invocation_id after the data, as the SDKs order an invokefunction
    return orjson.dumps(
        {
            "type": "invokefunction",
            "function_id": function_id,
            "data": {"text": text},
            "invocation_id": invocation_id,
        }
    )


def test_65_mib_message_from_a_client_is_answered_payload_too_large_and_it_stays_connected(
    engine: EngineProcess, echo: WorkerProcess
) -> None:
    with raw_client(engine) as ws:
        receive_json(ws, "workerregistered")
        big_id = str(uuid.uuid4())
        payload = invoke_bytes("big::echo", "a" * (65 * MIB), big_id)
        send_fragmented(ws, payload)
        answer = receive_json(ws, "invocationresult")
        assert answer["invocation_id"] == big_id
        assert answer["error"]["code"] == "payload_too_large"
        assert answer["error"]["message"].startswith(
            f"invokefunction for big::echo is {len(payload)} bytes; the limit is {LIMIT} bytes"
        )
        small_id = str(uuid.uuid4())
        ws.send(invoke_bytes("big::echo", "small", small_id).decode())
        answer = receive_json(ws, "invocationresult")
        assert answer["invocation_id"] == small_id and answer["result"]["text"] == "small"


def test_call_the_engine_cannot_forward_within_the_limit_is_payload_too_large(
    engine: EngineProcess, echo: WorkerProcess
) -> None:
    """Just under 64 MiB arrives; with the ``_caller_worker_id`` the engine adds for the callee
    it would be over: the caller gets payload_too_large, the callee never sees it."""
    inv = str(uuid.uuid4())
    overhead = len(invoke_bytes("big::echo", "", inv))
    payload = invoke_bytes("big::echo", "b" * (LIMIT - overhead - 8), inv)
    assert len(payload) == LIMIT - 8
    with raw_client(engine) as ws:
        receive_json(ws, "workerregistered")
        send_fragmented(ws, payload)
        answer = receive_json(ws, "invocationresult")
        assert answer["invocation_id"] == inv
        assert answer["error"]["code"] == "payload_too_large"
        assert "invokefunction for big::echo" in answer["error"]["message"]
        assert str(LIMIT) in answer["error"]["message"]


def test_65_mib_result_from_a_callee_fails_the_call_with_payload_too_large(
    engine: EngineProcess, client: Any
) -> None:
    with raw_client(engine) as ws:
        receive_json(ws, "workerregistered")
        ws.send(json.dumps({"type": "registerfunction", "id": "big::huge"}))
        wait_functions(client, "big::huge")
        outcome: dict[str, Any] = {}

        def call(size: int) -> None:
            try:
                outcome["result"] = client.trigger(
                    {"function_id": "big::huge", "payload": {"size": size}}
                )
            except InvocationError as exc:
                outcome["error"] = exc

        for size in (65 * MIB, 10):
            outcome.clear()
            caller = threading.Thread(target=call, args=(size,))
            caller.start()
            invocation = receive_json(ws, "invokefunction")
            result = {
                "type": "invocationresult",
                "invocation_id": invocation["invocation_id"],
                "function_id": "big::huge",
                "result": "c" * invocation["data"]["size"],
            }
            send_fragmented(ws, orjson.dumps(result))
            caller.join(30)
            if size > LIMIT:
                error = outcome["error"]
                assert error.code == "payload_too_large"
                assert str(LIMIT) in error.message
            else:
                assert outcome["result"] == "c" * 10  # the callee's link still serves


# -- SDK 0.23: \\u escapes, one frame, and a 1 MiB inbound limit ------------------------------


def test_023_worker_sends_30_mib_to_an_025_worker_when_escaped_it_fits(
    client: Any, echo: WorkerProcess
) -> None:
    """0.23 escapes every non-ASCII character (``€`` → ``\\u20ac``: 3 bytes become 6) and
    sends one unfragmented frame: 30 MiB of ``€`` is a 60 MiB frame, which the engine takes.
    (The answer must stay small: 0.23 reads at most 1 MiB, a bigger message makes it drop
    the connection, so a 30 MiB round trip with a 0.23 worker cannot work.)"""
    text = "€" * (ROUND_TRIP // 3)
    out = client.trigger(
        {"function_id": "big::measure", "payload": {"text": text}, "timeout_ms": 60000}
    )
    raw = text.encode()
    assert out == {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def test_023_worker_whose_escaped_30_mib_exceed_the_limit_gets_payload_too_large(
    client: Any, echo: WorkerProcess
) -> None:
    """The same 30 MiB of mixed non-ASCII text, escaped by 0.23, is ~80 MiB on the wire."""
    text = UNIT * (ROUND_TRIP // len(UNIT.encode()))
    with pytest.raises(InvocationError) as info:
        client.trigger({"function_id": "big::measure", "payload": {"text": text}})
    assert info.value.code == "payload_too_large"
    assert str(LIMIT) in info.value.message
    small = client.trigger({"function_id": "big::measure", "payload": {"text": "ok"}})
    assert small["bytes"] == 2


SMALL_023_WORKER = """
import os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="echo-0.23"))
w.register_function("small::echo", lambda data: data)
while True:
    time.sleep(1)
"""


def test_a_message_over_1_mib_to_an_023_worker_costs_it_its_connection(
    engine: EngineProcess, client: Any, echo: WorkerProcess, tmp_path: Path
) -> None:
    """0.23 reads at most 1 MiB (websockets' default): the engine still sends a bigger
    message (0.23 declares no large-messages.v1, but neither may other clients that read
    more: OBSERVE.md §11 item 3), the worker closes with 1009 and reconnects, and the caller
    gets the error of a callee that went away."""
    worker = WorkerProcess(SMALL_023_WORKER, tmp_path, engine.url, "small")
    try:
        wait_functions(client, "small::echo")
        result, after = run_caller(
            engine, tmp_path, MODE="echo", BYTES=str(2 * MIB), FUNCTION="small::echo"
        )
        assert result == {
            "ok": False,
            "code": "invocation_stopped",
            "message": "Invocation stopped",
        }
        assert after == {"small": 1}
        wait_functions(client, "small::echo")  # it came back
    finally:
        worker.stop()
    closes = [
        json.loads(line)
        for line in engine.log_text().splitlines()
        if "websocket closed by the peer" in line
    ]
    assert any(c.get("code") == 1009 for c in closes), closes  # "message too big"
