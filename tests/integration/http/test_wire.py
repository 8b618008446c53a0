"""HTTP/1.1 on the wire (``actors/http/h1.py``): raw sockets against the running actor.

Framing, keep-alive, pipelining, HTTP/1.0, ``Expect: 100-continue``, and bad input: a
malformed or oversized request gets a clear status and its connection is closed, while
every other client keeps being served.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import HttpStack, add_route
from tests.support import wait_for


def raw(stack: HttpStack) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from ``sock`` (content-length or chunked framing); leftovers stay in
    ``buf`` for the next call."""

    def fill() -> None:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf.extend(data)

    while b"\r\n\r\n" not in buf:
        fill()
    end = buf.index(b"\r\n\r\n")
    head = buf[:end].decode("latin-1").split("\r\n")
    del buf[: end + 4]
    status = int(head[0].split(" ")[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status == 100:
        return status, headers, b""
    body = bytearray()
    if headers.get("transfer-encoding") == "chunked":
        while True:
            while b"\r\n" not in buf:
                fill()
            line_end = buf.index(b"\r\n")
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            del buf[: line_end + 2]
            while len(buf) < size + 2:
                fill()
            body += buf[:size]
            del buf[: size + 2]
            if size == 0:
                break
    else:
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            fill()
        body += buf[:length]
        del buf[:length]
    return status, headers, bytes(body)


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def echo_route(stack: HttpStack, client: Any) -> Any:
    async def echo(data: dict[str, Any]) -> dict[str, Any]:
        raw_body = await data["request_body"].read_all()
        return {
            "status_code": 200,
            "body": {
                "n": data["path_params"]["n"],
                "size": len(raw_body),
                "head": raw_body[:8].decode(),
            },
        }

    with httpx.Client(base_url=stack.base, timeout=30.0) as http:
        triggers = [add_route(client, http, "wire::get", echo, "/wire/:n", "GET")]
        triggers.append(add_route(client, http, "wire::echo", echo, "/wire/:n", "POST"))
        # OPTIONS answers 405 once either route exists: wait for the POST one itself.
        wait_for(lambda: http.post("/wire/probe").status_code == 200, 15.0)
    yield triggers
    for trigger in triggers:
        trigger.unregister()


def test_pipelined_requests_are_answered_in_order(stack: HttpStack, echo_route: Any) -> None:
    with raw(stack) as sock:
        sock.sendall(
            b"".join(f"GET /wire/{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for i in range(5))
        )
        buf = bytearray()
        got = [json.loads(read_response(sock, buf)[2])["n"] for _ in range(5)]
    assert got == ["0", "1", "2", "3", "4"]


def test_chunked_upload_and_keep_alive(stack: HttpStack, echo_route: Any) -> None:
    with raw(stack) as sock:
        buf = bytearray()
        for i in range(3):
            sock.sendall(
                f"POST /wire/{i} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
                "content-type: application/octet-stream\r\n\r\n"
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".encode()
            )
            status, headers, body = read_response(sock, buf)
            assert status == 200 and "date" in headers
            assert json.loads(body) == {"n": str(i), "size": 11, "head": "hello wo"}


def test_expect_100_continue_gets_the_interim_response(stack: HttpStack, echo_route: Any) -> None:
    with raw(stack) as sock:
        sock.sendall(
            b"POST /wire/7 HTTP/1.1\r\nhost: x\r\ncontent-length: 9\r\n"
            b"content-type: text/plain\r\nexpect: 100-continue\r\n\r\n"
        )
        buf = bytearray()
        status, _, _ = read_response(sock, buf)
        assert status == 100  # only then does the client send the body
        sock.sendall(b"some body")
        status, _, body = read_response(sock, buf)
    assert status == 200 and json.loads(body)["size"] == 9


def test_http_1_0_client_gets_a_closed_connection(stack: HttpStack, echo_route: Any) -> None:
    with raw(stack) as sock:
        sock.sendall(b"GET /wire/10 HTTP/1.0\r\n\r\n")
        status, headers, body = read_response(sock, bytearray())
        assert status == 200 and json.loads(body)["n"] == "10"
        assert closed_by_server(sock)


def test_head_then_get_on_one_connection(stack: HttpStack, echo_route: Any) -> None:
    with raw(stack) as sock:
        sock.sendall(b"HEAD /wire/11 HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert rest == b""  # no body after a HEAD response's head
        assert head.startswith(b"HTTP/1.1 ")
        sock.sendall(b"GET /wire/12 HTTP/1.1\r\nhost: x\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and json.loads(body)["n"] == "12"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT-HTTP\r\n\r\n", 400),
        (b"GET /wire/1 HTTP/1.1\r\nbad header line\r\n\r\n", 400),
        (b"GET /wire/1 HTTP/1.1\r\nhost: x\r\ncontent-length: -4\r\n\r\n", 400),
        (b"GET /wire/1 HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (80 * 1024) + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "bad-header", "bad-length", "oversized-head"],
)
def test_malformed_requests_get_a_status_and_a_closed_connection(
    stack: HttpStack, echo_route: Any, http: httpx.Client, request_bytes: bytes, status: int
) -> None:
    with raw(stack) as sock:
        sock.sendall(request_bytes)
        got, headers, body = read_response(sock, bytearray())
        assert got == status
        assert headers.get("connection") == "close" and body.startswith(b"Bad request")
        assert closed_by_server(sock)
    assert http.get("/wire/ok").json()["n"] == "ok"  # everyone else is still served


def test_client_vanishing_mid_body_leaves_the_server_serving(
    stack: HttpStack, echo_route: Any, http: httpx.Client
) -> None:
    for _ in range(5):
        with raw(stack) as sock:
            sock.sendall(
                b"POST /wire/1 HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n"
                b"content-type: application/octet-stream\r\n\r\n" + b"x" * 1000
            )
            time.sleep(0.05)
    assert http.get("/wire/after").json()["n"] == "after"


def test_unread_body_does_not_break_the_next_request(
    stack: HttpStack, client: Any, http: httpx.Client
) -> None:
    """A handler that ignores a large body: the reply arrives, the connection stays usable
    (or is closed cleanly), and nothing is mixed into the next exchange."""

    async def ignore(data: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": 202, "body": "ignored"}

    trigger = add_route(client, http, "wire::ignore", ignore, "/wire-ignore", "POST")
    try:
        for size in (10, 300_000, 3_000_000):
            resp = http.post(
                "/wire-ignore",
                content=b"z" * size,
                headers={"content-type": "application/octet-stream"},
            )
            assert resp.status_code == 202 and resp.json() == "ignored"
            assert http.get("/wire/next").json()["n"] == "next"
    finally:
        trigger.unregister()


def test_slowloris_head_is_cut_without_blocking_others(
    stack: HttpStack, echo_route: Any, http: httpx.Client
) -> None:
    """A client trickling its head holds one connection, never the server."""
    stop = threading.Event()

    def trickle() -> None:
        with raw(stack) as sock:
            sock.sendall(b"GET /wire/1 HTTP/1.1\r\n")
            while not stop.wait(0.2):
                try:
                    sock.sendall(b"x-a: b\r\n")
                except OSError:
                    return

    threads = [threading.Thread(target=trickle) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(5):
            assert http.get(f"/wire/s{i}").json()["n"] == f"s{i}"
    finally:
        stop.set()
        for t in threads:
            t.join(5)
