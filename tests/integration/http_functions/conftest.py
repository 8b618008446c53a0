"""Shared pieces of the HTTP-invoked function tests: the local endpoint (one per module) and
helpers that register through the official SDK and read the engine's answers and log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from iii import InvocationError
from iii_helpers.http import HttpInvocationConfig

from tests.integration.http_functions.endpoint import Endpoint
from tests.support import EngineProcess, wait_for

# The SDK suite's settings (PROTOCOL.md §10.1): local hosts allowed, plain http and private IPs.
SECURITY: dict[str, Any] = {
    "url_allowlist": ["localhost", "127.0.0.1"],
    "block_private_ips": False,
    "require_https": False,
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


def listed(client: Any) -> dict[str, dict[str, Any]]:
    result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
    return {f["function_id"]: f for f in result["functions"]}


def fresh(name: str) -> str:
    return f"ext::{name}-{uuid.uuid4().hex[:8]}"


def register(owner: Any, caller: Any, name: str, url: str, **config: Any) -> tuple[str, Any]:
    """Register an external function and wait until the engine lists it."""
    function_id = fresh(name)
    ref = owner.register_function(function_id, HttpInvocationConfig(url=url, **config))
    wait_for(lambda: function_id in listed(caller), 15.0)
    return function_id, ref


def validated(engine: EngineProcess, function_id: str) -> bool:
    """The actor accepted the registration (the engine lists it before: calls wait)."""
    return any(
        function_id in line and "HTTP-invoked function registered" in line
        for line in engine.log_text().splitlines()
    )


def call(client: Any, function_id: str, payload: Any, timeout_ms: int = 10_000) -> Any:
    return client.trigger(
        {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms}
    )


def failure(client: Any, function_id: str, payload: Any = None) -> InvocationError:
    with pytest.raises(InvocationError) as info:
        call(client, function_id, payload if payload is not None else {"x": 1})
    return info.value


def refused_in_log(engine: EngineProcess, function_id: str) -> dict[str, Any]:
    """The engine's log line for a dropped registration (registration failures are silent)."""

    def find() -> dict[str, Any] | None:
        for line in engine.log_text().splitlines():
            if function_id in line and "not registered" in line:
                return dict(json.loads(line[line.index("{") :]))
        return None

    found: dict[str, Any] = wait_for(find, 15.0)
    return found
