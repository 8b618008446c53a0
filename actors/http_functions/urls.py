"""URL validation of HTTP-invoked functions (WORKERS.md §4.4, PROTOCOL.md §10.1).

In order: the URL must parse (``Invalid URL``); with ``require_https`` its scheme must be https
(``HTTPS is required``); its host must match one allowlist glob (``URL not in allowlist``); with
``block_private_ips`` an IP-literal host, or every address the host resolves to (looked up on
port 443; a failure is ``DNS lookup failed``), must not be private (``Private IP blocked``).
Every failure is a :class:`UrlRejected`, which callers report as ``url_validation_failed``.

``check_url`` is pure; the lookup is the caller's (``validate_url`` takes the resolver).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Final
from urllib.parse import urlsplit

import attrs

from manifests.blocks.http_functions import SecurityConfig

__all__ = [
    "URL_VALIDATION_FAILED",
    "CheckedUrl",
    "UrlRejected",
    "check_addresses",
    "check_url",
    "connect_addresses",
    "is_private",
    "validate_url",
]

URL_VALIDATION_FAILED: Final = "url_validation_failed"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Awaitable[list[str]]]

# Private means what upstream's validator refuses (WORKERS.md §4.4). 0.0.0.0/8 as a whole is
# refused too: on Linux a connection to it reaches this host, as the unspecified address does.
_PRIVATE_V4: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # unspecified / "this network"
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",  # link-local
        "255.255.255.255/32",  # broadcast
        "192.0.2.0/24",  # documentation (TEST-NET-1..3)
        "198.51.100.0/24",
        "203.0.113.0/24",
    )
)
_PRIVATE_V6: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::1/128",  # loopback
        "::/128",  # unspecified
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    )
)


class UrlRejected(Exception):
    """A URL the security settings refuse; ``message`` starts with upstream's reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.frozen
class CheckedUrl:
    """A URL that passed the static checks; ``lookup`` is the host still to resolve (if the
    private-IP block applies and the host is a name, not an address)."""

    url: str
    scheme: str
    host: str
    lookup: str | None


def is_private(address: IPAddress) -> bool:
    """Loopback, RFC 1918, link-local, broadcast, documentation, unspecified; IPv6 loopback,
    unique-local, link-local, unspecified, multicast. IPv4-mapped IPv6 is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is None:
            return any(address in net for net in _PRIVATE_V6)
        address = mapped
    return any(address in net for net in _PRIVATE_V4)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url(url: str, security: SecurityConfig) -> CheckedUrl:
    """Every check that needs no lookup; raises :class:`UrlRejected`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        raise UrlRejected(f"Invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRejected(f"Invalid URL: {url!r} is not an absolute http(s) URL")
    if not host:
        raise UrlRejected(f"Invalid URL: {url!r} has no host")
    if any(c.isspace() for c in url):
        raise UrlRejected(f"Invalid URL: {url!r} contains whitespace")
    if security.require_https and scheme != "https":
        raise UrlRejected(f"HTTPS is required: {url!r} uses {scheme}")
    address = _literal(host)
    shown = f"[{host}]" if isinstance(address, ipaddress.IPv6Address) else host
    if not any(p.fullmatch(host) or p.fullmatch(shown) for p in security.host_patterns()):
        allowed = ", ".join(security.url_allowlist)
        raise UrlRejected(f"URL not in allowlist: host {shown!r} matches none of [{allowed}]")
    lookup: str | None = None
    if security.block_private_ips:
        if address is not None:
            if is_private(address):
                raise UrlRejected(f"Private IP blocked: {address}")
        else:
            lookup = host
    return CheckedUrl(url, scheme, host, lookup)


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """Every resolved address must be public; none at all is a failed lookup."""
    found = [a for a in (_literal(a.split("%", 1)[0]) for a in addresses) if a is not None]
    if not found:
        raise UrlRejected(f"DNS lookup failed: {host!r} resolved to no address")
    for address in found:
        if is_private(address):
            raise UrlRejected(f"Private IP blocked: {host!r} resolves to {address}")


async def validate_url(url: str, security: SecurityConfig, resolve: Resolver) -> CheckedUrl:
    """``check_url``, then the lookup (``resolve(host)`` → addresses; ``OSError`` is a failed
    lookup) and ``check_addresses``."""
    checked = check_url(url, security)
    if checked.lookup is not None:
        try:
            addresses = await resolve(checked.lookup)
        except OSError as exc:
            raise UrlRejected(f"DNS lookup failed: {checked.lookup!r}: {exc}") from None
        check_addresses(checked.lookup, addresses)
    return checked


async def connect_addresses(host: str, resolve: Resolver) -> list[str]:
    """Where a connection to ``host`` may go when private addresses are blocked: the host
    itself if it is a public IP, else every address it resolves to, all of them public
    (checked now, when the connection is made, so a name cannot resolve to a public address
    at validation and to a private one at connect time). Raises :class:`UrlRejected`."""
    address = _literal(host.strip("[]"))
    if address is not None:
        if is_private(address):
            raise UrlRejected(f"Private IP blocked: {address}")
        return [str(address)]
    try:
        addresses = await resolve(host)
    except OSError as exc:
        raise UrlRejected(f"DNS lookup failed: {host!r}: {exc}") from None
    check_addresses(host, addresses)
    return list(dict.fromkeys(a.split("%", 1)[0] for a in addresses))
