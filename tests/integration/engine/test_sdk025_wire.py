"""The other 0.25 wire changes (PROTOCOL.md §17.1, OBSERVE.md §11), each through a real
0.25 worker, and through 0.23 where it behaves differently: ``configuration::*`` resolved in
``default``, ``Authorization: Bearer`` on every socket of a plain listener, ``unregistertriggertype``
with ``namespace``, ``registerfunction.observe`` accepted, ``"result": null``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.integration.engine.conftest import wait_functions
from tests.support import (
    EngineProcess,
    WorkerProcess,
    client_fixture,
    engine_fixture,
    require_sdk025,
    wait_for,
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    yield from engine_fixture(tmp_path_factory.mktemp("engine"), {"workers": []})


@pytest.fixture(scope="module")
def client(engine: EngineProcess) -> Iterator[Any]:
    yield from client_fixture(engine.url, "wire-client")


def run(
    source: str, tmp_path: Path, engine: EngineProcess, name: str, sdk025: bool, **env: str
) -> str:
    """Run a worker script until it printed its RESULT line; returns what follows it."""
    python = require_sdk025() if sdk025 else None
    worker = WorkerProcess(source, tmp_path, engine.url, name, python=python, **env)
    try:

        def line() -> str | None:
            for text in worker.output().splitlines():
                if text.startswith("RESULT "):
                    return text[len("RESULT ") :]
            return None

        found: str = wait_for(line, timeout=25)
        return found
    finally:
        worker.stop()


def raw_worker(url: str, name: str) -> Any:
    ws = connect(url)
    assert json.loads(ws.recv(timeout=5))["type"] == "workerregistered"
    register = {
        "type": "invokefunction",
        "function_id": "engine::workers::register",
        "action": {"type": "void"},
        "data": {"name": name, "pid": 1},
    }
    ws.send(json.dumps(register))
    return ws


# -- configuration::* and engine::* resolve in default ---------------------------------------

NAMESPACED_CALLER = """
import json, os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="team-caller", namespace="team"))
out = {}
for fid in ("configuration::wire-probe", "engine::functions::list"):
    try:
        got = w.trigger({"function_id": fid, "payload": {"q": 1}})
        out[fid] = "ok" if fid.startswith("engine::") else got
    except Exception as exc:
        out[fid] = "error: " + str(exc)
