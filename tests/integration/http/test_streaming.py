"""Streamed request and response bodies through data channels (WORKERS.md §3.3, §3.6)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any

import httpx
from iii_helpers.http import http as http_helper

from tests.integration.http.conftest import add_route

UPLOAD = 8 * 1024 * 1024


def test_streamed_upload_arrives_intact(client: Any, http: httpx.Client) -> None:
    async def upload(data: dict[str, Any]) -> dict[str, Any]:
        body = await data["request_body"].read_all()
        return {
            "status_code": 200,
            "body": {
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "parsed": data["body"],
            },
        }

    trigger = add_route(client, http, "files::upload", upload, "/upload", "POST")
    try:
        payload = os.urandom(UPLOAD)

        def chunks() -> Any:
            view = memoryview(payload)
            for start in range(0, len(payload), 300_000):
                yield bytes(view[start : start + 300_000])

        resp = http.post(
            "/upload", content=chunks(), headers={"content-type": "application/octet-stream"}
        )
        assert resp.status_code == 200
        assert resp.json() == {
            "size": UPLOAD,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "parsed": None,
        }
        small = http.post("/upload", content=b"tiny body", headers={"content-type": "text/plain"})
        assert small.json()["size"] == 9
        empty = http.post("/upload")
        assert empty.json()["size"] == 0
    finally:
        trigger.unregister()


def test_json_body_is_also_readable_from_the_channel(client: Any, http: httpx.Client) -> None:
    async def echo(data: dict[str, Any]) -> dict[str, Any]:
        raw = await data["request_body"].read_all()
        return {"body": {"raw": raw.decode(), "parsed": data["body"]}}

    trigger = add_route(client, http, "files::json-echo", echo, "/json-echo", "POST")
    try:
        resp = http.post(
            "/json-echo", content=b'{"a": [1, 2]}', headers={"content-type": "application/json"}
        )
        assert resp.json() == {"raw": '{"a": [1, 2]}', "parsed": {"a": [1, 2]}}
    finally:
        trigger.unregister()


def test_streamed_response_through_the_sdk_helper(client: Any, http: httpx.Client) -> None:
    async def events(req: Any, res: Any) -> None:
        await res.status(202)
        await res.headers({"content-type": "text/event-stream", "x-stream": "yes"})
        for i in range(3):
            await res.writer.write(f"data: {i}\n\n".encode())
            await asyncio.sleep(0.05)
        await res.writer.close_async()

    trigger = add_route(client, http, "stream::events", http_helper(events), "/events", "GET")
    try:
        with http.stream("GET", "/events") as resp:
            assert resp.status_code == 202
            assert resp.headers["content-type"] == "text/event-stream"  # exact, no charset
            assert resp.headers["x-stream"] == "yes"
            body = b"".join(resp.iter_bytes())
        assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    finally:
        trigger.unregister()


def test_streamed_response_starts_before_the_handler_returns(
    client: Any, http: httpx.Client
) -> None:
    released = asyncio.Event()

    async def slow_stream(data: dict[str, Any]) -> None:
        writer = data["response"]
        await writer.send_message_async(json.dumps({"type": "set_status", "status_code": 200}))
        await writer.write(b"first")
        await asyncio.sleep(1.0)
        await writer.write(b"-second")
        await writer.close_async()
        released.set()

    trigger = add_route(client, http, "stream::slow", slow_stream, "/slow-stream", "GET")
    try:
        started = time.monotonic()
        with http.stream("GET", "/slow-stream") as resp:
            it = resp.iter_raw()
            first = next(it)
            first_at = time.monotonic() - started
            rest = b"".join(it)
        assert first == b"first"
        assert first_at < 0.9  # the first bytes arrived while the handler was still running
        assert first + rest == b"first-second"
        assert "content-type" not in resp.headers  # no default content-type in mode B
    finally:
        trigger.unregister()


def test_large_streamed_response_written_before_returning(client: Any, http: httpx.Client) -> None:
    """More items than the channel buffers, all awaited before the handler returns."""
    blob = os.urandom(6 * 1024 * 1024)

    async def download(data: dict[str, Any]) -> None:
        writer = data["response"]
        await writer.send_message_async(
            json.dumps({"type": "set_headers", "headers": {"content-type": "application/pdf"}})
        )
        await writer.write(blob)  # the SDK splits this into 64 KiB frames
        await writer.close_async()

    trigger = add_route(client, http, "files::download", download, "/download", "GET")
    try:
        resp = http.get("/download")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/pdf"
        assert hashlib.sha256(resp.content).hexdigest() == hashlib.sha256(blob).hexdigest()
    finally:
        trigger.unregister()


def test_channel_closed_without_body_sends_status_and_headers(
    client: Any, http: httpx.Client
) -> None:
    async def no_content(data: dict[str, Any]) -> None:
        writer = data["response"]
        await writer.send_message_async(json.dumps({"type": "set_status", "status_code": 204}))
        await writer.send_message_async(
            json.dumps({"type": "set_headers", "headers": {"x-done": "1"}})
        )
        await writer.close_async()

    trigger = add_route(client, http, "stream::none", no_content, "/no-content", "DELETE")
    try:
        resp = http.delete("/no-content")
        assert resp.status_code == 204
        assert resp.headers["x-done"] == "1"
        assert resp.content == b""
    finally:
        trigger.unregister()


def test_returned_value_wins_over_an_unused_channel(client: Any, http: httpx.Client) -> None:
    async def both(data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.1)  # long enough that the actor attaches to the channels
        return {"status_code": 200, "body": {"mode": "A"}}

    trigger = add_route(client, http, "stream::both", both, "/both", "GET")
    try:
        for _ in range(3):
            resp = http.get("/both")
            assert resp.status_code == 200 and resp.json() == {"mode": "A"}
    finally:
        trigger.unregister()


def test_streamed_framing_headers_are_ignored(client: Any, http: httpx.Client) -> None:
    async def lying(data: dict[str, Any]) -> None:
        writer = data["response"]
        await writer.send_message_async(
            json.dumps(
                {"type": "set_headers", "headers": {"content-length": "100", "x-kept": "yes"}}
            )
        )
        await writer.write(b"only five")
        await writer.close_async()

    trigger = add_route(client, http, "stream::lying", lying, "/lying", "GET")
    try:
        for _ in range(2):
            resp = http.get("/lying")
            assert resp.status_code == 200
            assert resp.content == b"only five"
            assert resp.headers["x-kept"] == "yes"
    finally:
        trigger.unregister()


def test_fire_and_forget_writes_then_return(client: Any, http: httpx.Client) -> None:
    """The SDK idiom: ``res.stream.write`` / ``res.close()`` queue work and return at once."""

    async def chunks(req: Any, res: Any) -> None:
        await res.status(201)
        await res.headers({"content-type": "text/plain"})
        for i in range(5):
            res.stream.write(f"chunk-{i};".encode())
        res.close()

    trigger = add_route(client, http, "stream::ff", http_helper(chunks), "/ff", "GET")
    try:
        for _ in range(3):
            resp = http.get("/ff")
            assert resp.status_code == 201
            assert resp.headers["content-type"] == "text/plain"
            assert resp.text == "".join(f"chunk-{i};" for i in range(5))
    finally:
        trigger.unregister()
