"""A real local HTTP endpoint for HTTP-invoked functions: a threaded ``http.server`` that checks
the auth of every request itself (bearer token, API key, and the HMAC signature recomputed from
the raw body and ``x-iii-Timestamp`` with its own copy of the secret) and records what arrived.

Paths: ``/echo`` (any auth), ``/bearer``, ``/apikey``, ``/hmac`` (refuse a wrong credential
with 401 and an ``error`` body), ``/slow`` (answers after ``SLOW_SECONDS``), ``/text`` (a
non-JSON 200), ``/empty`` (204), ``/error-json`` (422 with an ``error`` object), ``/error-bad``
(400 whose ``error`` is a string), ``/error-plain`` (502, plain text), ``/redirect`` (302 to
``/echo``), ``/eof`` (a JSON 200 without Content-Length, then close, as the SDK suite's probe),
``/truncated`` (a body cut short).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import attrs

SLOW_SECONDS: Final = 2.0
TOKEN: Final = "tok-3f9a"
API_KEY: Final = "key-77c1"
SECRET: Final = "hmac-secret-5e2b"
ENV: Final = {"HF_TOKEN": TOKEN, "HF_API_KEY": API_KEY, "HF_SECRET": SECRET}


@attrs.define
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    verdict: str  # "ok" or why the endpoint refused the credential

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b":" + base64.b64encode(body)
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_certificate(directory: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for ``localhost`` and 127.0.0.1 (``openssl``; None without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


class Endpoint:
    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                endpoint._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    # -- handling ---------------------------------------------------------------------------

    def _verdict(self, path: str, headers: dict[str, str], body: bytes) -> str:
        if path == "/bearer" and headers.get("authorization") != f"Bearer {TOKEN}":
            return f"bad bearer {headers.get('authorization')!r}"
        if path == "/apikey" and headers.get("x-api-key") != API_KEY:
            return f"bad api key {headers.get('x-api-key')!r}"
        if path == "/hmac":
            stamp = headers.get("x-iii-timestamp", "")
            if not stamp.isdigit() or abs(time.time() - int(stamp)) > 60:
                return f"bad timestamp {stamp!r}"
            if headers.get("x-iii-signature") != expected_signature(SECRET, stamp, body):
                return f"bad signature {headers.get('x-iii-signature')!r}"
        return "ok"

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        path = h.path
        verdict = self._verdict(path, headers, body)
        with self._lock:
            self.seen.append(Seen(h.command, path, headers, body, verdict))
        if verdict != "ok":
            self._reply(h, 401, {"error": {"code": "unauthorized", "message": verdict}})
            return
        payload = json.loads(body) if body else None
        if path == "/slow":
            time.sleep(SLOW_SECONDS)
            self._reply(h, 200, {"late": True})
        elif path == "/text":
            self._reply(h, 200, b"hello, not json", "text/plain")
        elif path == "/empty":
            self._reply(h, 204, b"")
        elif path == "/error-json":
            self._reply(h, 422, {"error": {"code": "out_of_stock", "message": "No more widgets"}})
        elif path == "/error-bad":
            self._reply(h, 400, {"error": "just a string"})
        elif path == "/error-plain":
            self._reply(h, 502, b"upstream down", "text/plain")
        elif path == "/redirect":
            h.send_response(302)
            h.send_header("Location", "/echo")
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif path == "/truncated":  # promises 100 bytes, sends 12, hangs up
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.write(b'{"partial": ')
            h.wfile.flush()
            h.close_connection = True
        elif path == "/eof":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(json.dumps({"eof": True, "got": payload}).encode())
            h.close_connection = True
        else:
            self._reply(h, 200, {"got": payload, "method": h.command, "verified": path})

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        content_type: str = "application/json",
    ) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        if raw:
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)


class RawProbe:
    """The SDK suite's webhook receiver, as PROTOCOL.md §10.2 describes it: a raw socket that
    reads 4 KiB at a time until it has seen the end of the headers, takes what came in that
    same read as the body, answers ``200`` with a JSON body and no Content-Length, and closes.
    ``bodies`` holds each body as received (``None`` where it was not valid JSON)."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    chunk = b""
                    while b"\r\n\r\n" not in chunk:
                        data = conn.recv(4096)
                        if not data:
                            break
                        chunk = data if b"\r\n\r\n" in data else chunk + data
                    body = chunk.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in chunk else b""
                    try:
                        self.bodies.append(json.loads(body))
                    except ValueError:
                        self.bodies.append(None)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
                        + json.dumps({"received": True}).encode()
                    )
                except OSError:
                    continue

    def close(self) -> None:
        self.sock.close()
