"""An SDK worker's ``http`` triggers served by the iii-http actor (WORKERS.md §3.2–§3.7)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import HttpStack, add_route, wait_gone, wait_route
from tests.support import WorkerProcess


@pytest.fixture(scope="module")
def http_config() -> dict[str, Any]:
    return {"default_timeout": 2000}


def describe(data: dict[str, Any]) -> dict[str, Any]:
    """What the handler saw, JSON-safe (the SDK turned the channel refs into objects)."""
    return {
        **{k: v for k, v in data.items() if k not in ("request_body", "response")},
        "request_body": type(data["request_body"]).__name__,
        "response": type(data["response"]).__name__,
    }


def test_get_with_path_query_and_headers(client: Any, http: httpx.Client) -> None:
    async def get_order(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "status_code": 201,
            "headers": {"X-Order": data["path_params"]["id"], "Cache-Control": "no-store"},
            "body": {"seen": describe(data)},
        }

    trigger = add_route(client, http, "orders::get", get_order, "orders/:id", "GET")
    try:
        resp = http.get(
            "/orders/42?q=hello%20there&limit=10&limit=11&flag",
            headers=[(b"X-Custom", b"yes"), (b"X-Utf8", "caf\u00e9".encode())],
        )
        assert resp.status_code == 201
        assert resp.headers["x-order"] == "42"
        assert resp.headers["cache-control"] == "no-store"
        assert resp.headers["content-type"] == "application/json"
        seen = resp.json()["seen"]
        assert seen["path_params"] == {"id": "42"}
        assert seen["query_params"] == {"q": "hello there", "limit": "11", "flag": ""}
        assert seen["headers"]["x-custom"] == "yes"
        assert seen["headers"]["x-utf8"] == ""  # not visible ASCII
        assert seen["headers"]["host"] == f"127.0.0.1:{http.base_url.port}"
        assert seen["path"] == "orders/:id"  # the registered template, as given
        assert seen["method"] == "GET"
        assert seen["body"] is None
        assert seen["trigger"] == {"type": "http", "path": "orders/:id", "method": "GET"}
        assert seen["request_body"] == "ChannelReader"
        assert seen["response"] == "ChannelWriter"
        # path params are raw segments, not percent-decoded
        assert http.get("/orders/a%20b").json()["seen"]["path_params"] == {"id": "a%20b"}
    finally:
        trigger.unregister()


def test_post_json_body_and_custom_content_type(client: Any, http: httpx.Client) -> None:
    async def create(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "status_code": 200,
            "headers": ["Content-Type: text/xml", "X-Kind: " + type(data["body"]).__name__],
            "body": f"<name>{(data['body'] or {}).get('name')}</name>",
        }

    trigger = add_route(client, http, "items::create", create, "/items", "POST")
    try:
        resp = http.post("/items", json={"name": "test item"})
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/xml"  # verbatim: no charset appended
        assert resp.headers["x-kind"] == "dict"
        assert resp.text == "<name>test item</name>"
        bad = http.post("/items", content=b"{oops", headers={"content-type": "application/json"})
        assert bad.headers["x-kind"] == "NoneType"
        other = http.post("/items", content=b'{"a":1}', headers={"content-type": "text/plain"})
        assert other.headers["x-kind"] == "NoneType"  # only JSON content types are parsed
    finally:
        trigger.unregister()


def test_bare_values_and_missing_bodies(client: Any, http: httpx.Client) -> None:
    async def bare(data: dict[str, Any]) -> Any:
        return {"id": 1}

    trigger = add_route(client, http, "misc::bare", bare, "/bare", "GET")
    try:
        resp = http.get("/bare")
        assert (resp.status_code, resp.json()) == (200, {})
        assert resp.headers["content-type"] == "application/json"
        head = http.head("/bare")  # HEAD is served by the GET route, without a body
        assert head.status_code == 200 and head.content == b""
    finally:
        trigger.unregister()


def test_unknown_route_is_404_envelope(http: httpx.Client) -> None:
    for path in ("/nope", "/health", "/"):
        resp = http.get(path)
        assert resp.status_code == 404
        assert resp.headers["content-type"] == "application/json"
        assert resp.json() == {"error": {"code": "NOT_FOUND", "message": "Not Found"}}


def test_wrong_method_is_405_with_allow(client: Any, http: httpx.Client) -> None:
    async def ok(data: Any) -> Any:
        return {"body": "ok"}

    trigger = add_route(client, http, "misc::only-get", ok, "/only-get", "GET")
    try:
        resp = http.post("/only-get", json={})
        assert resp.status_code == 405
        assert resp.content == b""
        assert resp.headers["allow"] == "GET"
    finally:
        trigger.unregister()


def test_handler_error_is_500_envelope(client: Any, http: httpx.Client) -> None:
    async def boom(data: Any) -> Any:
        raise RuntimeError("kaboom")

    trigger = add_route(client, http, "misc::boom", boom, "/boom", "GET")
    try:
        resp = http.get("/boom")
        assert resp.status_code == 500
        assert resp.headers["content-type"] == "application/json"
        err = resp.json()["error"]
        assert err["code"] == "invocation_failed"
        assert "kaboom" in err["message"]
        assert re.fullmatch(r"[0-9a-f]+", err["error_id"])
    finally:
        trigger.unregister()


def test_slow_handler_is_504(client: Any, http: httpx.Client) -> None:
    async def slow(data: Any) -> Any:
        await asyncio.sleep(4)
        return {"body": "too late"}

    trigger = add_route(client, http, "misc::slow", slow, "/slow", "GET")
    try:
        started = time.monotonic()
        resp = http.get("/slow")
        elapsed = time.monotonic() - started
        assert resp.status_code == 504
        assert resp.content == b""
        assert 1.8 <= elapsed < 3.8  # default_timeout is 2000 ms
    finally:
        trigger.unregister()


def test_no_result_and_no_channel_write_ends_at_the_timeout(
    client: Any, http: httpx.Client
) -> None:
    async def silent(data: Any) -> None:
        return None

    trigger = add_route(client, http, "misc::silent", silent, "/silent", "GET")
    try:
        started = time.monotonic()
        resp = http.get("/silent")
        assert resp.status_code == 504
        assert time.monotonic() - started >= 1.8
    finally:
        trigger.unregister()


def test_route_disappears_when_the_trigger_is_unregistered(client: Any, http: httpx.Client) -> None:
    async def ok(data: Any) -> Any:
        return {"body": "here"}

    trigger = add_route(client, http, "misc::temp", ok, "/temp", "GET")
    assert http.get("/temp").json() == "here"
    trigger.unregister()
    wait_gone(http, "/temp")
    assert http.get("/temp").status_code == 404


WORKER = """
import os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="http-worker"))
w.register_function("remote::hello", lambda data: {"body": {"from": "worker", "id": data["path_params"]["id"]}})
w.register_trigger({"type": "http", "function_id": "remote::hello",
                    "config": {"api_path": "remote/:id", "http_method": "GET"}})
