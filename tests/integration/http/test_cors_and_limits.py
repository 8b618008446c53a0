"""Configured CORS (WORKERS.md §3.8) and ``concurrency_request_limit`` (§3.1)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import add_route


@pytest.fixture(scope="module")
def http_config() -> dict[str, Any]:
    return {
        "concurrency_request_limit": 1,
        "cors": {
            "allowed_origins": ["http://localhost:3000"],
            "allowed_methods": ["GET", "POST"],
        },
    }


def test_preflight_answered_per_config(http: httpx.Client) -> None:
    allowed = http.options(
        "/anything",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-custom, content-type",
        },
    )
    assert allowed.status_code == 200
    assert allowed.content == b""
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert allowed.headers["access-control-allow-methods"] == "GET, POST"
    assert allowed.headers["access-control-allow-headers"] == "*"
    assert "access-control-allow-credentials" not in allowed.headers

    other = http.options(
        "/anything",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers


def test_simple_requests_carry_the_allowed_origin(client: Any, http: httpx.Client) -> None:
    async def ok(data: Any) -> Any:
        return {"body": "ok"}

    trigger = add_route(client, http, "cors::ok", ok, "/cors-ok")
    try:
        good = http.get("/cors-ok", headers={"Origin": "http://localhost:3000"})
        assert good.headers["access-control-allow-origin"] == "http://localhost:3000"
        bad = http.get("/cors-ok", headers={"Origin": "http://evil.example"})
        assert bad.status_code == 200
        assert "access-control-allow-origin" not in bad.headers
    finally:
        trigger.unregister()


def test_requests_beyond_the_limit_wait_for_a_slot(
    client: Any, http: httpx.Client, stack: Any
) -> None:
    async def slow(data: Any) -> Any:
        await asyncio.sleep(0.5)
        return {"body": "done"}

    trigger = add_route(client, http, "limit::slow", slow, "/limited")
    try:

        def call(_: int) -> int:
            with httpx.Client(base_url=stack.base, timeout=30) as c:
                return c.get("/limited").status_code

        started = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            statuses = list(pool.map(call, range(3)))
        elapsed = time.monotonic() - started
        assert statuses == [200, 200, 200]
        assert elapsed >= 1.45  # one at a time: 3 × 0.5 s
    finally:
        trigger.unregister()
