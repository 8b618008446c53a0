"""Capability negotiation and ``functionregistered`` on the wire (OBSERVE.md §2, §4), with a
raw protocol client, the official 0.25 SDK (local dispatch turns on) and 0.23 (unchanged)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.support import EngineProcess, WorkerProcess, engine_fixture, require_sdk025, wait_for

SDK025_FEATURES = ["observe.v1", "local-dispatch.v1", "large-messages.v1"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    yield from engine_fixture(tmp_path_factory.mktemp("engine"), {"workers": []})


def register_call(name: str, **data: Any) -> str:
    return json.dumps(
        {
            "type": "invokefunction",
            "function_id": "engine::workers::register",
            "action": {"type": "void"},
            "data": {"name": name, "pid": 1, **data},
        }
    )


def frames_until_pong(ws: Any) -> list[dict[str, Any]]:
    """Everything the engine sent before answering a ping sent now (frames are in order)."""
    ws.send(json.dumps({"type": "ping"}))
    out: list[dict[str, Any]] = []
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame == {"type": "pong"}:
            return out
        out.append(frame)


def test_workerregistered_lists_observe_and_local_dispatch(engine: EngineProcess) -> None:
    with connect(engine.url) as ws:
        first = json.loads(ws.recv(timeout=5))
        assert first["type"] == "workerregistered"
        assert first["features"] == ["observe.v1", "local-dispatch.v1"]
        ws.send(register_call("raw-greeting", features=SDK025_FEATURES))
        later = frames_until_pong(ws)
        assert not [f for f in later if f["type"] == "workerregistered"]  # exactly one


def test_a_025_connection_gets_functionregistered_for_each_function(
    engine: EngineProcess,
) -> None:
    with connect(engine.url) as ws:
        json.loads(ws.recv(timeout=5))
        # the 0.25 SDK's order: replayed registrations, then engine::workers::register
        ws.send(json.dumps({"type": "registerfunction", "id": "raw25::a"}))
        ws.send(json.dumps({"type": "registerfunction", "id": "raw25::b"}))
        ws.send(register_call("raw25", namespace="shop", features=SDK025_FEATURES))
        ws.send(json.dumps({"type": "registerfunction", "id": "raw25::c"}))
        acks = frames_until_pong(ws)
    assert acks == [
        {
            "type": "functionregistered",
            "id": fid,
            "namespace": "shop",
            "revision": 0,
            "local_dispatch": True,
            "observers": [],
        }
        for fid in ("raw25::a", "raw25::b", "raw25::c")
    ]


def test_a_connection_without_features_gets_no_functionregistered(
    engine: EngineProcess,
) -> None:
    with connect(engine.url) as ws:
        json.loads(ws.recv(timeout=5))
        ws.send(json.dumps({"type": "registerfunction", "id": "raw23::a"}))
        ws.send(register_call("raw23"))
        ws.send(json.dumps({"type": "registerfunction", "id": "raw23::b"}))
        assert frames_until_pong(ws) == []


SELF_CALLER = """
import json, os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name=os.environ["NAME"]))
w.register_function(os.environ["NAME"] + "::echo", lambda data: data)
fid = os.environ["NAME"] + "::echo"
local = None
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    try:
        out = w.trigger({"function_id": fid, "payload": {"n": 1}})
    except Exception:  # the registration is not applied yet
        time.sleep(0.1)
        continue
    if "_caller_worker_id" not in out or os.environ.get("ONCE"):
        local = out
        break
    time.sleep(0.1)
remote = w.trigger({"function_id": fid, "payload": {"n": 2}, "dispatch": "remote"})
features = sorted(getattr(w, "_engine_features", ()))
print("RESULT " + json.dumps({"local": local, "remote": remote, "features": features}), flush=True)
while True:
    time.sleep(1)