while True:
    time.sleep(1)
"""


def test_route_disappears_when_the_worker_disconnects(
    stack: HttpStack, http: httpx.Client, tmp_path: Path
) -> None:
    worker = WorkerProcess(WORKER, tmp_path, stack.engine.url, "http-worker")
    try:
        wait_route(http, "/remote/7", timeout=20)
        assert http.get("/remote/7").json() == {"from": "worker", "id": "7"}
    finally:
        worker.stop()
    wait_gone(http, "/remote/7")
    assert http.get("/remote/7").status_code == 404


def test_conflicting_parameter_names_are_refused(
    client: Any, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    async def first(data: Any) -> Any:
        return {"body": {"who": "first", "params": data["path_params"]}}

    async def second(data: Any) -> Any:
        return {"body": {"who": "second"}}

    t1 = add_route(client, http, "s::first", first, "/s/:listId/:userId", "GET", probe="/s/1/2")
    client.register_function("s::second", second)
    with caplog.at_level(logging.ERROR, logger="iii"):
        t2 = client.register_trigger(
            {
                "type": "http",
                "function_id": "s::second",
                "config": {"api_path": "/s/:userId/:listId", "http_method": "GET"},
            }
        )
        deadline = time.monotonic() + 10
        while "conflicts with already-registered route" not in caplog.text:
            assert time.monotonic() < deadline, "no registration error reached the SDK"
            time.sleep(0.05)
    try:
        resp = http.get("/s/1/2")
        assert resp.json() == {"who": "first", "params": {"listId": "1", "userId": "2"}}
    finally:
        t2.unregister()
        t1.unregister()


def test_same_route_registered_again_replaces_it(client: Any, http: httpx.Client) -> None:
    async def old(data: Any) -> Any:
        return {"body": "old"}

    async def new(data: Any) -> Any:
        return {"body": "new"}

    t_old = add_route(client, http, "r::old", old, "/replace", "GET")
    client.register_function("r::new", new)
    t_new = client.register_trigger(
        {"type": "http", "function_id": "r::new", "config": {"api_path": "replace"}}
    )
    deadline = time.monotonic() + 10
    while http.get("/replace").json() != "new":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t_old.unregister()  # no longer the owner: a no-op
    time.sleep(0.3)
    assert http.get("/replace").json() == "new"
    t_new.unregister()
    wait_gone(http, "/replace")


def test_permissive_cors_preflight_without_a_route(http: httpx.Client) -> None:
    resp = http.options(
        "/not/registered",
        headers={"Origin": "http://anywhere.example", "Access-Control-Request-Method": "PUT"},
    )
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["access-control-allow-origin"] == "*"
    assert resp.headers["access-control-allow-methods"] == "*"
    assert resp.headers["access-control-allow-headers"] == "*"
    assert (
        http.get("/x", headers={"Origin": "http://a"}).headers["access-control-allow-origin"] == "*"
    )


def test_statuses_the_http_layer_cannot_send_do_not_break_the_server(
    client: Any, http: httpx.Client
) -> None:
    async def status(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "status_code": int(data["path_params"]["code"]),
            "headers": {"Content-Length": "999", "Transfer-Encoding": "gzip", "X-Ok": "1"},
            "body": {"some": "body"},
        }

    trigger = add_route(client, http, "misc::status", status, "/status/:code", probe="/status/1")
    try:
        for code, expected in ((101, 200), (150, 200), (99, 200), (600, 600), (999, 999)):
            resp = http.get(f"/status/{code}")
            assert resp.status_code == expected
            assert resp.json() == {"some": "body"}  # framing headers are the server's own
            assert resp.headers["x-ok"] == "1"
        for code in (204, 304):
            resp = http.get(f"/status/{code}")
            assert (resp.status_code, resp.content) == (code, b"")
        assert http.get("/status/201").status_code == 201  # still serving
    finally:
        trigger.unregister()


def test_trigger_metadata_is_the_invocation_sidecar(client: Any, http: httpx.Client) -> None:
    async def with_meta(data: dict[str, Any], metadata: Any = None) -> dict[str, Any]:
        return {"body": {"metadata": metadata, "in_payload": "metadata" in data}}

    client.register_function("meta::handler", with_meta)
    trigger = client.register_trigger(
        {
            "type": "http",
            "function_id": "meta::handler",
            "config": {"api_path": "/meta"},
            "metadata": {"team": "checkout"},
        }
    )
    try:
        wait_route(http, "/meta")
        assert http.get("/meta").json() == {"metadata": {"team": "checkout"}, "in_payload": False}
    finally:
        trigger.unregister()