print("RESULT " + json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def probe(engine: EngineProcess, client: Any) -> str:
    client.register_function("configuration::wire-probe", lambda data: {"seen": data.get("q")})
    wait_functions(client, "configuration::wire-probe")
    return "configuration::wire-probe"


def test_a_025_worker_in_a_namespace_reaches_configuration_functions_in_default(
    engine: EngineProcess, probe: str, tmp_path: Path
) -> None:
    out = json.loads(run(NAMESPACED_CALLER, tmp_path, engine, "team25", sdk025=True))
    assert out == {probe: {"seen": 1}, "engine::functions::list": "ok"}


def test_a_023_worker_in_a_namespace_looks_for_configuration_functions_in_its_own(
    engine: EngineProcess, probe: str, tmp_path: Path
) -> None:
    out = json.loads(run(NAMESPACED_CALLER, tmp_path, engine, "team23", sdk025=False))
    assert out["engine::functions::list"] == "ok"  # engine::* is default for both
    assert out[probe].startswith("error: function_not_found")
    assert "not found in namespace team" in out[probe]


# -- Authorization: Bearer on every socket of a plain listener -------------------------------

TOKEN_WORKER = """
import asyncio, json, os, time
from iii import register_worker, InitOptions
from iii.helpers import create_channel
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="token25"))

async def produce(data):
    await data["writer"].write(b"through the channel")
    await data["writer"].close_async()

w.register_function("token25::produce", produce)
w.register_function("token25::echo", lambda data: data)
deadline = time.monotonic() + 15
while True:
    try:
        echoed = w.trigger({"function_id": "token25::echo", "payload": {"n": 7}, "dispatch": "remote"})
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
channel = create_channel(w)
w.trigger({"function_id": "token25::produce", "payload": {"writer": channel.writer_ref.model_dump()},
           "dispatch": "remote"})
data = asyncio.run(asyncio.wait_for(channel.reader.read_all(), 15))
print("RESULT " + json.dumps({"echo": echoed["n"], "channel": data.decode()}), flush=True)
time.sleep(1)
"""


def test_a_025_worker_with_a_bearer_token_is_served_on_every_socket(
    engine: EngineProcess, tmp_path: Path
) -> None:
    """III_TOKEN makes 0.25 send ``Authorization: Bearer`` on the worker, channel and /otel
    sockets; a plain listener ignores it (the RBAC tests cover the auth function's view)."""
    out = run(
        TOKEN_WORKER,
        tmp_path,
        engine,
        "token25",
        sdk025=True,
        III_TOKEN="s3cret",
        OTEL_ENABLED="true",
    )
    assert json.loads(out) == {"echo": 7, "channel": "through the channel"}
    assert "connection handler failed" not in engine.log_text()


# -- unregistertriggertype -----------------------------------------------------------------

TRIGGER_TYPE_WORKER = """
import json, os, time, warnings
warnings.simplefilter("ignore")
from iii import register_worker, InitOptions
from iii.triggers import TriggerHandler
w = register_worker(os.environ["III_URL"], InitOptions(worker_name=os.environ["TYPE"] + "-owner"))

class Hooks(TriggerHandler):
    async def register_trigger(self, config): pass
    async def unregister_trigger(self, config): pass

spec = {"id": os.environ["TYPE"], "description": "a type to take back"}
w.register_trigger_type(spec, Hooks())

def listed():
    rows = w.trigger({"function_id": "engine::triggers::list", "payload": {}})["triggers"]
    return [r["id"] for r in rows if r["id"] == os.environ["TYPE"]]

deadline = time.monotonic() + 15
while not listed() and time.monotonic() < deadline:
    time.sleep(0.1)
before = listed()
if os.environ.get("NAMESPACE"):
    w.unregister_trigger_type({**spec, "namespace": os.environ["NAMESPACE"]})
else:
    w.unregister_trigger_type(spec)
deadline = time.monotonic() + 10
while listed() and time.monotonic() < deadline:
    time.sleep(0.1)
print("RESULT " + json.dumps({"before": before, "after": listed()}), flush=True)
"""


@pytest.mark.parametrize(
    ("sdk025", "namespace"), [(True, "default"), (True, None), (False, None)], ids=str
)
def test_unregistertriggertype_removes_the_provider(
    engine: EngineProcess, tmp_path: Path, sdk025: bool, namespace: str | None
) -> None:
    type_id = f"wire-type-{uuid.uuid4().hex[:8]}"
    env = {"TYPE": type_id, **({"NAMESPACE": namespace} if namespace else {})}
    out = json.loads(run(TRIGGER_TYPE_WORKER, tmp_path, engine, "types", sdk025=sdk025, **env))
    assert out == {"before": [type_id], "after": []}


def test_unregistertriggertype_in_another_namespace_leaves_the_provider(
    engine: EngineProcess, client: Any
) -> None:
    ws = raw_worker(engine.url, "type-keeper")
    try:
        ws.send(json.dumps({"type": "registertriggertype", "id": "wire-kept", "description": ""}))
        ws.send(json.dumps({"type": "unregistertriggertype", "id": "wire-kept", "namespace": "x"}))
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
        rows = client.trigger({"function_id": "engine::triggers::list", "payload": {}})
        assert "wire-kept" in [r["id"] for r in rows["triggers"]]
    finally:
        ws.close()


# -- registerfunction.observe ----------------------------------------------------------------

OBSERVE_DESCRIPTOR = """
import json, os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="described25"))
w.register_function("described25::fn", lambda data: {"got": data["n"]},
                    observe={"allow": False})
print("READY", flush=True)
while True:
    time.sleep(1)
"""


def test_a_025_function_with_an_observe_descriptor_is_registered_and_callable(
    engine: EngineProcess, client: Any, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        OBSERVE_DESCRIPTOR, tmp_path, engine.url, "described", python=require_sdk025()
    )
    try:
        wait_functions(client, "described25::fn")
        assert client.trigger({"function_id": "described25::fn", "payload": {"n": 3}}) == {"got": 3}
    finally:
        worker.stop()
    assert "registerfunction: observe" not in engine.log_text()  # read without complaint


def test_a_malformed_observe_descriptor_is_logged_and_the_function_kept(
    engine: EngineProcess, client: Any
) -> None:
    ws = raw_worker(engine.url, "bad-descriptor")
    try:
        frame = {"type": "registerfunction", "id": "wire::bad-desc", "observe": {"delivery": 5}}
        ws.send(json.dumps(frame))
        wait_functions(client, "wire::bad-desc")
        wait_for(lambda: "observe.delivery '5' is not auto or owner" in engine.log_text(), 5)
    finally:
        ws.close()


# -- "result": null -------------------------------------------------------------------------

NONE_RETURNER = """
import os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="none25"))
w.register_function("none25::nothing", lambda data: None)
while True:
    time.sleep(1)
"""


def test_a_025_result_null_reaches_the_caller_as_no_value(
    engine: EngineProcess, client: Any, tmp_path: Path
) -> None:
    worker = WorkerProcess(NONE_RETURNER, tmp_path, engine.url, "none", python=require_sdk025())
    try:
        wait_functions(client, "none25::nothing")
        assert client.trigger({"function_id": "none25::nothing", "payload": {}}) is None
    finally:
        worker.stop()


def test_an_explicit_result_null_is_relayed_like_an_absent_result(
    engine: EngineProcess, client: Any
) -> None:
    callee = raw_worker(engine.url, "null-callee")
    caller = raw_worker(engine.url, "null-caller")
    try:
        callee.send(json.dumps({"type": "registerfunction", "id": "wire::null"}))
        wait_functions(client, "wire::null")
        inv = str(uuid.uuid4())
        call = {"type": "invokefunction", "function_id": "wire::null", "invocation_id": inv}
        caller.send(json.dumps({**call, "data": {}}))
        incoming = json.loads(callee.recv(timeout=5))
        assert incoming["type"] == "invokefunction"
        callee.send(
            json.dumps(
                {
                    "type": "invocationresult",
                    "invocation_id": incoming["invocation_id"],
                    "function_id": "wire::null",
                    "result": None,
                }
            )
        )
        reply = json.loads(caller.recv(timeout=5))
        assert reply["type"] == "invocationresult" and reply["invocation_id"] == inv
        assert reply.get("result") is None and "error" not in reply
    finally:
        callee.close()
        caller.close()
