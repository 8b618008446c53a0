"""One engine for the RBAC tests: a plain listener, the SDK suite's RBAC listener (PROTOCOL.md
§13.10, verbatim but for its port) and an RBAC listener without auth function or middleware;
the trusted worker on the plain listener provides auth, middleware, hooks and targets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.support import EngineProcess, WorkerProcess, free_port, sdk_client, wait_for

TRUSTED = (Path(__file__).parent / "trusted_worker.py").read_text()


def suite_listener(port: int) -> dict[str, Any]:
    """The RBAC listener of upstream's sdk/fixtures/config-test.yaml (§13.10)."""
    return {
        "name": "iii-worker-manager",
        "config": {
            "host": "127.0.0.1",
            "port": port,
            "middleware_function_id": "test::rbac-worker::middleware",
            "rbac": {
                "auth_function_id": "test::rbac-worker::auth",
                "on_function_registration_function_id": "test::rbac-worker::on-function-reg",
                "on_trigger_registration_function_id": "test::rbac-worker::on-trigger-reg",
                "on_trigger_type_registration_function_id": (
                    "test::rbac-worker::on-trigger-type-reg"
                ),
                "expose_functions": [
                    'match("test::ew::public::*")',
                    'match("engine::functions::list")',
                    {"metadata": {"ew_public": True}},
                ],
            },
        },
    }


class Rbac:
    def __init__(self, engine: EngineProcess, plain: Any, ports: tuple[int, int, int]):
        self.engine = engine
        self.plain = plain  # an SDK client on the plain listener
        self.rbac_url = f"ws://127.0.0.1:{ports[0]}"  # §13.10's listener
        self.open_url = f"ws://127.0.0.1:{ports[1]}"  # rbac without auth or middleware
        self.middleware_url = f"ws://127.0.0.1:{ports[2]}"  # middleware, no rbac

    def calls(self) -> dict[str, Any]:
        result: dict[str, Any] = self.plain.trigger(
            {"function_id": "test::rbac-worker::calls", "payload": {}}
        )
        return result

    def function_ids(self) -> set[str]:
        result = self.plain.trigger({"function_id": "engine::functions::list", "payload": {}})
        return {f["function_id"] for f in result["functions"]}

    def client(self, token: str, name: str = "rbac-client", url: str | None = None) -> Any:
        from iii import InitOptions, register_worker

        return register_worker(
            url or self.rbac_url,
            InitOptions(worker_name=name, headers={"x-test-token": token}, otel={"enabled": False}),
        )


@pytest.fixture(scope="package")
def rbac(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rbac]:
    tmp = tmp_path_factory.mktemp("rbac")
    plain_port, rbac_port, open_port, mw_port = free_port(), free_port(), free_port(), free_port()
    config = {
        "workers": [
            {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": plain_port}},
            suite_listener(rbac_port),
            {
                "name": "iii-worker-manager",
                "config": {
                    "host": "127.0.0.1",
                    "port": open_port,
                    "rbac": {
                        "expose_functions": [
                            'match("test::ew::public::*")',
                            'match("engine::functions::info")',
                            'match("engine::register_trigger")',
                        ]
                    },
                },
            },
            {
                "name": "iii-worker-manager",
                "config": {
                    "host": "127.0.0.1",
                    "port": mw_port,
                    "middleware_function_id": "test::rbac-worker::middleware",
                },
            },
        ]
    }
    engine = EngineProcess(config, tmp).start()
    worker = WorkerProcess(TRUSTED, tmp, engine.url, "trusted")
    plain = sdk_client(engine.url, "plain-client")
    try:
        env = Rbac(engine, plain, (rbac_port, open_port, mw_port))
        wait_for(lambda: "test::ew::by-metadata" in env.function_ids(), 20)
        yield env
    finally:
        plain.shutdown()
        worker.stop()
        engine.stop()


def raw(url: str, token: str | None, path: str = "") -> ClientConnection:
    headers = {"x-test-token": token} if token is not None else {}
    return connect(url + path, additional_headers=headers, max_size=None, open_timeout=10)


def first(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return frame


def until(ws: ClientConnection, kind: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
    """The next frame of type ``kind`` whose ``fields`` match (others are skipped)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
            return frame


def invoke(
    ws: ClientConnection, function_id: str, data: Any = None, **extra: Any
) -> dict[str, Any]:
    """A raw invokefunction and its invocationresult."""
    import uuid

    inv = str(uuid.uuid4())
    ws.send(
        json.dumps(
            {
                "type": "invokefunction",
                "function_id": function_id,
                "data": {} if data is None else data,
                "invocation_id": inv,
                **extra,
            }
        )
    )
    return until(ws, "invocationresult", invocation_id=inv)
