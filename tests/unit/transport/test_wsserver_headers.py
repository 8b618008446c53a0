"""The upgrade request's headers as the client sent them (transport/wsserver.py), for an
RBAC auth function (PROTOCOL.md §13.3): wsproto keeps back the ones it consumes."""

from __future__ import annotations

import socket

import trio
import trio.testing

from transport.wsserver import WebSocketServerConnection

REQUEST = (
    b"GET /?api_key=k1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:49135\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: iii.v1, other\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"X-Test-Token: first\r\n"
    b"X-Test-Token: second\r\n"
    b"\r\n"
)


async def test_request_headers_keep_every_header_in_order_with_repeats() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ws = WebSocketServerConnection(trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
        theirs.sendall(REQUEST[:40])  # the head may arrive in pieces
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.handshake)
            await trio.testing.wait_all_tasks_blocked()  # it read the first piece
            theirs.sendall(REQUEST[40:])
        assert ws.request is not None
        assert [n for n, _ in ws.request.extra_headers] == [
            b"upgrade",
            b"connection",
            b"sec-websocket-key",
            b"sec-websocket-version",
            b"x-test-token",
            b"x-test-token",
        ]  # what wsproto gives: no host, no subprotocols, no extensions
        assert ws.request_headers() == [
            (b"host", b"127.0.0.1:49135"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-protocol", b"iii.v1, other"),
            (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
            (b"x-test-token", b"first"),
            (b"x-test-token", b"second"),
        ]