"""


def result_of(worker: WorkerProcess) -> dict[str, Any]:
    def parse() -> dict[str, Any] | None:
        for line in worker.output().splitlines():
            if line.startswith("RESULT "):
                found: dict[str, Any] = json.loads(line[len("RESULT ") :])
                return found
        return None

    result: dict[str, Any] = wait_for(parse, timeout=25)
    return result


def test_a_025_worker_runs_its_own_functions_in_process_once_confirmed(
    engine: EngineProcess, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        SELF_CALLER, tmp_path, engine.url, "self25", python=require_sdk025(), NAME="self25"
    )
    try:
        out = result_of(worker)
    finally:
        worker.stop()
    assert out["features"] == ["local-dispatch.v1", "observe.v1"]  # what the SDK read
    assert out["local"] == {"n": 1}  # run in-process: the engine injected nothing
    assert out["remote"]["n"] == 2 and "_caller_worker_id" in out["remote"]  # routed


def test_a_023_worker_still_routes_every_call_through_the_engine(
    engine: EngineProcess, tmp_path: Path
) -> None:
    worker = WorkerProcess(SELF_CALLER, tmp_path, engine.url, "self23", NAME="self23", ONCE="1")
    try:
        out = result_of(worker)
    finally:
        worker.stop()
    assert out["local"]["n"] == 1 and "_caller_worker_id" in out["local"]


class Raw:
    """A raw observe-capable connection (the 0.25 SDK's register payload)."""

    def __init__(self, url: str, name: str, *functions: str) -> None:
        self.ws = connect(url)
        assert json.loads(self.ws.recv(timeout=5))["type"] == "workerregistered"
        for fid in functions:
            self.send({"type": "registerfunction", "id": fid})
        self.ws.send(register_call(name, features=SDK025_FEATURES))

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def frames(self) -> list[dict[str, Any]]:
        return frames_until_pong(self.ws)

    def close(self) -> None:
        self.ws.close()


def of(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == kind]


def info(observer_id: str) -> dict[str, Any]:
    """ObserverInfo (OBSERVE.md §3.6) of an observer created with defaults."""
    return {
        "id": observer_id,
        "args": {},
        "filters": {},
        "target": "rev::target",
        "capture": ["input", "output", "caller"],
        "on": "success",
    }


def test_functionregistered_carries_the_revision_and_the_attached_observers(
    engine: EngineProcess,
) -> None:
    """§4.3/§4.4: the revision starts at 0, each observeradded/observerremoved bumps it,
    functionregistered carries it without bumping and lists every attached observer, also to
    the next connection that registers the function."""
    watcher = Raw(engine.url, "rev-watcher", "rev::target")
    owners: list[Raw] = []
    try:
        assert of(watcher.frames(), "functionregistered")[0]["id"] == "rev::target"
        source = {"function_id": "rev::source"}
        target = {"function_id": "rev::target"}
        watcher.send({"type": "observe", "id": "rev-1", "source": source, "target": target})
        (result,) = of(watcher.frames(), "observeresult")
        assert result["state"] == "pending"  # the source does not exist yet

        first = Raw(engine.url, "rev-owner", "rev::source")
        owners.append(first)
        (ack,) = of(first.frames(), "functionregistered")
        assert (ack["revision"], ack["local_dispatch"]) == (0, True)
        assert ack["observers"] == [info("rev-1")]
        ack_frame = {"type": "observerack", "function_id": "rev::source", "revision": 0}
        first.send({**ack_frame, "id": "rev-1"})
        watcher.send({"type": "observe", "id": "rev-2", "source": source, "target": target})
        watcher.frames()  # processed (frames of different connections are not ordered)
        (added,) = of(first.frames(), "observeradded")
        assert (added["revision"], added["observer"]) == (1, info("rev-2"))
        first.send({**ack_frame, "id": "rev-2", "revision": 1})
        first.send({"type": "registerfunction", "id": "rev::source"})  # idempotent again
        (again,) = of(first.frames(), "functionregistered")
        assert again["revision"] == 1  # carried, not bumped
        assert sorted(o["id"] for o in again["observers"]) == ["rev-1", "rev-2"]
        first.close()

        second, frames = wait_for(lambda: _reowned(engine.url, owners), timeout=10)
        (handover,) = of(frames, "functionregistered")
        assert handover["revision"] == 1  # the counter survives the owner's departure
        assert sorted(o["id"] for o in handover["observers"]) == ["rev-1", "rev-2"]
        watcher.send({"type": "unobserve", "id": "rev-2"})
        watcher.frames()
        (removed,) = of(second.frames(), "observerremoved")
        assert (removed["revision"], removed["id"]) == (2, "rev-2")
    finally:
        watcher.close()
        for owner in owners:
            owner.close()


def _reowned(url: str, owners: list[Raw]) -> tuple[Raw, list[dict[str, Any]]] | None:
    """A new owner of rev::source once the previous one is gone, and what it was sent."""
    owner = Raw(url, "rev-owner-2", "rev::source")
    frames = owner.frames()
    if of(frames, "registrationrejected"):
        owner.close()
        return None
    owners.append(owner)
    return owner, frames
