"""Stopping the actor: SIGTERM lets the request in flight finish, then the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import HttpStack, add_route, start_stack
from tests.support import sdk_client


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[HttpStack]:
    s = start_stack(tmp_path, {})
    try:
        yield s
    finally:
        s.stop()


def test_sigterm_drains_in_flight_requests(own_stack: HttpStack) -> None:
    if own_stack.proc is None:
        pytest.skip("the engine owns the actor process in this mode")
    client = sdk_client(own_stack.engine.url, "lifecycle-client")
    try:

        async def slow(data: Any) -> Any:
            await asyncio.sleep(1.0)
            return {"body": "finished"}

        with httpx.Client(base_url=own_stack.base, timeout=30) as http:
            add_route(client, http, "life::slow", slow, "/life-slow")
            result: dict[str, Any] = {}

            def call() -> None:
                with httpx.Client(base_url=own_stack.base, timeout=30) as c:
                    resp = c.get("/life-slow")
                    result["status"], result["body"] = resp.status_code, resp.json()

            worker = threading.Thread(target=call)
            worker.start()
            time.sleep(0.3)  # the request is in flight
            own_stack.proc.send_signal(signal.SIGTERM)
            worker.join(15)
            assert result == {"status": 200, "body": "finished"}
            assert own_stack.proc.wait(15) == 0
    finally:
        client.shutdown()
