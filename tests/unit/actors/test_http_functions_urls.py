"""URL validation of HTTP-invoked functions (WORKERS.md §4.4): the order of the checks, their
messages, the private ranges, the allowlist globs, and the lookup (a fake resolver)."""

from __future__ import annotations

import ipaddress

import pytest

from actors.http_functions.urls import (
    UrlRejected,
    check_addresses,
    check_url,
    is_private,
    validate_url,
)
from manifests.blocks.http_functions import GlobError, SecurityConfig, compile_glob

OPEN = SecurityConfig(url_allowlist=(), block_private_ips=False, require_https=False)
STRICT = SecurityConfig()  # the defaults: any host, https only, private IPs blocked


def rejected(url: str, security: SecurityConfig) -> str:
    with pytest.raises(UrlRejected) as info:
        check_url(url, security)
    return info.value.message


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",
        "255.255.255.255",
        "192.0.2.10",
        "198.51.100.7",
        "203.0.113.99",
        "0.0.0.0",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped: judged as IPv4
        "::ffff:10.0.0.1",
    ],
)
def test_private_addresses(address: str) -> None:
    assert is_private(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "172.32.0.1", "192.169.0.1", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"],
)
def test_public_addresses(address: str) -> None:
    assert not is_private(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "start"),
    [
        ("not a url", "Invalid URL"),
        ("/relative/path", "Invalid URL"),
        ("ftp://example.com/x", "Invalid URL"),
        ("http://", "Invalid URL"),
        ("http://example.com:99999/", "Invalid URL"),
        ("http://exa mple.com/", "Invalid URL"),
    ],
)
def test_a_url_that_does_not_parse_is_invalid(url: str, start: str) -> None:
    assert rejected(url, OPEN).startswith(start)


def test_https_is_required_by_default_and_checked_before_the_allowlist() -> None:
    only = SecurityConfig(url_allowlist=("other.org",))
    assert rejected("http://example.com/x", only).startswith("HTTPS is required")
    assert check_url("https://8.8.8.8/x", STRICT).host == "8.8.8.8"


def test_the_allowlist_matches_the_host_only() -> None:
    security = SecurityConfig(
        url_allowlist=("*.example.com", "api-?.test", "h[0-9].net"), require_https=False
    )
    for ok in (
        "http://a.example.com:8080/x?q=1",
        "http://A.B.EXAMPLE.COM/",  # hosts are case-insensitive
        "http://api-1.test/",
        "http://h7.net/",
    ):
        check_url(ok, attrs_evolve_open(security))
    for bad in ("http://example.com/", "http://api-12.test/", "http://hx.net/", "http://evil.org/"):
        message = rejected(bad, attrs_evolve_open(security))
        assert message.startswith("URL not in allowlist")
    assert "'evil.org'" in rejected("http://evil.org/", attrs_evolve_open(security))


def attrs_evolve_open(security: SecurityConfig) -> SecurityConfig:
    return SecurityConfig(
        url_allowlist=security.url_allowlist, block_private_ips=False, require_https=False
    )


def test_an_empty_allowlist_means_any_host() -> None:
    assert check_url("http://anything.example/", OPEN).host == "anything.example"


def test_ipv6_hosts_match_with_or_without_brackets() -> None:
    # "[::1]" itself is a character class (as in upstream's globs): brackets are escaped.
    for pattern in ("::1", "[[]::1[]]"):
        security = SecurityConfig(
            url_allowlist=(pattern,), block_private_ips=False, require_https=False
        )
        assert check_url("http://[::1]:8080/x", security).host == "::1"


def test_an_ip_literal_is_judged_without_a_lookup() -> None:
    security = SecurityConfig(require_https=False)
    assert rejected("http://127.0.0.1:3000/x", security) == "Private IP blocked: 127.0.0.1"
    assert rejected("http://[::ffff:192.168.0.1]/", security).startswith("Private IP blocked")
    assert check_url("http://8.8.8.8/", security).lookup is None
    assert check_url("http://example.com/", security).lookup == "example.com"
    assert check_url("http://example.com/", OPEN).lookup is None  # block off: no lookup


def test_every_resolved_address_must_be_public() -> None:
    check_addresses("ok.example", ["93.184.216.34", "2606:2800:220:1::1"])
    with pytest.raises(UrlRejected, match=r"Private IP blocked: 'mixed.example' resolves to 10"):
        check_addresses("mixed.example", ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(UrlRejected, match="DNS lookup failed"):
        check_addresses("none.example", [])


async def test_validate_url_looks_the_host_up_and_reports_a_failed_lookup() -> None:
    security = SecurityConfig(require_https=False)
    asked: list[str] = []

    async def resolver(host: str) -> list[str]:
        asked.append(host)
        if host == "missing.example":
            raise OSError("Name or service not known")
        return {"localhost": ["127.0.0.1"], "public.example": ["93.184.216.34"]}[host]

    assert (await validate_url("http://public.example/x", security, resolver)).host
    with pytest.raises(UrlRejected, match="Private IP blocked: 'localhost' resolves to 127"):
        await validate_url("http://localhost:3000/", security, resolver)
    with pytest.raises(UrlRejected, match="DNS lookup failed: 'missing.example'"):
        await validate_url("http://missing.example/", security, resolver)
    assert asked == ["public.example", "localhost", "missing.example"]


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*", "anything.at.all", True),
        ("**", "anything", True),
        ("localhost", "LOCALHOST", True),
        ("*.example.com", "example.com", False),
        ("ex?mple.com", "example.com", True),
        ("[!a]pi.test", "api.test", False),
        ("[!a]pi.test", "bpi.test", True),
        ("[]x]y", "]y", True),
        ("a.b", "aXb", False),  # a dot is literal
    ],
)
def test_globs(pattern: str, host: str, matches: bool) -> None:
    assert bool(compile_glob(pattern).fullmatch(host)) is matches


@pytest.mark.parametrize("pattern", ["[abc", "a[]", "***", "a**", "x**.com", "[!]"])
def test_invalid_globs_are_refused(pattern: str) -> None:
    with pytest.raises(GlobError, match="invalid pattern"):
        compile_glob(pattern)
