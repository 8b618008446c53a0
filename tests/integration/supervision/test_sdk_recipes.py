"""Supervision recipes with real bus traffic: SDK workers and built-in actors under ``up``.

SUPERVISOR.md §17.2 (a worker SIGKILLed mid-invocation), §17.3 for a native actor (a hung
actor stops answering its local-link pings), and issue 4's restart points for the state
actor (data intact) and the http actor (routes back within 1 s of its restart).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from iii import InvocationError

from tests.integration.supervision.conftest import Up, wait_for
from tests.support import free_port, sdk_client

UpFactory = Callable[..., Up]

SLOW_WORKER = """
import os, time
from iii import register_worker
w = register_worker()
def slow(data):
    time.sleep(float(data.get("seconds", 30)))
    return "late"
w.register_function("recipe::slow", slow)
w.register_function("recipe::pid", lambda data: os.getpid())
while True:
    time.sleep(1)
"""


def functions(client: Any) -> set[str]:
    result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
    return {f["function_id"] for f in result["functions"]}


def test_worker_sigkilled_mid_invocation(up_factory: UpFactory, tmp_path: Path) -> None:
    script = tmp_path / "slow_worker.py"
    script.write_text(SLOW_WORKER)
    up = up_factory(
        [
            {
                "name": "slowpoke",
                "supervise": {
                    "command": [sys.executable, str(script)],
                    "backoff": {"initial": "100ms"},
                },
            }
        ]
    ).start()
    first = up.wait_state("slowpoke", "ready", 30)
    client = sdk_client(f"ws://127.0.0.1:{up.port}", "recipe-caller")
    try:
        wait_for(lambda: "recipe::slow" in functions(client), 10)
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                client.trigger(
                    {"function_id": "recipe::slow", "payload": {"seconds": 30}, "timeout_ms": 20000}
                )
            except InvocationError as exc:
                outcome.update(error=exc, at=time.monotonic())

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)
        killed_at = time.monotonic()
        os.kill(first["pid"], signal.SIGKILL)
        caller.join(10)
        assert outcome["error"].code == "invocation_stopped"
        assert outcome["at"] - killed_at < 1.0

        def restarted() -> dict[str, Any] | None:
            w = up.status("slowpoke")
            return w if w["state"] == "ready" and w["pid"] != first["pid"] else None

        second = wait_for(restarted, 20)
        assert second["restarts"] == 1
        assert second["last_exit"]["signal"] in (9, "SIGKILL", "KILL")
        wait_for(lambda: "recipe::pid" in functions(client), 10)
        assert client.trigger({"function_id": "recipe::pid", "payload": {}}) == second["pid"]
    finally:
        client.shutdown()


def test_hung_native_actor_is_killed_and_restarted(up_factory: UpFactory) -> None:
    up = up_factory(
        [
            {
                "name": "iii-state",
                "config": {
                    "adapter": {
                        "name": "kv",
                        "config": {"store_method": "file_based", "file_path": "state-db"},
                    }
                },
                "supervise": {
                    "health": {"interval": "300ms", "timeout": "1200ms", "kill_grace": "200ms"},
                    "backoff": {"initial": "100ms"},
                },
            }
        ]
    ).start()
    first = up.wait_state("iii-state", "ready", 30)
    client = sdk_client(f"ws://127.0.0.1:{up.port}", "recipe-caller")
    try:
        client.trigger(
            {"function_id": "state::set", "payload": {"scope": "s", "key": "k", "value": 1}}
        )
        os.kill(first["pid"], signal.SIGSTOP)  # alive, but no longer answers sup_ping

        def replaced() -> dict[str, Any] | None:
            w = up.status("iii-state")
            return w if w["state"] == "ready" and w["pid"] != first["pid"] else None

        second = wait_for(replaced, 20)
        assert second["last_error"]["code"] == "HEALTH_TIMEOUT"
        assert not os.path.exists(f"/proc/{first['pid']}") or _zombie_or_gone(first["pid"])
        wait_for(lambda: "state::get" in functions(client), 10)
        assert (
            client.trigger({"function_id": "state::get", "payload": {"scope": "s", "key": "k"}})
            == 1
        )
    finally:
        client.shutdown()


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2 :][:1] == b"Z"


def test_state_actor_sigkilled_keeps_its_data_and_serves_again(
    up_factory: UpFactory,
) -> None:
    up = up_factory(
        [
            {
                "name": "iii-state",
                "config": {
                    "adapter": {
                        "name": "kv",
                        "config": {
                            "store_method": "file_based",
                            "file_path": "state-db",
                            "fsync": "always",
                        },
                    }
                },
                "supervise": {"backoff": {"initial": "100ms"}},
            }
        ]
    ).start()
    first = up.wait_state("iii-state", "ready", 30)
    client = sdk_client(f"ws://127.0.0.1:{up.port}", "recipe-caller")
    try:
        for i in range(50):
            client.trigger(
                {
                    "function_id": "state::set",
                    "payload": {"scope": "orders", "key": f"o{i}", "value": {"n": i}},
                }
            )
        os.kill(first["pid"], signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            w = up.status("iii-state")
            return w if w["state"] == "ready" and w["pid"] != first["pid"] else None

        wait_for(restarted, 20)
        wait_for(lambda: "state::list" in functions(client), 10)
        values = client.trigger({"function_id": "state::list", "payload": {"scope": "orders"}})
        assert sorted(v["n"] for v in values) == list(range(50))
        client.trigger(
            {
                "function_id": "state::set",
                "payload": {"scope": "orders", "key": "after", "value": 1},
            }
        )
        assert (
            client.trigger(
                {"function_id": "state::get", "payload": {"scope": "orders", "key": "after"}}
            )
            == 1
        )
    finally:
        client.shutdown()


def test_http_actor_sigkilled_routes_are_back_within_a_second(up_factory: UpFactory) -> None:
    http_port = free_port()
    up = up_factory(
        [
            {
                "name": "iii-http",
                "config": {"host": "127.0.0.1", "port": http_port},
                "supervise": {"backoff": {"initial": "100ms"}},
            }
        ]
    ).start()
    first = up.wait_state("iii-http", "ready", 30)
    client = sdk_client(f"ws://127.0.0.1:{up.port}", "recipe-api")
    url = f"http://127.0.0.1:{http_port}/orders/42"
    try:
        client.register_function(
            "orders::get",
            lambda req: {"status_code": 200, "body": {"id": req["path_params"]["id"]}},
        )
        client.register_trigger(
            {
                "type": "http",
                "function_id": "orders::get",
                "config": {"api_path": "orders/:id", "http_method": "GET"},
            }
        )

        def route_ok() -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(route_ok, 15)
        os.kill(first["pid"], signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            w = up.status("iii-http")
            return w if w["state"] == "ready" and w["pid"] != first["pid"] else None

        wait_for(restarted, 20, interval=0.01)
        ready_at = time.monotonic()
        wait_for(route_ok, 5, interval=0.02)
        assert time.monotonic() - ready_at < 1.0
        assert httpx.get(url, timeout=2).json() == {"id": "42"}
    finally:
        client.shutdown()


@pytest.fixture(autouse=True)
def _no_sdk_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ENABLED", "false")
