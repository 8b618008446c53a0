"""Global and per-route middleware, and the route condition (WORKERS.md §3.4, §3.5)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import add_route


@pytest.fixture(scope="module")
def http_config() -> dict[str, Any]:
    return {
        "default_timeout": 1500,
        "middleware": [
            {"function_id": "mw::global-b", "priority": 20},
            {"function_id": "mw::ignored", "phase": "onResponse"},
            {"function_id": "mw::global-a", "priority": 10},
        ],
    }


CALLS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def global_middleware(client: Any) -> Iterator[None]:
    async def global_a(data: dict[str, Any]) -> dict[str, Any]:
        CALLS.append("a")
        if data["request"]["headers"].get("x-block") == "global":
            return {
                "action": "respond",
                "response": {"status_code": 401, "body": {"blocked": "global"}},
            }
        return {"action": "continue"}

    async def global_b(data: dict[str, Any]) -> dict[str, Any]:
        CALLS.append("b")
        assert data["phase"] == "preHandler" and data["context"] == {}
        assert "body" not in data["request"]
        return {"action": "continue"}

    client.register_function("mw::global-a", global_a)
    client.register_function("mw::global-b", global_b)
    yield


def handler_seen(data: dict[str, Any]) -> dict[str, Any]:
    CALLS.append("handler")
    return {"body": {"path_params": data["path_params"], "body": data["body"]}}


def test_global_middleware_runs_in_priority_order(client: Any, http: httpx.Client) -> None:
    async def handler(data: dict[str, Any]) -> dict[str, Any]:
        return handler_seen(data)

    trigger = add_route(
        client, http, "mw::plain", handler, "/mw/plain/:id", "GET", probe="/mw/plain/1"
    )
    try:
        CALLS.clear()
        resp = http.get("/mw/plain/1")
        assert resp.json() == {"path_params": {"id": "1"}, "body": None}
        assert CALLS == ["a", "b", "handler"]
        blocked = http.get("/mw/plain/1", headers={"x-block": "global"})
        assert blocked.status_code == 401
        assert blocked.headers["content-type"] == "application/json"
        assert blocked.json() == {"blocked": "global"}
    finally:
        trigger.unregister()


def test_condition_gates_the_handler(client: Any, http: httpx.Client) -> None:
    async def condition(data: dict[str, Any]) -> Any:
        CALLS.append("condition")
        assert "request_body" not in data and "response" not in data
        return (data["body"] or {}).get("allow", True)

    async def handler(data: dict[str, Any]) -> dict[str, Any]:
        return handler_seen(data)

    client.register_function("mw::condition", condition)
    trigger = add_route(
        client,
        http,
        "mw::gated",
        handler,
        "/gated",
        "POST",
        condition_function_id="mw::condition",
    )
    try:
        CALLS.clear()
        denied = http.post("/gated", json={"allow": False})
        assert denied.status_code == 422
        assert denied.json() == {
            "error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"},
            "skipped": True,
        }
        assert CALLS == ["a", "b", "condition"]
        ok = http.post("/gated", json={"allow": "anything but false"})
        assert ok.status_code == 200
        assert ok.json()["body"] == {"allow": "anything but false"}
    finally:
        trigger.unregister()


def test_condition_error_is_500(client: Any, http: httpx.Client) -> None:
    async def bad_condition(data: Any) -> Any:
        raise ValueError("condition exploded")

    async def handler(data: dict[str, Any]) -> dict[str, Any]:
        return handler_seen(data)

    client.register_function("mw::bad-condition", bad_condition)
    trigger = add_route(
        client,
        http,
        "mw::bad-gated",
        handler,
        "/bad-gated",
        condition_function_id="mw::bad-condition",
    )
    try:
        resp = http.get("/bad-gated")
        assert resp.status_code == 500
        err = resp.json()["error"]
        assert "condition exploded" in err["message"]
        assert re.fullmatch(r"[0-9a-f]+", err["error_id"])
    finally:
        trigger.unregister()


def test_route_middleware_respond_error_and_timeout(client: Any, http: httpx.Client) -> None:
    async def deny(data: dict[str, Any]) -> dict[str, Any]:
        CALLS.append("deny")
        if data["request"]["query_params"].get("token") == "good":
            return {"action": "continue"}
        return {
            "action": "respond",
            "response": {
                "status_code": 403,
                "body": {"error": "forbidden"},
                "headers": {"X-Mw": "deny"},
            },
        }

    async def explode(data: dict[str, Any]) -> Any:
        if data["request"]["query_params"].get("explode"):
            raise RuntimeError("middleware exploded")
        return None  # no action: continue (with a warning)

    async def stall(data: dict[str, Any]) -> Any:
        if data["request"]["query_params"].get("stall"):
            await asyncio.sleep(2)
        return {"action": "continue"}

    async def handler(data: dict[str, Any]) -> dict[str, Any]:
        return handler_seen(data)

    client.register_function("mw::deny", deny)
    client.register_function("mw::explode", explode)
    client.register_function("mw::stall", stall)
    trigger = add_route(
        client,
        http,
        "mw::guarded",
        handler,
        "/guarded",
        middleware_function_ids=["mw::deny", "mw::explode", "mw::stall"],
    )
    try:
        CALLS.clear()
        denied = http.get("/guarded")
        assert denied.status_code == 403
        assert denied.json() == {"error": "forbidden"}
        assert denied.headers["x-mw"] == "deny"
        assert CALLS == ["a", "b", "deny"]
        assert http.get("/guarded?token=good").status_code == 200
        failed = http.get("/guarded?token=good&explode=1")
        assert failed.status_code == 500
        assert "middleware exploded" in failed.json()["error"]["message"]
        assert "error_id" in failed.json()["error"]
        started = time.monotonic()
        stalled = http.get("/guarded?token=good&stall=1")
        assert stalled.status_code == 504
        assert stalled.json() == {
            "error": {"code": "MIDDLEWARE_TIMEOUT", "message": "Middleware timeout"}
        }
        assert 1.3 <= time.monotonic() - started < 2.9
        time.sleep(0.8)  # let the stalled middleware finish before the SDK client shuts down
    finally:
        trigger.unregister()
