"""The httpx transport of iii-http-functions: each request leaves in one write.

PROTOCOL.md §10.2: the SDK suite's webhook probe reads the socket once the headers are complete
and takes only what arrived in that same read as the body, so the request line, the headers
and the body must reach it together. httpcore writes the head and the body as two writes, and
under trio (TCP_NODELAY) they leave as two segments: measured on loopback, 1 delivery in 50
carried its body in the probe's first read. Here the network stream holds what httpcore writes
and sends it in one write just before the first read (the response) or a TLS upgrade; the body
is in memory anyway (the request is built from bytes).

Certificates are verified against certifi's bundle, or the one the engine's environment names
(``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, as OpenSSL tools read them); no proxy is taken from
the environment, so the host that was validated is the host connected to.

httpx takes no network backend, so the transport replaces the connection pool its
constructor built with one that has the same settings and this backend (``_pool`` is httpx's
own attribute; the probe test in tests/integration/http_functions pins the behaviour).
"""

from __future__ import annotations

import ssl
import typing
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

__all__ = ["AddressRefused", "OneWriteBackend", "OneWriteStream", "Pin", "one_write_transport"]

# The addresses a host may be connected to (checked when the connection is made, so a name that
# resolved to a public address at validation cannot reach a private one now); raises
# AddressRefused to refuse.
Pin = Callable[[str, int], Awaitable[list[str]]]


class AddressRefused(httpcore.ConnectError):
    """The host resolves to an address the security settings refuse (url_validation_failed)."""


class OneWriteStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._held = bytearray()

    async def _flush(self, timeout: float | None) -> None:
        if self._held:
            data = bytes(self._held)
            self._held.clear()
            await self._inner.write(data, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._held += buffer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        return await self._inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._held.clear()
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        await self._flush(timeout)
        return OneWriteStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class OneWriteBackend(httpcore.AsyncNetworkBackend):
    """Streams that write once per request; with ``pin``, TCP connections go only to the
    addresses it allows for the host (tried in its order)."""

    def __init__(
        self, inner: httpcore.AsyncNetworkBackend | None = None, pin: Pin | None = None
    ) -> None:
        self._inner = inner or httpcore.TrioBackend()
        self._pin = pin

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        targets = [host] if self._pin is None else await self._pin(host, port)
        failure: Exception | None = None
        for target in targets:
            try:
                stream = await self._inner.connect_tcp(
                    target, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return OneWriteStream(stream)
        assert failure is not None, "a pin returns at least one address or raises"
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return OneWriteStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def one_write_transport(
    limits: httpx.Limits = httpx.Limits(), pin: Pin | None = None
) -> httpx.AsyncHTTPTransport:
    """An HTTP/1.1 transport (certificates verified, no proxy) whose requests leave in one
    write each, connecting only where ``pin`` allows."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=True),  # SSL_CERT_FILE / SSL_CERT_DIR
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=OneWriteBackend(pin=pin),
    )
    return transport
