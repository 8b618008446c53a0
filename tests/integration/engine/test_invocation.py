"""SDK workers in their own processes call each other through a real ``iii-supervisor up``."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from iii import InvocationError, TriggerAction

from tests.integration.engine.conftest import function_ids, wait_functions
from tests.support import EngineProcess, WorkerProcess, wait_for

MATH_WORKER = """
import json, os, sys, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="math-worker"))
out = os.environ["OUT"]
def add(data):
    return {"sum": data["a"] + data["b"]}
def boom(data):
    raise ValueError("division by zero, on purpose")
def slow(data):
    time.sleep(float(data.get("seconds", 3)))
    return "late"
def record(data):
    with open(out, "a") as fh:
        fh.write(json.dumps(data) + "\\n")
w.register_function("math::add", add)
w.register_function("math::boom", boom)
w.register_function("math::slow", slow)
w.register_function("math::record", record)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def math_worker(engine: EngineProcess, tmp_path: Path, client: Any) -> Any:
    out = tmp_path / "record.jsonl"
    worker = WorkerProcess(MATH_WORKER, tmp_path, engine.url, "math", OUT=str(out))
    wait_functions(client, "math::add", "math::boom", "math::slow", "math::record")
    worker.out = out  # type: ignore[attr-defined]
    yield worker
    worker.stop()


def test_sync_call_returns_the_sum(client: Any, math_worker: Any) -> None:
    assert client.trigger({"function_id": "math::add", "payload": {"a": 2, "b": 40}}) == {"sum": 42}


def test_unknown_function_is_function_not_found(client: Any, math_worker: Any) -> None:
    with pytest.raises(InvocationError) as info:
        client.trigger({"function_id": "math::nope", "payload": {}})
    assert info.value.code == "function_not_found"
    assert "math::nope not found in namespace default" in info.value.message


def test_handler_error_reaches_the_caller(client: Any, math_worker: Any) -> None:
    with pytest.raises(InvocationError) as info:
        client.trigger({"function_id": "math::boom", "payload": {}})
    assert info.value.code == "invocation_failed"
    assert "division by zero, on purpose" in info.value.message


def test_slow_handler_times_out_for_the_caller(client: Any, math_worker: Any) -> None:
    with pytest.raises(InvocationError) as info:
        client.trigger({"function_id": "math::slow", "payload": {"seconds": 2}, "timeout_ms": 300})
    assert info.value.code == "TIMEOUT"
    # the engine keeps serving: the next call works
    assert client.trigger({"function_id": "math::add", "payload": {"a": 1, "b": 1}}) == {"sum": 2}


def test_void_call_reaches_the_handler(client: Any, math_worker: Any) -> None:
    result = client.trigger(
        {"function_id": "math::record", "payload": {"n": 7}, "action": TriggerAction.Void()}
    )
    assert result is None
    lines = wait_for(lambda: math_worker.out.exists() and math_worker.out.read_text().splitlines())
    assert json.loads(lines[0])["n"] == 7


def test_killed_callee_stops_the_in_flight_call_at_once(client: Any, math_worker: Any) -> None:
    import threading

    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            client.trigger(
                {"function_id": "math::slow", "payload": {"seconds": 20}, "timeout_ms": 15000}
            )
        except InvocationError as exc:
            outcome["error"] = exc
            outcome["at"] = time.monotonic()

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)  # the call is in flight on the worker
    killed_at = time.monotonic()
    math_worker.proc.send_signal(signal.SIGKILL)
    thread.join(10)
    assert outcome["error"].code == "invocation_stopped"
    assert outcome["at"] - killed_at < 1.0
    wait_for(lambda: not ({"math::add", "math::slow"} & function_ids(client)), timeout=5)


def test_many_concurrent_calls_are_all_answered(client: Any, math_worker: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> Any:
        return client.trigger({"function_id": "math::add", "payload": {"a": i, "b": 1}})

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [{"sum": i + 1} for i in range(200)]
