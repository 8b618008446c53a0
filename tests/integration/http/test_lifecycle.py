"""Stopping the actor: SIGTERM lets the request in flight finish, then the process exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import HttpStack, add_route, start_stack
from tests.support import find_process, sdk_client, wait_for


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[HttpStack]:
    s = start_stack(tmp_path, {})
    try:
        yield s
    finally:
        s.stop()


def actor_pid(stack: HttpStack) -> int:
    if stack.proc is not None:
        return stack.proc.pid
    assert stack.engine.proc is not None
    return find_process(stack.engine.proc.pid, "actors.http")


def ended_events(stack: HttpStack, pid: int) -> list[dict[str, Any]]:
    out = []
    for line in stack.engine.log_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "worker.ended" and rec.get("pid") == pid:
            out.append(rec)
    return out


def test_sigterm_drains_in_flight_requests(own_stack: HttpStack) -> None:
    """The actor stops accepting, answers the request it holds, closes idle keep-alive
    connections, and exits 0 (the supervisor then restarts it per policy)."""
    client = sdk_client(own_stack.engine.url, "lifecycle-client")
    try:

        async def slow(data: Any) -> Any:
            await asyncio.sleep(1.0)
            return {"body": "finished"}

        with httpx.Client(base_url=own_stack.base, timeout=30) as http:
            add_route(client, http, "life::slow", slow, "/life-slow")
            idle = socket.create_connection(("127.0.0.1", own_stack.port), timeout=10)
            result: dict[str, Any] = {}

            def call() -> None:
                with httpx.Client(base_url=own_stack.base, timeout=30) as c:
                    resp = c.get("/life-slow")
                    result["status"], result["body"] = resp.status_code, resp.json()
                    result["connection"] = resp.headers.get("connection")

            pid = actor_pid(own_stack)
            worker = threading.Thread(target=call)
            worker.start()
            time.sleep(0.3)  # the request is in flight
            os.kill(pid, signal.SIGTERM)
            assert idle.recv(1) == b""  # the idle keep-alive connection is closed at once
            idle.close()
            worker.join(15)
            assert result == {"status": 200, "body": "finished", "connection": "close"}
            if own_stack.proc is not None:
                assert own_stack.proc.wait(15) == 0
            else:
                ended = wait_for(lambda: ended_events(own_stack, pid), 15.0)
                assert ended[0]["code"] == 0 and ended[0]["signal"] is None
    finally:
        client.shutdown()
